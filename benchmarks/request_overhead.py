"""Per-request cost for a signed-in user on a protected route, against a bare route.

    python benchmarks/request_overhead.py           # 9 rounds of 4000 requests per row
    python benchmarks/request_overhead.py --quick   # 3 rounds of 1000 (a few seconds)

Every app is called directly as ASGI (`await app(scope, receive, send)`): an
HTTP client (httpx + ASGITransport) adds ~290 us per request and would hide
every difference measured here. The route returns a 22-byte text body.

  a   bare Starlette route
  s   SAMLMiddleware with a valid session cookie (the user a real login produced)
  t   SAMLMiddleware with server-side sessions (`session.backend = "store"`, memory store)
  m   Starlette's SessionMiddleware with a small signed cookie (the route reads it)

Each row is checked first: 200, and for `s` the signed-in user in the scope.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any

from _common import Row, acs_form, acs_request, environment, measure, new_idp, report, settings
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from saml_middleware import SAMLMiddleware
from saml_middleware.engine import Response

BODY = "hello, signed-in user!"  # 22 bytes
SESSION_SECRET = "starlette-session-secret-0123456789"


async def dashboard(request: Request) -> PlainTextResponse:
    # Touch what each stack provides, as a real route would.
    if "user" in request.scope:
        assert request.user.is_authenticated
    if "session" in request.scope:
        assert request.session.get("uid")
    return PlainTextResponse(BODY)


def bare_app() -> Starlette:
    return Starlette(routes=[Route("/dashboard", dashboard)])


def scope_with(cookie: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"app.example.test"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0"),
        (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"accept-encoding", b"gzip, deflate, br"),
    ]
    if cookie:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/dashboard",
        "raw_path": b"/dashboard",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("app.example.test", 443),
        "client": ("203.0.113.7", 51234),
    }


async def call(app: Any, scope: dict[str, Any]) -> int:
    """One request; returns the status. A fresh scope copy: apps write into it."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


def starlette_session_cookie() -> str:
    """What SessionMiddleware itself would set for a small session (~120 B)."""
    data = base64.b64encode(json.dumps({"uid": "B.Simon@contoso.com", "r": ["Admin"]}).encode())
    return TimestampSigner(SESSION_SECRET).sign(data).decode()


def saml_session_cookie(middleware: SAMLMiddleware, loop: asyncio.AbstractEventLoop) -> str:
    """Sign in once through the middleware's own engine (a real IdP-initiated login)."""
    idp = middleware_idp
    engine = middleware.engine
    idp.add_service_provider(engine.sp_metadata_xml())
    response = idp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    reply = loop.run_until_complete(engine.handle(acs_request(acs_form(response))))
    assert isinstance(reply, Response) and reply.status == 303, reply
    set_cookie = dict(reply.headers)["set-cookie"]
    return set_cookie.split(";", 1)[0]


middleware_idp = new_idp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1000 requests")
    parser.add_argument("--rounds", type=int, help="rounds (default 9; --quick 3)")
    parser.add_argument("--requests", type=int, help="requests per row per round (4000; 1000)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    count = args.requests or (1000 if args.quick else 4000)

    print(environment())
    loop = asyncio.new_event_loop()
    bare = bare_app()
    saml = SAMLMiddleware(bare_app(), settings=settings(middleware_idp))
    session = SessionMiddleware(bare_app(), secret_key=SESSION_SECRET)
    saml_cookie = saml_session_cookie(saml, loop)
    stored = SAMLMiddleware(
        bare_app(), settings={**settings(middleware_idp), "session": {"backend": "store"}}
    )
    stored_cookie = saml_session_cookie(stored, loop)
    session_cookie = f"session={starlette_session_cookie()}"

    cases = {
        "a": ("bare Starlette route", bare, scope_with(None)),
        "s": ("SAMLMiddleware, valid session cookie", saml, scope_with(saml_cookie)),
        "t": (
            "SAMLMiddleware, server-side session (memory store)",
            stored,
            scope_with(stored_cookie),
        ),
        "m": (
            "Starlette SessionMiddleware, small signed cookie",
            session,
            scope_with(session_cookie),
        ),
    }
    for key, (_, app, scope) in cases.items():  # every row answers 200 before it is timed
        assert loop.run_until_complete(call(app, scope)) == 200, key
    assert loop.run_until_complete(call(saml, scope_with(None))) in (303, 401)  # it does protect

    def batch(app: Any, scope: dict[str, Any]) -> int:
        async def run() -> None:
            for _ in range(count):
                await call(app, scope)

        loop.run_until_complete(run())
        return count

    def row(key: str) -> Row:
        label, app, scope = cases[key]
        return Row(key, label, lambda: batch(app, scope))

    rows = [row(key) for key in cases]
    measure(rows, rounds)
    print(
        f"{rounds} rounds of {count} requests per row; SAML cookie {len(saml_cookie)} B, "
        f"Starlette session cookie {len(session_cookie)} B"
    )
    by_key = {r.key: r for r in rows}
    report(
        "Protected route, signed-in user (direct ASGI calls)",
        rows,
        by_key["a"],
        unit="request",
        extra=[
            ("SessionMiddleware over SAMLMiddleware (time per request)", by_key["m"], by_key["s"])
        ],
    )


if __name__ == "__main__":
    main()
