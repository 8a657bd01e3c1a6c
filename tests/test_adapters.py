"""The adapters' conformance suite: every test runs against ASGI and WSGI alike.

The same small app (JSON of the user at /me and /public/me, an Admin-only
/admin) is built behind `SAMLMiddleware` (a Starlette app) and behind
`SAMLWSGIMiddleware` (a plain WSGI callable), optionally mounted under /app
(Starlette's Mount; werkzeug's DispatcherMiddleware, which sets SCRIPT_NAME).
SAML behaviour itself is tested in the engine's suites; here, what each
adapter must translate: paths, mount points, bodies, headers and cookies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from saml_middleware import SAMLMiddleware, SAMLUser, SAMLWSGIMiddleware
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from tests.adapter_apps import client_for, idp_initiated, login, to_idp
from tests.helpers import SP_BASE, settings_for

MOUNT = "/app"
INTERNAL = "http://10.0.0.5:8000"  # how a proxied app sees itself
FORM = "application/x-www-form-urlencoded"


# -- the same app, twice ------------------------------------------------------------------


def _user_json(user: SAMLUser, scopes: Iterable[str]) -> dict[str, Any]:
    return {
        "auth": user.is_authenticated,
        "name_id": user.name_id,
        "email": user.email,
        "roles": list(user.roles),
        "scopes": list(scopes),
    }


async def _me(request: Request) -> JSONResponse:
    return JSONResponse(_user_json(request.user, request.auth.scopes))


@requires("Admin")
async def _admin(request: Request) -> PlainTextResponse:
    return PlainTextResponse("admin area")


def asgi_app(settings: dict[str, Any]) -> tuple[Any, Engine]:
    routes = [Route("/me", _me), Route("/public/me", _me), Route("/admin", _admin)]
    middleware = SAMLMiddleware(Starlette(routes=routes), settings=settings)
    return middleware, middleware.engine


def _plain_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ["PATH_INFO"]
    scopes = environ["saml.auth_scopes"]
    if path == "/admin":
        allowed = "Admin" in scopes
        status, body = ("200 OK", b"admin area") if allowed else ("403 Forbidden", b"Forbidden")
        start_response(status, [("content-type", "text/plain")])
        return [body]
    if path in ("/me", "/public/me"):
        body = json.dumps(_user_json(environ["saml.user"], scopes)).encode()
        start_response("200 OK", [("content-type", "application/json")])
        return [body]
    start_response("404 Not Found", [("content-type", "text/plain")])
    return [b"Not Found"]


def wsgi_app(settings: dict[str, Any]) -> tuple[Any, Engine]:
    middleware = SAMLWSGIMiddleware(_plain_wsgi, settings=settings)
    return middleware, middleware.engine


def _not_found_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("404 Not Found", [("content-type", "text/plain")])
    return [b"not mounted here"]


def mounted(kind: str, app: Any) -> Any:
    if kind == "asgi":
        return Starlette(routes=[Mount(MOUNT, app=app)])
    return DispatcherMiddleware(_not_found_wsgi, {MOUNT: app})


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(kind: str, devidp: DevIdP) -> Iterator[Callable[..., httpx.Client]]:
    """`make_client(mount=False, client_base=SP_BASE, **settings overrides)`."""
    clients: list[httpx.Client] = []

    def make(*, mount: bool = False, client_base: str = SP_BASE, **overrides: Any) -> httpx.Client:
        settings = settings_for(devidp, **overrides)
        app, engine = (asgi_app if kind == "asgi" else wsgi_app)(settings)
        devidp.add_service_provider(engine.sp_metadata_xml())
        client = client_for(mounted(kind, app) if mount else app, kind, client_base)
        client.engine = engine  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def json_get(client: httpx.Client, path: str) -> httpx.Response:
    return client.get(path, headers={"accept": "application/json"})


# -- signing in -------------------------------------------------------------------------


def test_login_round_trip_fills_the_user(make_client, devidp):
    client = make_client()
    acs = login(client, devidp, "bsimon", "/me")
    assert acs.status_code == 303, acs.text
    assert acs.headers["location"] == "/me"
    cookie = acs.headers["set-cookie"]
    assert cookie.startswith("saml_session=")
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert json_get(client, "/me").json() == {
        "auth": True,
        "name_id": "B.Simon@contoso.com",
        "email": "B.Simon@contoso.com",
        "roles": ["Admin"],
        "scopes": ["authenticated", "Admin"],
    }


def test_signed_in_user_is_seen_on_unprotected_paths_too(make_client, devidp):
    client = make_client(paths__exempt=["/public"])
    login(client, devidp, "ajones")
    body = json_get(client, "/public/me").json()
    assert body["auth"] is True and body["roles"] == ["Member"]


def test_roles_allow_and_deny_as_mapped(make_client, devidp):
    admin = make_client()
    login(admin, devidp, "bsimon", "/admin")
    reply = admin.get("/admin")
    assert reply.status_code == 200 and reply.text == "admin area"
    member = make_client()
    login(member, devidp, "ajones", "/admin")
    assert member.get("/admin").status_code == 403


def test_idp_initiated_lands_on_relay_state_path(make_client, devidp):
    client = make_client(paths__exempt=["/public"])
    entity_id = client.engine.settings.sp.entity_id
    acs = idp_initiated(client, devidp, entity_id, "bsimon", "/public/me")
    assert acs.status_code == 303 and acs.headers["location"] == "/public/me"
    assert json_get(client, "/public/me").json()["auth"] is True


# -- without a session ------------------------------------------------------------------


def test_browser_navigation_is_sent_to_login(make_client):
    reply = make_client().get("/me?tab=1", headers={"accept": "text/html"})
    assert reply.status_code == 303
    assert reply.headers["location"] == "/saml/login/?next=/me%3Ftab%3D1"
    assert reply.headers["cache-control"] == "no-store"


def test_api_client_gets_401_json_not_a_redirect(make_client):
    client = make_client()
    for reply in (
        json_get(client, "/me"),
        client.post("/me", headers={"accept": "text/html"}),
    ):
        assert reply.status_code == 401
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {
            "error": "authentication_required",
            "login_url": "/saml/login/?next=/me",
        }


def test_exempt_path_sees_an_anonymous_user(make_client):
    reply = json_get(make_client(paths__exempt=["/public"]), "/public/me")
    assert reply.status_code == 200
    assert reply.json() == {"auth": False, "name_id": "", "email": None, "roles": [], "scopes": []}


def test_tampered_cookie_means_no_session(make_client, devidp):
    client = make_client()
    login(client, devidp)
    value = client.cookies["saml_session"]
    client.cookies.set("saml_session", value[:-3] + "xyz", domain="app.example.test")
    assert json_get(client, "/me").status_code == 401


def test_logout_ends_the_session(make_client, devidp):
    client = make_client()
    login(client, devidp)
    assert json_get(client, "/me").status_code == 200
    confirm = client.get("/saml/logout/")  # a link cannot sign out: a page with a POST form
    assert confirm.status_code == 200 and "action='/saml/logout/'" in confirm.text
    assert json_get(client, "/me").status_code == 200
    reply = client.post("/saml/logout/")
    assert reply.status_code == 303  # on to the dev IdP's Single Logout (tests/test_slo*.py)
    assert reply.headers["location"].startswith(devidp.slo_url + "?SAMLRequest=")
    assert "Max-Age=0" in reply.headers["set-cookie"]
    assert json_get(client, "/me").status_code == 401


# -- the middleware's own endpoints -----------------------------------------------------


def test_metadata_endpoint(make_client):
    reply = make_client().get("/saml/metadata/")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/samlmetadata+xml")
    assert int(reply.headers["content-length"]) == len(reply.content)
    assert f'Location="{SP_BASE}/saml/acs/"' in reply.text


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/saml/acs/", {}, 405, "method_not_allowed"),
        ("GET", "/saml/nope/", {}, 404, "not_found"),
        ("POST", "/saml/acs/", {"json": {"SAMLResponse": "x"}}, 400, "malformed"),
        ("POST", "/saml/acs/", {"content": b"", "headers": {"content-type": FORM}}, 400, None),
        ("POST", "/saml/acs/", {"data": {"SAMLResponse": "%%%not base64"}}, 400, None),
        ("POST", "/saml/acs/", {"data": {"SAMLResponse": "x" * 300_000}}, 413, "too_large"),
    ],
)
def test_endpoint_refusals_are_4xx_with_a_code(make_client, method, path, kwargs, status, code):
    reply = make_client().request(method, path, **kwargs)
    assert reply.status_code == status, reply.text
    if code:
        assert reply.headers["x-saml-error"] == code
    assert "Traceback" not in reply.text


def test_lying_content_length_is_refused_before_reading(make_client):
    reply = make_client().post(
        "/saml/acs/",
        content=b"SAMLResponse=x",
        headers={"content-type": "application/x-www-form-urlencoded", "content-length": "999999"},
    )
    assert reply.status_code == 413


def test_non_ascii_urls_are_percent_encoded_never_a_500(make_client, devidp):
    client = make_client()
    reply = client.get("/m\u20ac/x", headers={"accept": "text/html"})
    assert reply.status_code == 303
    assert reply.headers["location"] == "/saml/login/?next=/m%E2%82%AC/x"
    logout = client.get("/saml/logout/?next=/caf%E2%82%AC%20x")
    assert logout.status_code == 303 and logout.headers["location"] == "/caf%E2%82%AC%20x"
    redirect = to_idp(client, "/m\u20ac")
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    acs = client.post(
        "/saml/acs/",
        data={
            "SAMLResponse": devidp.create_response(
                "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
            ),
            "RelayState": query["RelayState"][0],
        },
    )
    assert acs.status_code == 303 and acs.headers["location"] == "/m%E2%82%AC"


# -- mounted under a path (WSGI SCRIPT_NAME, ASGI root_path) ----------------------------


def test_mounted_app_sends_the_browser_under_its_mount(make_client, devidp, caplog):
    client = make_client(mount=True, base_url=f"{SP_BASE}{MOUNT}", paths__exempt=["/public"])
    engine = client.engine
    assert engine.settings.acs_url == f"{SP_BASE}{MOUNT}/saml/acs/"
    first = client.get(f"{MOUNT}/me", headers={"accept": "text/html"})
    assert first.status_code == 303
    assert first.headers["location"] == f"{MOUNT}/saml/login/?next={MOUNT}/me"
    assert json_get(client, f"{MOUNT}/me").json()["login_url"] == first.headers["location"]
    assert json_get(client, "/me").status_code == 404  # not mounted there: the app is not run
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        acs = login(client, devidp, "bsimon", f"{MOUNT}/me")
    assert acs.status_code == 303 and acs.headers["location"] == f"{MOUNT}/me"
    assert json_get(client, f"{MOUNT}/me").json()["name_id"] == "B.Simon@contoso.com"
    assert json_get(client, f"{MOUNT}/public/me").json()["auth"] is True
    metadata = client.get(f"{MOUNT}/saml/metadata/").text
    assert f'entityID="{SP_BASE}{MOUNT}/saml/metadata/"' in metadata
    confirm = client.get(f"{MOUNT}/saml/logout/")
    assert f"action='{MOUNT}/saml/logout/'" in confirm.text
    logout = client.post(f"{MOUNT}/saml/logout/")
    assert logout.status_code == 303 and logout.headers["location"].startswith(devidp.slo_url)
    # The IdP's LogoutResponse comes back under the mount; then on to after_logout there.
    info = devidp.parse_logout_request(
        "redirect", raw_query=logout.headers["location"].split("?")[1]
    )
    back = urlsplit(devidp.create_logout_response(info).url)
    assert back.path == f"{MOUNT}/saml/sls/"
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 303 and done.headers["location"] == f"{MOUNT}/"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_mounted_app_idp_initiated_defaults_under_the_mount(make_client, devidp):
    client = make_client(mount=True, base_url=f"{SP_BASE}{MOUNT}")
    entity_id = client.engine.settings.sp.entity_id
    acs = idp_initiated(client, devidp, entity_id, "bsimon")
    assert acs.status_code == 303 and acs.headers["location"] == f"{MOUNT}/"


def test_mount_that_disagrees_with_base_url_is_logged_once(make_client, caplog):
    client = make_client(base_url=f"{SP_BASE}{MOUNT}")  # served unmounted
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        for _ in range(3):
            assert client.get("/saml/metadata/").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if "mounted at" in r.getMessage()]
    assert len(warnings) == 1
    assert "'' (WSGI SCRIPT_NAME / ASGI root_path) but base_url's path is '/app'" in warnings[0]


# -- reverse proxies: base_url decides, forwarded headers only inform ---------------------

FORGED = {"x-forwarded-proto": "https", "x-forwarded-host": "evil.example"}
GENUINE = {"x-forwarded-proto": "https", "x-forwarded-host": "app.example.test"}


def _proxied(make_client: Callable[..., httpx.Client], headers: dict[str, str], **kw: Any):
    client = make_client(client_base=INTERNAL, session__https_only=False, **kw)
    client.headers.update(headers)
    return client


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("saml_middleware.engine")
    ]


def _forged_acs_is_refused(client: httpx.Client, devidp: DevIdP) -> None:
    entity_id = client.engine.settings.sp.entity_id
    reply = idp_initiated(
        client, devidp, entity_id, "bsimon", acs_url="https://evil.example/saml/acs/"
    )
    assert reply.status_code == 403 and reply.headers["x-saml-error"] == "wrong_destination"


@pytest.mark.parametrize("trust", [False, True])
def test_forged_forwarded_headers_change_nothing(make_client, devidp, caplog, trust):
    client = _proxied(make_client, FORGED, security__trust_forwarded_headers=trust)
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        acs = login(client, devidp)
        assert acs.status_code == 303 and acs.headers["location"] == "/me"
        assert json_get(client, "/me").json()["auth"] is True
        _forged_acs_is_refused(client, devidp)
    ignored = [m for m in _warnings(caplog) if m.startswith("ignored X-Forwarded")]
    if trust:
        assert len(ignored) == 1 and "'evil.example'" in ignored[0]
    else:  # not even read
        assert ignored == []


def test_trusted_forwarded_headers_naming_base_url_are_quiet(make_client, devidp, caplog):
    client = _proxied(make_client, GENUINE, security__trust_forwarded_headers=True)
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        acs = login(client, devidp)
    assert acs.status_code == 303
    assert json_get(client, "/me").json()["auth"] is True
    assert _warnings(caplog) == []


def test_trusted_origin_other_than_base_url_is_reported(make_client, devidp, caplog):
    client = _proxied(
        make_client,
        {"x-forwarded-proto": "https", "x-forwarded-host": "alias.example.test"},
        security__trust_forwarded_headers=True,
        security__allowed_redirect_hosts=["alias.example.test"],
    )
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        assert login(client, devidp).status_code == 303  # base_url still decides
        _forged_acs_is_refused(client, devidp)
    (warning,) = [m for m in _warnings(caplog) if "reached" in m]
    assert "reached https://alias.example.test, but base_url says https://app.example.test" in (
        warning
    )


def test_trust_without_forwarded_headers_uses_the_request_origin(make_client, devidp, caplog):
    client = _proxied(make_client, {}, security__trust_forwarded_headers=True)
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        assert login(client, devidp).status_code == 303
    (warning,) = _warnings(caplog)
    assert f"reached {INTERNAL}, but base_url says" in warning
