"""Canonical routing (issue 14, class 3): no spelling of a protected path passes anonymous.

Each framework's router, and the app's own lookups behind it, may read a path
more leniently than a byte comparison does: a case-insensitive organization
lookup (SQL collations), a path parameter normalised by the view
(`posixpath.normpath`), a double-encoded `%2F` that a proxy decodes. Real
Starlette, FastAPI, Flask and Django apps serve such views here; every
spelling of a protected one is sent as a server would pass it on (the raw
target percent-decoded once into the ASGI `path` / WSGI `PATH_INFO`), without
a session, and must never get the view's content: the login redirect, 401,
400 or the router's own 404 or redirect. The bare apps (no middleware) do leak
for these spellings, so the tests would catch a middleware that let them pass.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import sys
from collections.abc import Callable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import pytest

from saml_middleware import SAMLMiddleware, SAMLWSGIMiddleware
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from tests.helpers import header, request, settings_for

pytestmark = pytest.mark.anyio

HOST = "app.example.test"
SECRET = "SECRET"
DOCS = {"internal": f"{SECRET} internal handbook", "intro": "intro"}
FILES = {"public/readme": "public readme", "secret": f"{SECRET} file"}
ORGANIZATIONS = {"a": f"{SECRET} data of organization a"}


# What each app's views do: lenient lookups, as real apps' are.
def doc_page(page: str) -> str | None:
    return DOCS.get(page.lower())


def file_content(path: str) -> str | None:
    return FILES.get(posixpath.normpath(path).lower())


def organization_data(slug: str) -> str | None:
    return ORGANIZATIONS.get(slug.lower().rstrip(" "))  # a case- and pad-insensitive collation


def middleware_settings(devidp: DevIdP) -> dict[str, Any]:
    return settings_for(
        devidp,
        paths={
            "protect": ["/admin", "/docs/internal", "/files"],
            "exempt": ["/files/public", "/organizations/a/public"],
        },
        tenants={"a": {"idp": {"metadata_xml": devidp.metadata_xml()}}},
        tenant_options={"resolver": {"path_prefix": "/organizations/"}},
    )


# -- the spellings -----------------------------------------------------------------------

ADMIN = [
    "/ADMIN",
    "/Admin/",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/admin;x",
    "/adm%69n",
    "/%2Fadmin",
    "/admin%2F",
    "/admin/",
    "/admin//",
    "/admin/.",
    "/%2e/admin",
    "/admin%3Bx",
    "/admin%252F",
]
DOC = [
    "/docs/INTERNAL",
    "/docs/Internal/",
    "/docs/internal;x",
    "/docs//internal",
    "/docs/%69nternal",
    "/docs/%49NTERNAL",
    "/docs/internal%2F",
    "/DOCS/internal",
    "/docs/x/../internal",
    "/docs/intro/../INTERNAL",
]
FILE = [
    "/files/public/../secret",
    "/files/public/%2e%2e/secret",
    "/files/public%2F..%2Fsecret",
    "/files/public/..%2Fsecret",
    "/files/PUBLIC/../secret",
    "/files/./public/../secret",
    "/files/public/./../secret",
    "/files/public;x/../secret",
    "/files/public/%252e%252e/secret",
    "/files/public/readme/../../SECRET",
    "/files//secret",
    "/Files/secret",
]
ORGANIZATION = [
    "/organizations/A/data",
    "/organizations/%41/data",
    "/organizations/%2541/data",
    "/organizations//a/data",
    "/organizations/./a/data",
    "/organizations/b/../a/data",
    "/organizations/a;x/data",
    "/ORGANIZATIONS/a/data",
    "/Organizations/A/data",
    "/organizations/a%20/data",
    "/organizations/a./data",
]
CANONICAL = ["/admin", "/docs/internal", "/files/secret", "/organizations/a/data"]
VARIANTS = CANONICAL + ADMIN + DOC + FILE + ORGANIZATION


# -- speaking to an app as a server would --------------------------------------------------


def asgi_get(app: Any, target: str, host: str = HOST) -> tuple[int, dict[str, str], str]:
    """GET `target` (raw, as on the wire), as uvicorn passes it: `path` decoded once."""
    raw_path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": [(b"host", host.encode()), (b"accept", b"text/html")],
        "server": (HOST, 443),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, body.decode("utf-8", "replace")


def wsgi_get(app: Any, target: str, host: str = HOST) -> tuple[int, dict[str, str], str]:
    """GET `target` as a WSGI server passes it: PATH_INFO decoded once (latin-1 string)."""
    raw_path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": target,
        "RAW_URI": target,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "HTTP_ACCEPT": "text/html",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    status: list[str] = []
    headers: dict[str, str] = {}

    def start_response(line: str, items: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        headers.update((k.lower(), v) for k, v in items)
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return int(status[0].split()[0]), headers, body.decode("utf-8", "replace")


# -- the apps --------------------------------------------------------------------------------


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    def found(text: str | None) -> PlainTextResponse:
        return PlainTextResponse(text or "not found", status_code=200 if text else 404)

    async def admin(request: Request) -> PlainTextResponse:
        return found(f"{SECRET} admin")

    async def docs(request: Request) -> PlainTextResponse:
        return found(doc_page(request.path_params["page"]))

    async def files(request: Request) -> PlainTextResponse:
        return found(file_content(request.path_params["path"]))

    async def organization(request: Request) -> PlainTextResponse:
        return found(organization_data(request.path_params["slug"]))

    return Starlette(
        routes=[
            Route("/admin", admin),
            Route("/docs/{page}", docs),
            Route("/files/{path:path}", files),
            Route("/organizations/{slug}/data", organization),
        ]
    )


def fastapi_app() -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    def found(text: str | None) -> str:
        if text is None:
            raise HTTPException(404)
        return text

    @app.get("/admin", response_class=PlainTextResponse)
    def admin() -> str:
        return f"{SECRET} admin"

    @app.get("/docs/{page}", response_class=PlainTextResponse)
    def docs(page: str) -> str:
        return found(doc_page(page))

    @app.get("/files/{path:path}", response_class=PlainTextResponse)
    def files(path: str) -> str:
        return found(file_content(path))

    @app.get("/organizations/{slug}/data", response_class=PlainTextResponse)
    def organization(slug: str) -> str:
        return found(organization_data(slug))

    return app


def flask_app() -> Any:
    from flask import Flask, abort

    app = Flask("canonical_routing")

    def found(text: str | None) -> str:
        if text is None:
            abort(404)
        return text

    app.add_url_rule("/admin", "admin", lambda: f"{SECRET} admin")
    app.add_url_rule("/docs/<page>", "docs", lambda page: found(doc_page(page)))
    app.add_url_rule("/files/<path:path>", "files", lambda path: found(file_content(path)))
    app.add_url_rule(
        "/organizations/<slug>/data", "organization", lambda slug: found(organization_data(slug))
    )
    return app.wsgi_app


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example project's Django (its settings, middleware and SQLite) with these URLs."""
    pytest.importorskip("django")
    import django
    from django.http import Http404, HttpResponse
    from django.test.utils import override_settings
    from django.urls import path

    def found(text: str | None) -> HttpResponse:
        if text is None:
            raise Http404
        return HttpResponse(text, content_type="text/plain")

    urls = ModuleType("canonical_routing_urls")  # a URLconf (hashable, unlike a namespace)
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("admin", lambda request: found(f"{SECRET} admin")),
        path("docs/<str:page>", lambda request, page: found(doc_page(page))),
        path("files/<path:path>", lambda request, path: found(file_content(path))),
        path(
            "organizations/<str:slug>/data",
            lambda request, slug: found(organization_data(slug)),
        ),
    ]
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DJANGO_EXAMPLE_DB", str(db))
        env.setenv("DJANGO_ALLOWED_HOSTS", HOST)
        env.setenv("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
        django.setup()
        from django.core.wsgi import get_wsgi_application

        with override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=[HOST], DEBUG=False):
            yield get_wsgi_application()


