"""Run an example app and the development IdP side by side, on two loopback ports.

NOT FOR PRODUCTION: the development IdP signs anyone in as any of its test users.
The FastAPI, Flask and Django examples call `run(...)` from their `__main__`;
the app is served on `--port` (default 8000) by uvicorn (ASGI) or by the
standard library's wsgiref (WSGI, one thread per request), and the IdP on
`--idp-port` (default 9000) by uvicorn in a background thread, as a separate
origin like a real IdP. Port 0 picks a free port; the URLs are printed first:

    <name>: open http://127.0.0.1:8000/profile and sign in as B.Simon
      (A.Jones is a member without Admin; IdP-initiated sign-in: http://127.0.0.1:9000/)
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from socketserver import ThreadingMixIn
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from saml_middleware.cli import demo_settings, loopback_host
from saml_middleware.devidp import DevIdP, create_app
from saml_middleware.engine import Engine

# settings -> (the app to serve, the engine whose SP metadata the IdP trusts)
Build = Callable[[dict[str, Any]], tuple[Any, Engine]]
STOP_SECONDS = 5


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return int(text)


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _WSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref on an already bound socket, one thread per request."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, app: Any) -> None:
        self.address_family = sock.family
        host, port = sock.getsockname()[:2]
        super().__init__((host, port), WSGIRequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name, self.server_port = host, port
        self.setup_environ()
        self.set_app(app)
        self.server_activate()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve_wsgi(app: Any, sock: socket.socket) -> None:
    server = _WSGIServer(sock, app)
    # SIGTERM (a test fixture, a process manager) stops serving like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _serve_asgi(app: Any, sock: socket.socket) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="auto")).run(sockets=[sock])


def run(
    name: str,
    build: Build,
    interface: Literal["asgi", "wsgi"],
    *,
    protect: Sequence[str],
    argv: Sequence[str] | None = None,
) -> int:
    """Serve `build(settings)` and the development IdP until interrupted; the exit status."""
    import uvicorn

    prog = f"python -m examples.{name}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Serve examples/{name} with the development IdP (NOT FOR PRODUCTION).",
    )
    parser.add_argument("--host", type=loopback_host, default="127.0.0.1", help="loopback address")
    parser.add_argument("--port", type=_port, default=8000, help="the app's port (0: any)")
    parser.add_argument("--idp-port", type=_port, default=9000, help="the IdP's port (0: any)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="CFB has been moved")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")

    sockets: list[socket.socket] = []
    try:
        for port in (args.port, args.idp_port):
            sockets.append(_listen(args.host, port))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        print(f"{prog}: error: cannot listen on {args.host}: {exc.strerror}", file=sys.stderr)
        return 1
    app_sock, idp_sock = sockets
    base_url = _origin(args.host, app_sock.getsockname()[1])
    idp_url = _origin(args.host, idp_sock.getsockname()[1])

    idp = DevIdP(idp_url)
    app, engine = build(demo_settings(base_url, idp.metadata_xml(), protect))
    idp.add_service_provider_source(engine.sp_metadata_xml)
    idp_server = uvicorn.Server(
        uvicorn.Config(create_app(idp), log_level="warning", lifespan="off")
    )
    idp_thread = threading.Thread(
        target=idp_server.run, kwargs={"sockets": [idp_sock]}, name="dev-idp", daemon=True
    )
    idp_thread.start()
    print(f"{name}: open {base_url}/profile and sign in as B.Simon", flush=True)
    print(f"  (A.Jones is a member without Admin; IdP-initiated sign-in: {idp_url}/)", flush=True)
    try:
        (_serve_asgi if interface == "asgi" else _serve_wsgi)(app, app_sock)
    finally:
        idp_server.should_exit = True
        idp_thread.join(timeout=STOP_SECONDS)
        for sock in sockets:
            sock.close()
    return 0
