"""The ASGI adapter: what only ASGI has (Starlette idioms, websockets, lifespan, root_path).

Behaviour common to both adapters (redirect or 401, exempt paths, roles,
logout, tampered cookies, mounting, proxies) is in test_adapters.py.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from saml_middleware import SAMLMiddleware, SAMLUser
from saml_middleware.engine import PassThrough
from saml_middleware.sessions import SessionCodec
from tests.helpers import SP_BASE, request, settings_for

pytestmark = pytest.mark.anyio


async def me(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse(
        {
            "auth": user.is_authenticated,
            "name_id": user.name_id,
            "email": user.email,
            "roles": list(user.roles),
            "scopes": list(request.auth.scopes),
        }
    )


@requires("Admin")
async def admin(request: Request) -> PlainTextResponse:
    return PlainTextResponse("admin area")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.scope["user"].name_id or "anonymous")
    await websocket.close()


def build_app(devidp, use_add_middleware: bool = False, **overrides):
    settings = settings_for(devidp, **overrides)
    routes = [
        Route("/me", me),
        Route("/admin", admin),
        WebSocketRoute("/ws", ws_echo),
        Route("/public/me", me),
    ]
    if use_add_middleware:
        app = Starlette(routes=routes)
        app.add_middleware(SAMLMiddleware, settings=settings)
        return app
    return SAMLMiddleware(Starlette(routes=routes), settings=settings)


async def login(client: httpx.AsyncClient, devidp, user: str, page: str = "/me") -> httpx.Response:
    first = await client.get(page, headers={"accept": "text/html"})
    assert first.status_code == 303
    to_idp = await client.get(first.headers["location"])
    assert to_idp.status_code == 303
    query = parse_qs(urlsplit(to_idp.headers["location"]).query)
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    saml_response = devidp.create_response(
        user, sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    acs = await client.post(
        "/saml/acs/", data={"SAMLResponse": saml_response, "RelayState": query["RelayState"][0]}
    )
    assert acs.status_code == 303, acs.text
    return acs


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SP_BASE)


@pytest.mark.parametrize("use_add_middleware", [False, True])
async def test_login_fills_request_user_and_auth(devidp, use_add_middleware):
    app = build_app(devidp, use_add_middleware)
    metadata = await client_for(app).get("/saml/metadata/")
    devidp.add_service_provider(metadata.text)
    async with client_for(app) as client:
        acs = await login(client, devidp, "bsimon")
        assert acs.headers["location"] == "/me"
        cookie = acs.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
        body = (await client.get("/me")).json()
    assert body == {
        "auth": True,
        "name_id": "B.Simon@contoso.com",
        "email": "B.Simon@contoso.com",
        "roles": ["Admin"],
        "scopes": ["authenticated", "Admin"],
    }


async def test_lifespan_passes_through(devidp):
    events = []

    async def inner(scope, receive, send):
        events.append(scope["type"])

    app = SAMLMiddleware(inner, settings=settings_for(devidp))
    await app({"type": "lifespan"}, None, None)
    assert events == ["lifespan"]


def test_websocket_on_protected_path_without_session_is_closed(devidp):
    from starlette.testclient import TestClient

    app = build_app(devidp)
    with TestClient(app, base_url=SP_BASE) as client:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):
            pass
        assert closed.value.code == 1008


def test_websocket_with_session_sees_the_user(devidp):
    from starlette.testclient import TestClient

    app = build_app(devidp)
    devidp.add_service_provider(TestClient(app, base_url=SP_BASE).get("/saml/metadata/").text)
    engine = app.engine
    cookie = engine.sessions.encode(SAMLUser(name_id="B.Simon@contoso.com", user_id="x"))
    with TestClient(app, base_url=SP_BASE) as client:
        client.cookies.set("saml_session", cookie)
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "B.Simon@contoso.com"


def test_websocket_on_unprotected_path_passes(devidp):
    from starlette.testclient import TestClient

    app = build_app(devidp, paths__exempt=["/ws"])
    with TestClient(app, base_url=SP_BASE) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "anonymous"


@pytest.mark.parametrize("path_has_root", [True, False])
async def test_root_path_from_the_server(devidp, path_has_root):
    """uvicorn --root-path puts the mount in both root_path and path; older servers only in
    root_path: either way the app's paths are matched below it and URLs start with it."""
    seen = {}

    async def inner(scope, receive, send):
        seen["user"] = scope["user"]
        await PlainTextResponse("ok")(scope, receive, send)

    app = SAMLMiddleware(inner, settings=settings_for(devidp, base_url=f"{SP_BASE}/app"))
    path = "/app/me" if path_has_root else "/me"
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "/app",
        "query_string": b"",
        "headers": [(b"accept", b"text/html"), (b"host", b"app.example.test")],
        "scheme": "https",
    }
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 303
    assert headers[b"location"] == b"/app/saml/login/?next=/app/me"
    scope = {**scope, "path": "/app/saml/metadata/" if path_has_root else "/saml/metadata/"}
    sent.clear()
    await app(scope, receive, send)
    assert sent[0]["status"] == 200


# -- the signed-in shortcut (SAMLMiddleware.__call__ without a request object) ------------


def _client(app: SAMLMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SP_BASE)


async def test_a_session_due_for_refresh_still_gets_its_new_cookie(devidp):
    """The shortcut serves only sessions with nothing to do: a sliding idle timeout
    that is due goes the whole way and the browser gets a fresh cookie."""
    app = build_app(devidp, session__idle_timeout_seconds=600)
    codec = SessionCodec(
        app.engine.settings.session, app.engine.settings.secret_key, clock=lambda: time.time() - 120
    )
    stale = codec.encode(SAMLUser(name_id="B.Simon@contoso.com", roles=("Admin",)))
    async with _client(app) as client:
        client.cookies.set("saml_session", stale)
        reply = await client.get("/me")
    assert reply.status_code == 200 and reply.json()["name_id"] == "B.Simon@contoso.com"
    assert reply.headers["set-cookie"].startswith("saml_session=")
    assert reply.headers["set-cookie"].split(";")[0] != f"saml_session={stale}"


async def test_the_shortcut_agrees_with_handle(devidp):
    app = build_app(devidp)
    engine = app.engine
    good = engine.sessions.encode(SAMLUser(name_id="B.Simon@contoso.com", roles=("Admin",)))
    tenant = engine.sessions.encode(SAMLUser(name_id="x@contoso.com", tenant="acme"))
    for path in ("/me", "/public/me", "/saml/logout/", "/saml/metadata/"):
        for cookie in (good, good[:-2] + "xx", tenant, None):
            fast = engine.signed_in_user(path, cookie)
            full = await engine.handle(
                request("GET", path, cookies={"saml_session": cookie} if cookie else {})
            )
            if fast is not None:
                assert isinstance(full, PassThrough) and full.user == fast, (path, cookie)
                assert full.set_cookie is None
            else:
                assert cookie != good or path.startswith("/saml/"), (path, cookie)