APPS: dict[str, tuple[str, Callable[..., Any]]] = {
    "starlette": ("asgi", lambda request: starlette_app()),
    "fastapi": ("asgi", lambda request: fastapi_app()),
    "flask": ("wsgi", lambda request: flask_app()),
    "django": ("wsgi", lambda request: request.getfixturevalue("django_app")),
}


@pytest.fixture(params=list(APPS))
def framework(request: pytest.FixtureRequest, devidp: DevIdP) -> SimpleNamespace:
    """One framework's app, bare and behind the middleware, and how to GET from each."""
    kind, build = APPS[request.param]
    bare = build(request)
    wrap = SAMLMiddleware if kind == "asgi" else SAMLWSGIMiddleware
    get = asgi_get if kind == "asgi" else wsgi_get
    return SimpleNamespace(
        name=request.param,
        bare=bare,
        wrapped=wrap(bare, settings=middleware_settings(devidp)),
        get=get,
    )


def assert_not_served(framework: SimpleNamespace, target: str) -> None:
    status, headers, body = framework.get(framework.wrapped, target)
    assert SECRET not in body, (framework.name, target, status)
    assert status in (301, 302, 303, 307, 308, 400, 401, 404), (framework.name, target, status)
    if status == 303:  # ours: to the login of the app or of organization a
        assert headers["location"].startswith(("/saml/login/?", "/saml/login/a/?")), headers


# -- the tests -----------------------------------------------------------------------------


def test_no_spelling_of_a_protected_view_is_served_anonymous(framework: SimpleNamespace) -> None:
    for target in VARIANTS:
        assert_not_served(framework, target)


def test_the_bare_app_serves_these_spellings(framework: SimpleNamespace) -> None:
    """The control: without the middleware, the lenient views do serve the secret for
    spellings that are not the canonical one (so the test above can fail)."""
    leaked = {t for t in VARIANTS if SECRET in framework.get(framework.bare, t)[2]}
    assert set(CANONICAL) <= leaked
    for group in (DOC, FILE, ORGANIZATION):
        assert leaked & set(group), (framework.name, group)


