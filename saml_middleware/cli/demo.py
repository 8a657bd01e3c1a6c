"""`demo`: the example Starlette app behind `SAMLMiddleware` and the development IdP
(under `/idp`) from one local server, a full SAML round trip with nothing else installed."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .common import CLIError
from .serving import IDP_PATH, _configure_logging, _listen, _origin, _serve

DEMO_ROLES = {"admins": ["Admin"], "developers": ["Member"]}


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
    from ..asgi import SAMLMiddleware
    from ..devidp import DevIdP, create_app

    base_url = _origin(host, port)
    example = _example_module()
    idp = DevIdP(base_url + IDP_PATH)
    settings = demo_settings(base_url, idp.metadata_xml(), example.PROTECTED_PATHS)
    middleware = SAMLMiddleware(example.create_app(), settings=settings)
    idp.add_service_provider_source(lambda: middleware.engine.sp_metadata_xml())
    return _Dispatch(create_app(idp), middleware)


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
