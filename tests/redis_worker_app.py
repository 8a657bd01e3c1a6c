"""One "worker" of the multi-worker tests: the same small app behind the middleware.

The settings come as JSON in `$SAML_WORKER_SETTINGS` (the test's development
IdP metadata, the shared Redis, one `base_url` for all workers as behind a
load balancer). `asgi_app` is served by uvicorn; `python -m
tests.redis_worker_app PORT` serves `wsgi_app` on a threaded wsgiref server,
so one test can put an ASGI and a WSGI worker on one Redis.
"""

from __future__ import annotations

import json
import os
import socketserver
import sys
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from saml_middleware import SAMLMiddleware, SAMLWSGIMiddleware

SETTINGS: dict[str, Any] = json.loads(os.environ.get("SAML_WORKER_SETTINGS", "{}") or "{}")
WORKER = os.environ.get("SAML_WORKER_NAME", "worker")


async def _me(request: Request) -> JSONResponse:
    return JSONResponse({"worker": WORKER, "name_id": request.user.name_id})


def _me_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = json.dumps({"worker": WORKER, "name_id": environ["saml.user"].name_id}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


def build_asgi() -> Any:
    return SAMLMiddleware(Starlette(routes=[Route("/me", _me)]), settings=SETTINGS)


asgi_app = build_asgi() if SETTINGS else None


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - wsgiref's name
        pass


def main(port: int) -> None:
    wsgi_app = SAMLWSGIMiddleware(_me_wsgi, settings=SETTINGS)
    with make_server(
        "127.0.0.1", port, wsgi_app, server_class=_ThreadingServer, handler_class=_QuietHandler
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
