"""Serving on a loopback address only, for `demo` and `dev-idp`: the development IdP
lets anyone who can reach it sign in as any of its users."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket

from starlette.types import ASGIApp

from .common import CLIError

IDP_PATH = "/idp"


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


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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
