"""`dev-idp`: the development IdP alone, for an app of your own to sign in against."""

from __future__ import annotations

import argparse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .common import CLIError
from .serving import _configure_logging, _listen, _origin, _serve

MAX_SP_METADATA_BYTES = 1024 * 1024
SP_METADATA_TIMEOUT_SECONDS = 10


def _fetcher(url: str) -> Callable[[], str]:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=SP_METADATA_TIMEOUT_SECONDS) as reply:  # noqa: S310
            body: bytes = reply.read(MAX_SP_METADATA_BYTES + 1)
        if len(body) > MAX_SP_METADATA_BYTES:
            raise ValueError(f"{url}: SP metadata larger than {MAX_SP_METADATA_BYTES} bytes")
        return body.decode("utf-8")

    return fetch


def _cmd_dev_idp(args: argparse.Namespace) -> int:
    from ..devidp import DevIdP, DevIdPError, create_app, load_users

    _configure_logging()
    users = None
    if args.users:
        try:
            users = load_users(args.users)
        except (OSError, ValueError) as exc:
            raise CLIError(f"--users: {exc}") from None
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    base_url = _origin(args.host, port)
    try:
        idp = DevIdP(base_url, users=users)
        for source in args.sp_metadata:
            if source.startswith(("http://", "https://")):
                # Fetched when first needed (and retried): the SP may not be up yet.
                idp.add_service_provider_source(_fetcher(source))
                continue
            try:
                xml = Path(source).read_text(encoding="utf-8")
                idp.add_service_provider(xml)
            except (OSError, UnicodeDecodeError, DevIdPError) as exc:
                raise CLIError(f"--sp-metadata {source}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    print(f"saml-middleware dev-idp: metadata at {idp.entity_id}", flush=True)
    print(f"  My Apps (IdP-initiated sign-in): {base_url}/", flush=True)
    print(f"  users: {', '.join(u.display for u in idp.users.values())}", flush=True)
    if not args.sp_metadata:
        print(
            "  SPs: any app on this machine whose entity ID is its metadata URL is trusted "
            f"at its first sign-in; others: --sp-metadata FILE_OR_URL or {base_url}/apps/new",
            flush=True,
        )
    _serve(create_app(idp), sock)
    return 0
