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
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from saml_middleware.cli.demo import demo_settings
from saml_middleware.cli.serving import loopback_host
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


def serve_asgi(app: Any, sock: socket.socket) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="auto")).run(sockets=[sock])


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every example shares: a loopback host, the app's and the IdP's ports."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", type=loopback_host, default="127.0.0.1", help="loopback address")
    parser.add_argument("--port", type=_port, default=8000, help="the app's port (0: any)")
    parser.add_argument("--idp-port", type=_port, default=9000, help="the IdP's port (0: any)")
    return parser


@dataclass
class Listening:
    """The app's and the IdP's sockets, bound, and their public origins."""

    host: str
    app_sock: socket.socket
    idp_sock: socket.socket

    @property
    def base_url(self) -> str:
        return _origin(self.host, self.app_sock.getsockname()[1])

    @property
    def idp_url(self) -> str:
        return _origin(self.host, self.idp_sock.getsockname()[1])

    def close(self) -> None:
        self.app_sock.close()
        self.idp_sock.close()


def listen(prog: str, args: argparse.Namespace) -> Listening | None:
    """Bind both ports before anything starts; None (the reason printed) when one is taken."""
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
        return None
    return Listening(args.host, *sockets)


def serve_with_idp(
    idp: DevIdP, app: Any, bound: Listening, serve: Callable[[Any, socket.socket], None]
) -> int:
    """Run the development IdP in a thread and `serve` the app until interrupted."""
    import uvicorn

    idp_server = uvicorn.Server(
        uvicorn.Config(create_app(idp), log_level="warning", lifespan="off")
    )
    idp_thread = threading.Thread(
        target=idp_server.run, kwargs={"sockets": [bound.idp_sock]}, name="dev-idp", daemon=True
    )
    idp_thread.start()
    try:
        serve(app, bound.app_sock)
    finally:
        idp_server.should_exit = True
        idp_thread.join(timeout=STOP_SECONDS)
        bound.close()
    return 0


def run(
    name: str,
    build: Build,
    interface: Literal["asgi", "wsgi"],
    *,
    protect: Sequence[str],
    argv: Sequence[str] | None = None,
) -> int:
    """Serve `build(settings)` and the development IdP until interrupted; the exit status."""
    prog = f"python -m examples.{name}"
    args = parser(
        prog, f"Serve examples/{name} with the development IdP (NOT FOR PRODUCTION)."
    ).parse_args(argv)
    bound = listen(prog, args)
    if bound is None:
        return 1
    idp = DevIdP(bound.idp_url)
    app, engine = build(demo_settings(bound.base_url, idp.metadata_xml(), protect))
    idp.add_service_provider_source(engine.sp_metadata_xml)
    print(f"{name}: open {bound.base_url}/profile and sign in as B.Simon", flush=True)
    print(
        f"  (A.Jones is a member without Admin; IdP-initiated sign-in: {bound.idp_url}/)",
        flush=True,
    )
    return serve_with_idp(idp, app, bound, serve_asgi if interface == "asgi" else _serve_wsgi)
