"""The `saml-middleware` command line (also `python -m saml_middleware`).

    saml-middleware keygen [--out-dir DIR] [--kind rsa|ec] [--bits N] [--days N]
                           [--common-name CN] [--force]
    saml-middleware metadata --settings SPEC [--tenant SLUG]
    saml-middleware check --settings SPEC
    saml-middleware diagnose --settings SPEC [--tenant SLUG] --response FILE|-
                             [--at ISO-TIME] [--request-id ID] [--json]
    saml-middleware demo [--host 127.0.0.1] [--port 8000]
    saml-middleware dev-idp [--host 127.0.0.1] [--port 9000] [--users FILE.json]
                            [--sp-metadata FILE_OR_URL ...]

`keygen` makes the SP's signing/encryption key and self-signed certificate.
`metadata` prints the SP metadata an IdP admin uploads (stdout holds only the
XML, so it can be redirected to a file). `check` is the step before deploying:
it validates the settings, reads the IdP metadata as the middleware would, and
prints what to paste into the IdP and every problem, one line each naming the
setting key; exit status 1 when any is an error. `diagnose` judges a captured
SAML Response offline as the ACS would (Test SSO's checks, the real refusal
code): exit status 0 when it would sign in, 1 when not, 2 for bad usage. SPEC
is a `.json` or `.toml` file or `module:attribute` (importable from the current
directory).

`demo` serves the example Starlette app behind `SAMLMiddleware` and the
development IdP (under `/idp`) from one local server, so a full SAML round trip
runs with nothing else installed. `dev-idp` serves the development IdP alone,
for an app of your own to sign in against. Both bind to a loopback address
only: the development IdP lets anyone who can reach it sign in as any of its
users.

Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import importlib
import importlib.util
import inspect
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings, TenantSettings
from .keys import EXPIRY_WARNING_DAYS, certificate_standing
from .loopback import is_loopback_host

PROG = "saml-middleware"
IDP_PATH = "/idp"
DEMO_ROLES = {"admins": ["Admin"], "developers": ["Member"]}
MAX_SP_METADATA_BYTES = 1024 * 1024
SP_METADATA_TIMEOUT_SECONDS = 10


class CLIError(Exception):
    """A problem to report as one line on stderr (exit status `status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and never exits by itself."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see {self.prog} --help)", status=2)


# -- argument types -------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0-65535): {port}")
    return port


def loopback_host(text: str) -> str:
    """Only loopback addresses: the development IdP must not be reachable from outside."""
    if text == "localhost":
        return text
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a loopback address (use 127.0.0.1, ::1 or localhost)"
        ) from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"{text} is not a loopback address: the development IdP lets anyone who can "
            "reach it sign in as anyone, so it only listens on 127.0.0.1, ::1 or localhost"
        )
    return str(address)


# -- the demo ---------------------------------------------------------------------------


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _example_module() -> ModuleType:
    """examples/starlette_app.py: importable from a source checkout (the repository root)."""
    try:
        return importlib.import_module("examples.starlette_app")
    except ModuleNotFoundError as exc:
        if exc.name not in ("examples", "examples.starlette_app"):
            raise
    path = Path(__file__).resolve().parent.parent / "examples" / "starlette_app.py"
    spec = importlib.util.spec_from_file_location("_saml_middleware_example", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise CLIError(
            "the demo serves examples/starlette_app.py, which is not installed with the "
            "package: run it from a source checkout of saml-middleware"
        )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Dispatch:
    """One ASGI app: `/idp...` to the development IdP, everything else to the SP app."""

    def __init__(self, idp_app: ASGIApp, sp_app: ASGIApp) -> None:
        # A Router, so the IdP app sees its mount point as root_path and "/idp" -> "/idp/".
        self.idp = Router(routes=[Mount(IDP_PATH, app=idp_app)])
        self.sp = sp_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if path == IDP_PATH or path.startswith(IDP_PATH + "/"):
            await self.idp(scope, receive, send)
        else:  # lifespan and every other path: the app behind the middleware
            await self.sp(scope, receive, send)


def demo_settings(base_url: str, idp_metadata_xml: str, protect: Sequence[str]) -> dict[str, Any]:
    """The middleware settings the demo runs with (a fresh secret key on every call)."""
    return {
        "base_url": base_url,
        "secret_key": secrets.token_urlsafe(32),
        "idp": {"metadata_xml": idp_metadata_xml},
        # The demo runs on plain http://127.0.0.1: a Secure cookie would never come
        # back. Keep the default (https_only: True) for anything served over HTTPS.
        "session": {"https_only": False},
        # The example's home page is public. Paths are prefixes, so the demo lists
        # what to protect: `exempt: ["/"]` would exempt every page.
        "paths": {"protect": list(protect)},
        "roles": {"map": {k: list(v) for k, v in DEMO_ROLES.items()}},
    }


def build_demo_app(host: str, port: int) -> ASGIApp:
    """The demo as one ASGI app: the development IdP at `/idp`, the example app elsewhere."""
    from .asgi import SAMLMiddleware
    from .devidp import DevIdP, create_app

    base_url = _origin(host, port)
    example = _example_module()
    idp = DevIdP(base_url + IDP_PATH)
    settings = demo_settings(base_url, idp.metadata_xml(), example.PROTECTED_PATHS)
    middleware = SAMLMiddleware(example.create_app(), settings=settings)
    idp.add_service_provider_source(lambda: middleware.engine.sp_metadata_xml())
    return _Dispatch(create_app(idp), middleware)


# -- serving ----------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket (port 0: any free port), so the URLs are known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")


def _serve(app: ASGIApp, sock: socket.socket) -> None:
    try:
        import uvicorn
    except ImportError:
        sock.close()
        raise CLIError("uvicorn is needed to serve: pip install 'saml-middleware[demo]'") from None
    config = uvicorn.Config(app, log_level="info", lifespan="auto")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _cmd_demo(args: argparse.Namespace) -> int:
    _configure_logging()
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    try:
        app = build_demo_app(args.host, port)
    except BaseException:
        sock.close()
        raise
    base_url = _origin(args.host, port)
    print(f"saml-middleware demo: open {base_url}/profile and sign in as B.Simon", flush=True)
    print(
        f"  (A.Jones is a member without Admin; IdP-initiated sign-in: {base_url}{IDP_PATH}/)",
        flush=True,
    )
    _serve(app, sock)
    return 0


def _fetcher(url: str) -> Callable[[], str]:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=SP_METADATA_TIMEOUT_SECONDS) as reply:  # noqa: S310
            body: bytes = reply.read(MAX_SP_METADATA_BYTES + 1)
        if len(body) > MAX_SP_METADATA_BYTES:
            raise ValueError(f"{url}: SP metadata larger than {MAX_SP_METADATA_BYTES} bytes")
        return body.decode("utf-8")

    return fetch


def _cmd_dev_idp(args: argparse.Namespace) -> int:
    from .devidp import DevIdP, DevIdPError, create_app, load_users

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


# -- settings from the command line -----------------------------------------------------

# `package.module:attribute` (the attribute may be dotted: `module:Class.SETTINGS`).
_MODULE_ATTRIBUTE = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
SETTINGS_HELP = (
    "the settings: a .json or .toml file holding the settings dict, or module:attribute "
    "(e.g. myapp.saml_settings:SETTINGS, importable from the current directory)"
)


def read_settings_source(spec: str) -> Mapping[str, Any] | Settings:
    """The raw settings named by `--settings`: a JSON/TOML file or `module:attribute`.

    Only reads and parses; `load_settings` validates. Relative file names inside
    the settings (`sp.key_file`, ...) stay relative to the current directory,
    as they are for the app that uses the same settings.
    """
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in (".json", ".toml") or path.is_file():
        return _settings_file(spec, path, suffix)
    if _MODULE_ATTRIBUTE.fullmatch(spec):
        return _settings_attribute(spec)
    raise CLIError(
        f"--settings {spec}: not a .json or .toml file, nor module:attribute "
        "(e.g. myapp.saml_settings:SETTINGS)"
    )


def _settings_file(spec: str, path: Path, suffix: str) -> Mapping[str, Any]:
    if suffix not in (".json", ".toml"):
        raise CLIError(
            f"--settings {spec}: use a .json or .toml file, or module:attribute "
            "(e.g. myapp.saml_settings:SETTINGS)"
        )
    loads = _toml_loads(spec) if suffix == ".toml" else None
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CLIError(f"--settings {spec}: no such file") from None
    except OSError as exc:
        raise CLIError(f"--settings {spec}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CLIError(f"--settings {spec}: not UTF-8 text") from None
    if loads is None:
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise CLIError(
                f"--settings {spec}: not valid JSON (line {exc.lineno} column {exc.colno}: "
                f"{exc.msg})"
            ) from None
        except _DuplicateKey as exc:
            raise CLIError(f"--settings {spec}: key {exc.key!r} appears twice") from None
        if not isinstance(value, dict):
            raise CLIError(f"--settings {spec}: must hold a JSON object (the settings dict)")
        return value
    try:
        return loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise CLIError(f"--settings {spec}: not valid TOML ({exc})") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a repeated key is an error (json would keep the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _toml_loads(spec: str) -> Callable[[str], dict[str, Any]]:
    """tomllib (Python 3.11+), or the tomli backport on 3.10."""
    try:
        import tomllib

        return tomllib.loads
    except ModuleNotFoundError:
        pass
    try:
        import tomli  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        raise CLIError(
            f"--settings {spec}: reading TOML needs Python 3.11 or later (or pip install "
            "tomli); use a .json file or module:attribute instead"
        ) from None
    loads: Callable[[str], dict[str, Any]] = tomli.loads
    return loads


def _settings_attribute(spec: str) -> Mapping[str, Any] | Settings:
    module_name, attribute = spec.split(":", 1)
    # The console script does not put the current directory on sys.path (python -m does).
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(
                f"--settings {spec}: no module named {exc.name!r} (run from the directory "
                "that holds it, or set PYTHONPATH)"
            ) from None
        raise CLIError(
            f"--settings {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module: report it in one line
        raise CLIError(
            f"--settings {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    value: Any = module
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise CLIError(
                f"--settings {spec}: {module_name} has no attribute {attribute}"
            ) from None
    if not isinstance(value, (Mapping, Settings)):
        raise CLIError(f"--settings {spec}: is a {type(value).__name__}, not a settings dict")
    return value


def _load(spec: str) -> tuple[Mapping[str, Any] | Settings, Settings]:
    """The raw settings and their validated form; a bad key is a `ConfigError` (one line)."""
    from .config import load_settings

    raw = read_settings_source(spec)
    return raw, load_settings(raw)


@contextlib.contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """The report says everything itself: no duplicate log lines on stderr meanwhile."""
    loggers = [logging.getLogger(name) for name in ("saml_middleware", "saml2")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _with_inline_idp(settings: Settings, xml: str) -> Settings:
    """`settings` with the IdP given as inline metadata: an Engine built on it does no I/O."""
    assert settings.idp is not None
    inline = dataclasses.replace(
        settings.idp,
        source="metadata_xml",
        metadata_url=None,
        metadata_file=None,
        metadata_xml=xml,
        entity_id=None,
        sso_url=None,
        slo_url=None,
        x509cert=None,
    )
    return dataclasses.replace(settings, idp=inline)


def _placeholder_idp_xml() -> str:
    """Metadata of an IdP that does not exist: the SP metadata does not depend on the IdP."""
    from .keys import generate_key_pair
    from .metadata import manual_metadata_xml

    _, cert_pem = generate_key_pair("saml-middleware placeholder IdP", kind="ec", days=1)
    return manual_metadata_xml("urn:saml-middleware:placeholder-idp", PLACEHOLDER_SSO, cert_pem)


PLACEHOLDER_SSO = "https://idp.invalid/sso"


# -- keygen -----------------------------------------------------------------------------

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
    from .keys import generate_key_pair

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


# -- metadata ---------------------------------------------------------------------------


def _cmd_metadata(args: argparse.Namespace) -> int:
    from .engine import Engine

    _, settings = _load(args.settings)
    if args.tenant is not None:
        settings = _tenant_settings(settings, args.tenant)
    elif settings.idp is None:
        raise CLIError("--tenant: the IdPs are per organization here: give --tenant SLUG")
    # The organizations' IdPs are not this command's business.
    settings = dataclasses.replace(settings, tenants=None, tenant_options=None)
    with _quiet_library_logs():
        # The IdP is not contacted: an admin needs this XML before the IdP app exists.
        engine = Engine(_with_inline_idp(settings, _placeholder_idp_xml()))
        xml = engine.sp_metadata_xml()
    sys.stdout.write(xml if xml.endswith("\n") else xml + "\n")
    return 0


def _tenant_settings(settings: Settings, slug: str) -> Settings:
    """One organization's merged settings, from the dict or from the app's loader."""
    return _tenant(settings, slug).settings


def _tenant(settings: Settings, slug: str) -> TenantSettings:
    """One organization (its merged settings, name, enabled), from the dict or the loader."""
    from .config import load_tenant

    tenants = settings.tenants
    if tenants is None:
        raise CLIError("--tenant: these settings have no tenants")
    if isinstance(tenants, Mapping):
        if slug not in tenants:
            raise CLIError(f"--tenant: no organization {slug[:64]!r} in tenants")
        return tenants[slug]
    try:
        raw = tenants(slug)
        if inspect.isawaitable(raw):
            raw = asyncio.run(_awaited(raw))
    except Exception as exc:  # the app's loader: its failure, in one line
        raise CLIError(f"--tenant: the tenants loader failed: {type(exc).__name__}") from None
    if raw is None:
        raise CLIError(f"--tenant: the tenants loader knows no organization {slug[:64]!r}")
    return load_tenant(settings, slug, raw)


async def _awaited(value: Any) -> Any:
    return await value


# -- check ------------------------------------------------------------------------------

_LABEL = 26


@dataclass
class CheckReport:
    """What `check` prints: labelled lines, then one line per problem, then a verdict."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(title)

    def item(self, label: str, value: str) -> None:
        self.lines.append(f"  {label:<{_LABEL - 2}}{value}")

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"error: {key}: {_one_line(problem)}")

    def warn(self, key: str, problem: str) -> None:
        self.warnings.append(f"warning: {key}: {_one_line(problem)}")

    def render(self) -> str:
        verdict = (
            f"check: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
            if self.errors
            else (
                f"check: OK with {len(self.warnings)} warning(s)" if self.warnings else "check: OK"
            )
        )
        problems = [*self.errors, *self.warnings]
        return "\n".join([*self.lines, "", *problems, verdict]) + "\n"


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CertStatus:
    """A certificate as an admin recognises it in the IdP's portal, and its validity now."""

    common_name: str
    thumbprint: str  # SHA-1, upper-case hex: what Entra shows as "Thumbprint"
    state: Literal["ok", "soon", "expired", "not_yet"]
    when: str
    not_after: dt.datetime

    @property
    def summary(self) -> str:
        return f"CN={self.common_name}, thumbprint {self.thumbprint}, {self.when}"


def cert_status(cert: x509.Certificate, now: dt.datetime, skew: int = 0) -> CertStatus:
    """Where `cert` stands at `now` (keys.certificate_standing), in `check`'s words."""
    standing = certificate_standing(cert, now, skew)
    end = standing.not_after
    if standing.state == "expired":
        when = f"EXPIRED on {_utc(end)}"
    elif standing.state == "not_yet":
        when = f"NOT VALID before {_utc(standing.not_before)}"
    else:
        when = f"expires {_utc(end)} (in {int(standing.days_left)} days)"
    return CertStatus(standing.common_name, standing.thumbprint, standing.state, when, end)


def _check_certificates(
    report: CheckReport, key: str, bodies: Sequence[str], now: dt.datetime, skew: int
) -> None:
    statuses = [
        cert_status(x509.load_der_x509_certificate(base64.b64decode(body)), now, skew)
        for body in bodies
    ]
    usable = any(status.state in ("ok", "soon") for status in statuses)
    for number, status in enumerate(statuses, 1):
        report.item(f"signing certificate {number}", status.summary)
        name = f"signing certificate {number} (thumbprint {status.thumbprint})"
        if status.state == "expired" and usable:
            report.warn(
                key,
                f"{name} has expired; the IdP also publishes a valid one, which it must sign "
                "with (remove the old certificate at the IdP)",
            )
        elif status.state == "expired":
            report.error(
                key,
                f"{name} expired on {_utc(status.not_after)}: logins fail until the "
                "IdP signs with a new certificate (Entra: SAML Certificates > New Certificate, "
                "then make it active)",
            )
        elif status.state == "not_yet":
            report.warn(key, f"{name} is not valid yet")
        elif status.state == "soon":
            report.warn(
                key,
                f"{name} expires in under {EXPIRY_WARNING_DAYS} days: have the IdP publish "
                "and sign with a new one before then (a metadata URL picks it up by itself)",
            )


def _idp_source(settings: Settings) -> tuple[str, str]:
    """(the setting key, where it points) of the IdP description."""
    idp = settings.idp
    assert idp is not None
    if idp.source == "metadata_url":
        assert idp.metadata_url is not None
        return "idp.metadata_url", _without_credentials(idp.metadata_url)
    if idp.source == "metadata_file":
        return "idp.metadata_file", str(idp.metadata_file)
    if idp.source == "metadata_xml":
        return "idp.metadata_xml", "inline XML"
    return "idp.x509cert", "idp.entity_id, idp.sso_url, idp.x509cert"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_sp(report: CheckReport, raw: Mapping[str, Any] | Settings, settings: Settings) -> None:
    base = urlsplit(settings.base_url)
    report.section("Paste into the IdP (Entra: Single sign-on > Basic SAML Configuration):")
    report.item("Identifier (Entity ID)", settings.sp.entity_id)
    report.item("Reply URL (ACS URL)", settings.acs_url)
    for other in settings.acs_urls[1:]:  # paths.acs lists several: each is accepted
        report.item("Also a Reply URL", other)
    report.item("Sign-on URL", settings.endpoint_url("login"))
    command = f"{PROG} metadata" + (f" --tenant {settings.tenant}" if settings.tenant else "")
    report.item("SP metadata", f"{settings.endpoint_url('metadata')} (or: {command})")
    if base.scheme == "http":
        if not is_loopback_host(base.hostname):
            report.warn(
                "base_url",
                "plain http on a non-local host: assertions and session cookies would cross "
                "the network unencrypted, and Entra accepts http Reply URLs only for "
                "localhost; use https",
            )
        if settings.session.https_only:
            report.warn(
                "session.https_only",
                "the session cookie is Secure but base_url is http: browsers may not keep it "
                "(set it to false for local http development only)",
            )
    cert_pem = settings.sp.cert_pem
    if cert_pem:
        sp_raw = raw.get("sp") if isinstance(raw, Mapping) else None
        from_file = isinstance(sp_raw, Mapping) and sp_raw.get("cert_file")
        key = "sp.cert_file" if from_file else "sp.cert_pem"
        now = dt.datetime.now(dt.timezone.utc)
        status = cert_status(x509.load_pem_x509_certificate(cert_pem.encode("ascii")), now)
        signs = "signs AuthnRequests" if settings.sp.sign_authn_requests else "requests unsigned"
        report.item("SP certificate", f"{status.summary}; {signs}")
        if status.state == "expired":
            report.warn(key, f"the SP certificate has expired: make a new one ({PROG} keygen)")
        elif status.state == "soon":
            report.warn(key, f"the SP certificate expires in under {EXPIRY_WARNING_DAYS} days")


def _check_idp(report: CheckReport, settings: Settings) -> Settings | None:
    """Read the IdP description as the middleware would; the settings to build an Engine on."""
    from .errors import ConfigError
    from .metadata import IdPMetadata

    key, where = _idp_source(settings)
    report.section(f"IdP ({key}: {where}):")
    assert settings.idp is not None
    try:
        info = IdPMetadata(settings.idp).load()
    except ConfigError as exc:
        report.item("status", "could not be read (see the errors below)")
        report.error(exc.key or key, exc.problem)
        return None
    report.item("entity ID", info.entity_id)
    for label, redirect, post in (
        ("SSO URL", info.sso_redirect_url, info.sso_post_url),
        ("SLO URL", info.slo_redirect_url, info.slo_post_url),
    ):
        if redirect and post and redirect != post:
            report.item(label, f"{redirect} (HTTP-Redirect), {post} (HTTP-POST)")
        elif redirect or post:
            report.item(label, f"{redirect or post}")
        else:
            report.item(label, "none (sign-out ends the local session only)")
    now = dt.datetime.now(dt.timezone.utc)
    _check_certificates(report, key, info.signing_certs, now, settings.security.clock_skew_seconds)
    return _with_inline_idp(settings, info.xml)


def _check_identity(report: CheckReport, settings: Settings) -> None:
    from .claims import PRESETS

    attrs, roles = settings.attributes, settings.roles
    report.section("Users:")
    preset = dict(PRESETS[attrs.preset]) if attrs.preset else {}
    changed = [
        f"{name} <- {' or '.join(claims)}"
        for name, claims in attrs.fields.items()
        if preset.get(name) != claims
    ]
    described = f"preset {attrs.preset}" if attrs.preset else "no preset"
    report.item("attributes", "; ".join([described, *changed]))
    report.item("role claim", ", ".join(roles.attributes) or "none")
    mapping = "; ".join(f"{idp} -> {', '.join(app)}" for idp, app in roles.map.items())
    report.item("roles.map", mapping or "empty (users get roles.default only)")
    extras = []
    if roles.default:
        extras.append(f"default {', '.join(roles.default)}")
    if roles.delimiter:
        extras.append(f"delimiter {roles.delimiter!r}")
    if roles.case_insensitive:
        extras.append("case-insensitive")
    if roles.require_mapped_role:
        extras.append("only users with a mapped role may sign in")
    if extras:
        report.item("roles", "; ".join(extras))
    if settings.provision is not None:
        hook = settings.provision
        name = getattr(hook, "__qualname__", type(hook).__name__)
        report.item("provision", f"{getattr(hook, '__module__', '?')}.{name}")
    if roles.require_mapped_role and not roles.map:
        report.error(
            "roles.require_mapped_role",
            "is true but roles.map is empty: every sign-in would be refused",
        )
    if not roles.attributes and roles.map:
        report.error("roles.attribute", "is empty, so roles.map never matches")


async def _store_status(settings: Settings, store: Any) -> tuple[str, str | None]:
    """(what to print, the problem if any) about the store, probed with one read."""
    backend = settings.store.backend
    if backend == "memory":
        return "memory (in-process: one worker process only)", None
    try:
        await asyncio.wait_for(store.get(f"{PROG}:check"), STORE_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - reported, with the type only (no URL, no secret)
        return f"{backend}: NOT reachable", f"not reachable ({type(exc).__name__})"
    return f"{backend}: reachable", None


STORE_TIMEOUT_SECONDS = 5


def _check_runtime(
    report: CheckReport, settings: Settings, engine_settings: Settings | None
) -> None:
    from .engine import Engine
    from .errors import ConfigError
    from .stores import make_store

    store: Any = None
    if engine_settings is not None:
        try:  # what the middleware builds at start-up (pysaml2, xmlsec1, the store)
            store = Engine(engine_settings).store
        except ConfigError as exc:
            report.error(exc.key or "idp", exc.problem)
    report.section("Runtime:")
    if store is None:
        try:
            store = make_store(settings.store)
        except ConfigError as exc:
            report.error(exc.key or "store", exc.problem)
    if store is not None:
        status, problem = asyncio.run(_store_status(settings, store))
        report.item("store", status)
        if problem:
            report.error("store.url" if settings.store.url else "store.backend", problem)
    now = dt.datetime.now(dt.timezone.utc)
    report.item(
        "clock",
        f"{_utc(now)} (UTC, this machine; clock_skew_seconds "
        f"{settings.security.clock_skew_seconds})",
    )


def run_check(spec: str, tenant: str | None = None) -> tuple[str, bool]:
    """The `check` report for the settings `spec`, and whether it found no error.

    A settings dict that does not validate raises `ConfigError` (one line); every
    later problem is a line of the report.
    """
    raw, settings = _load(spec)
    report = CheckReport()
    report.lines.append(f"Settings {spec}: valid")
    # The app's own IdP, then each organization (one, with --tenant).
    targets: list[tuple[str | None, Settings]] = []
    if tenant is not None:
        targets.append((tenant, _tenant_settings(settings, tenant)))
    else:
        if settings.idp is not None:
            targets.append((None, settings))
        if isinstance(settings.tenants, Mapping):
            targets.extend((slug, t.settings) for slug, t in settings.tenants.items())
        elif settings.tenants is not None:
            report.section("Organizations: read by the tenants loader")
            report.item("check one", f"{PROG} check --settings {spec} --tenant SLUG")
    first: Settings | None = None
    with _quiet_library_logs():
        for slug, target in targets:
            target = dataclasses.replace(target, tenants=None, tenant_options=None)
            if slug is not None:
                report.section(f"== Organization {slug}")
            _check_sp(report, raw if slug is None else {}, target)
            engine_settings = _check_idp(report, target)
            _check_identity(report, target)
            first = first or engine_settings
        _check_runtime(report, settings, first)
    return report.render(), not report.errors


def _cmd_check(args: argparse.Namespace) -> int:
    text, ok = run_check(args.settings, args.tenant)
    sys.stdout.write(text)
    return 0 if ok else 1


# -- diagnose ---------------------------------------------------------------------------

# A captured Response file larger than this is not read (the ACS refuses far less).
MAX_RESPONSE_FILE_BYTES = 16 * 1024 * 1024


def _read_response(name: str) -> bytes:
    """The bytes of `--response FILE` (`-`: standard input), bounded."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_RESPONSE_FILE_BYTES + 1)
        else:
            with open(name, "rb") as fh:
                data = fh.read(MAX_RESPONSE_FILE_BYTES + 1)
    except OSError as exc:
        raise CLIError(f"--response {name}: cannot read ({exc.strerror or exc})", 2) from None
    if len(data) > MAX_RESPONSE_FILE_BYTES:
        raise CLIError(f"--response {name}: larger than {MAX_RESPONSE_FILE_BYTES} bytes", 2)
    return data


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnostics.offline import parse_instant, render_text, response_value
    from .engine import Engine
    from .errors import ConfigError
    from .stores import MemoryStore

    clock: Callable[[], float] = time.time
    if args.at is not None:
        try:
            at = parse_instant(args.at)
        except ValueError as exc:
            raise CLIError(f"--at: {exc}", 2) from None
        clock = lambda: at  # noqa: E731 - every time-dependent check judges at --at
    try:
        _, settings = _load(args.settings)
        enabled, name = True, None
        if args.tenant is not None:
            tenant = _tenant(settings, args.tenant)
            settings, enabled, name = tenant.settings, tenant.enabled, tenant.name
        elif settings.idp is None:
            raise CLIError("--tenant: the IdPs are per organization here: give --tenant SLUG")
        if args.at is not None and settings.security.crypto_backend == "xmlsec1":
            raise CLIError(
                "--at needs security.crypto_backend 'inprocess': pysaml2's xmlsec1 path "
                "judges times by this machine's clock"
            )
        # The organizations' IdPs are not this command's business; the store is not
        # touched (Engine.diagnose stores nothing), so a throwaway one stands in for it.
        settings = dataclasses.replace(settings, tenants=None, tenant_options=None)
        value = response_value(_read_response(args.response))
        with _quiet_library_logs():
            engine = Engine(settings, store=MemoryStore(), clock=clock)
            assert engine.tenant is not None
            engine.tenant.enabled = enabled
            engine.tenant.name = name or engine.tenant.name
            diagnosis = asyncio.run(engine.diagnose(value, request_id=args.request_id))
    except CLIError as exc:
        raise CLIError(str(exc), 2) from None
    except ConfigError as exc:
        raise CLIError(f"settings: {exc}", 2) from None
    if args.json:
        sys.stdout.write(json.dumps(diagnosis.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(diagnosis))
    return 0 if diagnosis.would_sign_in else 1


# -- the parser -------------------------------------------------------------------------


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--host",
        type=loopback_host,
        default="127.0.0.1",
        help="loopback address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=default_port,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )


def _days(text: str) -> int:
    from .keys import MAX_DAYS

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "SAML 2.0 single sign-on middleware: keys, SP metadata, a configuration check "
            "and development tools."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = commands.add_parser(
        "keygen",
        help="make the SP's private key and self-signed certificate",
        description=(
            f"Write {KEY_NAME} (private key, mode 0600) and {CERT_NAME} (self-signed "
            "certificate) for the SP to sign AuthnRequests and decrypt assertions with, and "
            "print the settings that use them. Existing files are never overwritten without "
            "--force. IdPs trust the certificate because it is in the SP metadata, so "
            "self-signed is normal."
        ),
    )
    keygen.add_argument(
        "--out-dir", default=".", metavar="DIR", help="where to write (default: %(default)s)"
    )
    keygen.add_argument(
        "--kind",
        choices=("rsa", "ec"),
        default="rsa",
        help="rsa (default: every IdP, Entra included, accepts it) or ec (P-256)",
    )
    keygen.add_argument(
        "--bits",
        type=int,
        choices=(2048, 3072, 4096),
        default=None,
        help="RSA key size (default: 2048)",
    )
    keygen.add_argument(
        "--days",
        type=_days,
        default=365,
        help="certificate validity in days (default: %(default)s)",
    )
    keygen.add_argument(
        "--common-name",
        type=_common_name,
        metavar="CN",
        default="saml-middleware SP",
        help="the certificate's subject name (default: %(default)s)",
    )
    keygen.add_argument(
        "--force", action="store_true", help=f"replace an existing {KEY_NAME} / {CERT_NAME}"
    )
    keygen.set_defaults(handler=_cmd_keygen)

    metadata = commands.add_parser(
        "metadata",
        help="print the SP metadata XML (to upload to the IdP)",
        description=(
            "Print the SP metadata XML (entity ID, ACS URL, NameID format, certificates) "
            "that the app serves at {prefix}/metadata/, and nothing else, on stdout: "
            f"'{PROG} metadata --settings app.toml > sp-metadata.xml'. The IdP is not "
            "contacted (the SP metadata does not depend on it)."
        ),
    )
    metadata.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    metadata.add_argument(
        "--tenant", metavar="SLUG", help="an organization's SP metadata (with tenants)"
    )
    metadata.set_defaults(handler=_cmd_metadata)

    check = commands.add_parser(
        "check",
        help="validate the settings and the IdP metadata; print what to paste into the IdP",
        description=(
            "Validate the settings, read the IdP metadata as the middleware would (fetching "
            "a metadata URL), and print the values to paste into the IdP, the IdP's "
            "endpoints and signing certificates, the attribute and role mapping, the store "
            "and the clock. Each problem is one line naming the setting key. Exit status: "
            "0 when there is no error (warnings allowed), 1 otherwise."
        ),
    )
    check.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    check.add_argument("--tenant", metavar="SLUG", help="check one organization (with tenants)")
    check.set_defaults(handler=_cmd_check)

    diagnose = commands.add_parser(
        "diagnose",
        help="offline Test SSO: would this captured SAML Response sign someone in, and why not",
        description=(
            "Run the ACS's checks on a captured SAML Response, offline, and print Test SSO's "
            "table of checks (or --json) with the verdict and the real refusal code. The "
            "Response may be the Base64 a browser SAML tracer shows, the URL-encoded form "
            "value (or whole form body), or the XML. Nothing is stored: no replay mark, no "
            "session, no request taken. Exit status: 0 when the Response would sign the "
            "user in, 1 when it would be refused, 2 for bad usage."
        ),
    )
    diagnose.add_argument("--settings", required=True, metavar="SPEC", help=SETTINGS_HELP)
    diagnose.add_argument("--tenant", metavar="SLUG", help="judge it for this organization")
    diagnose.add_argument(
        "--response",
        required=True,
        metavar="FILE",
        help="the captured Response: a file, or - for standard input",
    )
    diagnose.add_argument(
        "--at",
        metavar="ISO-TIME",
        help=(
            "judge every time (assertion and message times, metadata validUntil, certificate "
            "expiry) at this instant, e.g. 2024-04-25T20:31:55Z (default: now)"
        ),
    )
    diagnose.add_argument(
        "--request-id",
        metavar="ID",
        help=(
            "the ID of the outstanding AuthnRequest the Response answers (without it, a "
            "Response with InResponseTo is refused as answering an unknown request)"
        ),
    )
    diagnose.add_argument("--json", action="store_true", help="print one JSON object")
    diagnose.set_defaults(handler=_cmd_diagnose)

    demo = commands.add_parser(
        "demo",
        help="serve the example app and the development IdP on one local server",
        description=(
            "Serve the example Starlette app behind SAMLMiddleware, with the development "
            f"IdP under {IDP_PATH}, on one local server. NOT FOR PRODUCTION."
        ),
    )
    _add_server_options(demo, 8000)
    demo.set_defaults(handler=_cmd_demo)

    dev_idp = commands.add_parser(
        "dev-idp",
        help="serve the development IdP alone",
        description=(
            "Serve the development SAML IdP alone (NOT FOR PRODUCTION: anyone who can "
            "reach it signs in as any of its users, with no password)."
        ),
    )
    _add_server_options(dev_idp, 9000)
    dev_idp.add_argument(
        "--users",
        metavar="FILE.json",
        help='test users: a JSON list of {"key", "name_id", "display", "claims"} objects',
    )
    dev_idp.add_argument(
        "--sp-metadata",
        metavar="FILE_OR_URL",
        nargs="+",
        action="extend",
        default=[],
        help="SP metadata to trust: a file, or an http(s) URL fetched when first needed",
    )
    dev_idp.set_defaults(handler=_cmd_dev_idp)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 for success and --help)."""
    from .errors import ConfigError

    # pysaml2 imports a cipher mode that cryptography has moved: noise for CLI users.
    warnings.filterwarnings("ignore", message="CFB has been moved")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except SystemExit as exc:  # --help, or uvicorn giving up
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    except CLIError as exc:
        print(f"{PROG}: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(f"{PROG}: error: settings: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        print(f"{PROG}: error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
