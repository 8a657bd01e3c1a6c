"""`keygen`: the SP's signing/encryption key and self-signed certificate, never one
without the other."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from pathlib import Path

from cryptography import x509

from .common import CLIError

KEY_NAME, CERT_NAME = "sp.key", "sp.crt"


def _write_new(path: Path, text: str, mode: int, force: bool) -> None:
    """Write `text` to `path` with `mode`; an existing file only with `force`, atomically.

    Without `force`, O_EXCL refuses any existing name (a symlink included). With
    it, a temporary file is renamed over the old one, so the old key is never
    half overwritten and a 0644 file left by someone else does not keep its mode.
    """
    data = text.encode("ascii")
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(path, mode)  # the umask may have taken bits the certificate needs
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _cmd_keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_key_pair

    out_dir = Path(args.out_dir)
    key_path, cert_path = out_dir / KEY_NAME, out_dir / CERT_NAME
    if not args.force:
        for path in (key_path, cert_path):
            if path.exists() or path.is_symlink():
                raise CLIError(f"{path} already exists: not overwritten (use --force to replace)")
    if args.kind == "ec" and args.bits is not None:
        raise CLIError("--bits is only for --kind rsa (EC keys are P-256)")
    try:
        key_pem, cert_pem = generate_key_pair(
            args.common_name, days=args.days, kind=args.kind, bits=args.bits
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(key_path, key_pem, 0o600, args.force)
        try:
            _write_new(cert_path, cert_pem, 0o644, args.force)
        except OSError:
            if not args.force:  # no key without its certificate
                key_path.unlink(missing_ok=True)
            raise
    except FileExistsError as exc:
        raise CLIError(f"{exc.filename} already exists: not overwritten (use --force)") from None
    except OSError as exc:
        raise CLIError(f"cannot write {exc.filename or out_dir}: {exc.strerror or exc}") from None
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    kind = f"RSA {args.bits or 2048}" if args.kind == "rsa" else "EC P-256"
    key_abs, cert_abs = key_path.resolve(), cert_path.resolve()
    print(f"wrote {key_abs} (private key, {kind}, mode 0600: keep it secret and out of git)")
    print(
        f"wrote {cert_abs} (self-signed certificate, CN={args.common_name}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d})"
    )
    snippet = json.dumps({"key_file": str(key_abs), "cert_file": str(cert_abs)})
    print("settings:")
    print(f'  "sp": {snippet}')
    print(
        '  (add "sign_authn_requests": true to sign AuthnRequests; assertions the IdP '
        f"encrypts to {CERT_NAME} are decrypted with {KEY_NAME})"
    )
    return 0


def _days(text: str) -> int:
    from ..keys import MAX_DAYS

    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DAYS}: {days}")
    return days


def _common_name(text: str) -> str:
    if not 1 <= len(text) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError("must be 1 to 64 printable characters")
    return text
