"""The `saml-middleware` command line (also `python -m saml_middleware`).

    saml-middleware demo [--host 127.0.0.1] [--port 8000]
    saml-middleware dev-idp [--host 127.0.0.1] [--port 9000] [--users FILE.json]
                            [--sp-metadata FILE_OR_URL ...]

`demo` serves the example Starlette app behind `SAMLMiddleware` and the
development IdP (under `/idp`) from one local server, so a full SAML round trip
runs with nothing else installed. `dev-idp` serves the development IdP alone,
for an app of your own to sign in against.

Both bind to a loopback address only: the development IdP lets anyone who can
reach it sign in as any of its users. Errors are one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import ipaddress
import logging
import secrets
import socket
import sys
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

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


def _loopback_host(text: str) -> str:
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
        print("  no SP registered yet: restart with --sp-metadata FILE_OR_URL", flush=True)
    _serve(create_app(idp), sock)
    return 0


# -- the parser -------------------------------------------------------------------------


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--host",
        type=_loopback_host,
        default="127.0.0.1",
        help="loopback address to listen on (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=default_port,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="SAML 2.0 single sign-on middleware: development tools.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