def test_exempt_and_unprotected_paths_still_pass(framework: SimpleNamespace) -> None:
    status, _, body = framework.get(framework.wrapped, "/files/public/readme")
    assert (status, body) == (200, "public readme")
    status, _, body = framework.get(framework.wrapped, "/docs/intro")
    assert (status, body) == (200, "intro")
    status, headers, _ = framework.get(framework.wrapped, "/organizations/a/data")
    assert (status, headers["location"]) == (303, "/saml/login/a/?next=/organizations/a/data")


# -- the engine: organizations by path and by host -------------------------------------------


@pytest.fixture
def by_path(devidp: DevIdP) -> Engine:
    return Engine(middleware_settings(devidp))


@pytest.mark.parametrize(
    "path",
    [
        "/organizations/A/data",
        "/ORGANIZATIONS/a/data",
        "/organizations//a/data",
        "/organizations/./a/data",
        "/organizations/%41/data",
        "/organizations/a/",
        "/organizations/A",
    ],
)
async def test_an_organization_path_in_any_spelling_is_that_organizations(
    by_path: Engine, path: str
) -> None:
    reply = await by_path.handle(request("GET", path, headers={"accept": "text/html"}))
    assert isinstance(reply, Response) and reply.status == 303, reply
    assert (header(reply, "location") or "").startswith("/saml/login/a/?next=")


@pytest.mark.parametrize(
    "path",
    [
        "/organizations/a_b/data",
        "/organizations/a%20/data",
        "/organizations/a./data",
        "/organizations/b/../a/data",
        "/organizations/a;x/data",
        "/organizations/a%2Fb/data",
    ],
)
async def test_an_organization_path_naming_no_valid_slug_is_refused(
    by_path: Engine, path: str
) -> None:
    reply = await by_path.handle(request("GET", path, headers={"accept": "text/html"}))
    assert isinstance(reply, Response)
    assert (reply.status, header(reply, "x-saml-error")) == (400, "invalid_path")


async def test_an_exempt_organization_path_is_no_way_around_its_protection(
    by_path: Engine,
) -> None:
    public = await by_path.handle(request("GET", "/organizations/a/public/logo"))
    assert isinstance(public, PassThrough) and not public.user.is_authenticated
    for path in ("/organizations/a/public/../data", "/organizations/a/public/%2e%2e/data"):
        reply = await by_path.handle(request("GET", path, headers={"accept": "text/html"}))
        assert isinstance(reply, Response) and reply.status == 303, path


async def test_organization_endpoints_read_the_slug_in_canonical_form(by_path: Engine) -> None:
    reply = await by_path.handle(request("GET", "/saml/login/A/", headers={"accept": "text/html"}))
    assert isinstance(reply, Response) and reply.status == 303
    assert (header(reply, "location") or "").startswith("https://idp.example.test/")
    reply = await by_path.handle(request("GET", "/saml/login/a_b/"))
    assert isinstance(reply, Response) and reply.status == 404


@pytest.fixture
def by_host(devidp: DevIdP) -> Engine:
    settings = middleware_settings(devidp)
    settings["tenant_options"] = {"resolver": {"host": "{slug}.app.example.test"}}
    return Engine(settings)


async def host_get(engine: Engine, host: str) -> Response | PassThrough:
    return await engine.handle(
        request("GET", "/data", headers={"accept": "text/html", "host": host})
    )


@pytest.mark.parametrize(
    "host",
    [
        "a.app.example.test",
        "A.app.example.test",
        "a.app.example.test.",
        "A.APP.EXAMPLE.TEST.:443",
        "a.app.example.test:8443",
        "%61.app.example.test",
    ],
)
async def test_an_organization_host_in_any_spelling_is_that_organizations(
    by_host: Engine, host: str
) -> None:
    reply = await host_get(by_host, host)
    assert isinstance(reply, Response) and reply.status == 303, reply
    assert (header(reply, "location") or "").startswith("/saml/login/a/?next=")


@pytest.mark.parametrize(
    "host",
    ["a_b.app.example.test", "a.b.app.example.test", "a..app.example.test", "-a.app.example.test"],
)
async def test_an_organization_host_naming_no_valid_slug_is_refused(
    by_host: Engine, host: str
) -> None:
    reply = await host_get(by_host, host)
    assert isinstance(reply, Response)
    assert (reply.status, header(reply, "x-saml-error")) == (400, "invalid_path")


async def test_other_hosts_are_the_apps_own(by_host: Engine) -> None:
    for host in ("app.example.test", "other.example.test", "[::1]:8000", ""):
        reply = await host_get(by_host, host)
        assert isinstance(reply, PassThrough) and not reply.user.is_authenticated, host


def test_protect_and_exempt_read_every_spelling(by_path: Engine) -> None:
    for path in ADMIN + ["/docs/INTERNAL", "/files/public/../secret", "/files/PUBLIC/%2e%2e/x"]:
        assert by_path.is_protected(path), path
    for path in ("/files/public/readme", "/files/public/", "/docs/intro", "/other"):
        assert not by_path.is_protected(path), path
