"""The WSGI adapter: what only WSGI has (environ keys, wsgi.input, threads, a real server).

Behaviour common to both adapters is in test_adapters.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import threading
import wsgiref.simple_server
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest

from saml_middleware import SAMLUser, SAMLWSGIMiddleware
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from saml_middleware.wsgi import _native_to_text
from tests.adapter_apps import login
from tests.helpers import settings_for

FORM = "application/x-www-form-urlencoded"


def echo_environ(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app that remembers the environ it was called with."""
    echo_environ.last = environ  # type: ignore[attr-defined]
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]


def call(app: Any, **environ: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app directly; returns (status, headers, body)."""
    setup_testing_defaults(environ)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.update(status=status, headers=headers)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return started["status"], started["headers"], body


@pytest.fixture
def middleware(devidp: DevIdP) -> SAMLWSGIMiddleware:
    app = SAMLWSGIMiddleware(echo_environ, settings=settings_for(devidp, paths__exempt=["/pub"]))
    devidp.add_service_provider(app.engine.sp_metadata_xml())
    return app


def session_cookie(app: SAMLWSGIMiddleware, user: SAMLUser) -> str:
    return f"saml_session={app.engine.sessions.encode(user)}"


BSIMON = SAMLUser(name_id="B.Simon@contoso.com", user_id="oid-1", roles=("Admin",))


# -- what the app receives ---------------------------------------------------------------


def test_signed_in_user_fills_saml_user_scopes_and_remote_user(middleware):
    status, _, _ = call(middleware, PATH_INFO="/me", HTTP_COOKIE=session_cookie(middleware, BSIMON))
    assert status == "200 OK"
    environ = echo_environ.last
    assert isinstance(environ["saml.user"], SAMLUser)
    assert environ["saml.user"].name_id == "B.Simon@contoso.com"
    assert environ["saml.auth_scopes"] == ("authenticated", "Admin")
    assert environ["REMOTE_USER"] == "B.Simon@contoso.com"


def test_anonymous_request_has_no_remote_user_even_if_one_came_from_upstream(middleware):
    status, _, _ = call(middleware, PATH_INFO="/pub", REMOTE_USER="someone-else")
    assert status == "200 OK"
    environ = echo_environ.last
    assert environ["saml.user"].is_authenticated is False
    assert environ["saml.auth_scopes"] == ()
    assert "REMOTE_USER" not in environ


def test_refreshed_session_cookie_is_added_to_the_apps_headers(devidp):
    now = [1_000_000.0]
    app = SAMLWSGIMiddleware(echo_environ, settings=settings_for(devidp))
    app.engine = Engine(
        settings_for(devidp, session__idle_timeout_seconds=600), clock=lambda: now[0]
    )
    cookie = session_cookie(app, BSIMON)
    now[0] += 120  # past a tenth of the idle window: the cookie is re-issued
    status, headers, body = call(app, PATH_INFO="/me", HTTP_COOKIE=cookie)
    assert status == "200 OK" and body == b"ok"
    assert headers[0] == ("content-type", "text/plain")
    (set_cookie,) = [v for k, v in headers if k.lower() == "set-cookie"]
    assert set_cookie.startswith("saml_session=") and "HttpOnly" in set_cookie


def test_exc_info_passes_through_the_cookie_wrapper(devidp):
    seen = {}

    def failing(environ, start_response):
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b""]

    now = [1_000_000.0]
    app = SAMLWSGIMiddleware(failing, settings=settings_for(devidp))
    app.engine = Engine(
        settings_for(devidp, session__idle_timeout_seconds=600), clock=lambda: now[0]
    )
    cookie = session_cookie(app, BSIMON)
    now[0] += 120

    def start_response(status, headers, exc_info=None):
        seen["exc_info"] = exc_info
        return lambda data: None

    environ: dict[str, Any] = {"PATH_INFO": "/x", "HTTP_COOKIE": cookie}
    setup_testing_defaults(environ)
    app(environ, start_response)
    assert seen["exc_info"][0] is ValueError


def test_middleware_answers_carry_status_line_and_content_length(middleware):
    status, headers, body = call(middleware, PATH_INFO="/saml/nope/")
    assert status == "404 Not Found"
    assert ("content-length", str(len(body))) in headers


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("/caf\xc3\xa9", "/caf\u00e9"),  # PEP 3333: UTF-8 bytes decoded as latin-1
        ("/m\xe2\x82\xac", "/m\u20ac"),
        ("/bad\xff", "/bad\ufffd"),  # not UTF-8: replaced, never an error
        ("/m\u20ac", "/m\u20ac"),  # a server that already decoded
        ("", ""),
    ],
)
def test_path_info_is_decoded_like_asgi(raw, text):
    assert _native_to_text(raw) == text


# -- wsgi.input ---------------------------------------------------------------------------


class Stream:
    """A wsgi.input that records reads and can fail or block."""

    def __init__(self, data: bytes, *, fail: bool = False) -> None:
        self.data = io.BytesIO(data)
        self.fail = fail
        self.read_sizes: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.read_sizes.append(size)
        if self.fail:
            raise OSError("connection reset")
        if size < 0:
            raise AssertionError("read() without a size may block forever")
        return self.data.read(size)


def post_acs(app: Any, stream: Stream, **environ: Any) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = call(
        app,
        REQUEST_METHOD="POST",
        PATH_INFO="/saml/acs/",
        CONTENT_TYPE=FORM,
        HTTP_ACCEPT="application/json",
        **{"wsgi.input": stream},
        **environ,
    )
    return status, dict(headers), body


def test_body_without_content_length_is_not_read(middleware):
    stream = Stream(b"SAMLResponse=x")
    status, headers, _ = post_acs(middleware, stream)
    assert status.startswith("400") and headers["x-saml-error"] == "malformed"
    assert stream.read_sizes == []


def test_body_is_read_up_to_content_length_only(middleware):
    stream = Stream(b"SAMLResponse=abc" + b"&junk=" + b"x" * 100)
    status, _, _ = post_acs(middleware, stream, CONTENT_LENGTH="16")
    assert status.startswith("400")  # "abc" is no SAML Response
    assert sum(stream.read_sizes) <= 16


def test_terminated_chunked_body_is_read_with_the_limit(middleware):
    limit = middleware.engine.settings.security.max_request_bytes
    stream = Stream(b"SAMLResponse=" + b"x" * (limit + 10))
    status, headers, _ = post_acs(middleware, stream, **{"wsgi.input_terminated": True})
    assert status.startswith("413") and headers["x-saml-error"] == "too_large"
    assert sum(stream.read_sizes) <= limit + 1


def test_failed_body_read_is_a_400(middleware):
    status, headers, _ = post_acs(middleware, Stream(b"", fail=True), CONTENT_LENGTH="10")
    assert status.startswith("400") and headers["x-saml-error"] == "malformed"


# -- event loops ------------------------------------------------------------------------


def test_each_thread_drives_the_engine_on_its_own_loop(middleware):
    cookie = session_cookie(middleware, BSIMON)
    loops: dict[int, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(20):
                status, _, _ = call(middleware, PATH_INFO="/me", HTTP_COOKIE=cookie)
                assert status == "200 OK"
            loops[threading.get_ident()] = middleware._loops._local.holder.loop
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len({id(loop) for loop in loops.values()}) == 6
    gc.collect()
    assert all(loop.is_closed() for loop in loops.values())  # closed with their threads


def test_called_from_inside_a_running_loop(middleware):
    async def inside() -> str:
        return call(middleware, PATH_INFO="/pub")[0]

    assert asyncio.run(inside()) == "200 OK"


# -- behind a real WSGI server ------------------------------------------------------------


class _ThreadingServer(ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass


@pytest.fixture
def served(devidp: DevIdP) -> Iterator[tuple[str, SAMLWSGIMiddleware]]:
    """The middleware behind wsgiref on 127.0.0.1 (a free port), in a thread."""
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, echo_environ, _ThreadingServer, _QuietHandler
    )
    base = f"http://127.0.0.1:{server.server_port}"
    settings = settings_for(devidp, base_url=base, session__https_only=False)
    app = SAMLWSGIMiddleware(echo_environ, settings=settings)
    devidp.add_service_provider(app.engine.sp_metadata_xml())
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield base, app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_round_trip_through_a_real_server(served, devidp):
    base, _ = served
    with httpx.Client(base_url=base, timeout=10) as client:
        acs = login(client, devidp, "bsimon", "/me")
        assert acs.status_code == 303 and acs.headers["location"] == "/me"
        assert client.get("/me").text == "ok"
    assert echo_environ.last["REMOTE_USER"] == "B.Simon@contoso.com"
    assert echo_environ.last["saml.user"].roles == ("Admin",)


# -- organizations ------------------------------------------------------------------------


def test_invalidate_tenant_applies_an_admins_change_at_the_next_request(devidp):
    """Disabling an organization in the app's database ends its sessions at once."""
    rows = {"acme": {"idp": {"metadata_xml": devidp.metadata_xml()}, "enabled": True}}
    settings = {
        "base_url": "https://app.example.test",
        "secret_key": "test-secret-key-0123456789abcdef",
        "tenants": lambda slug: rows.get(slug),
        "tenant_options": {"cache_seconds": 3600},
    }
    app = SAMLWSGIMiddleware(echo_environ, settings=settings)
    cookie = session_cookie(app, dataclasses.replace(BSIMON, tenant="acme"))
    status, _, _ = call(app, PATH_INFO="/organizations/acme/", HTTP_COOKIE=cookie)
    assert status == "200 OK" and echo_environ.last["saml.user"].tenant == "acme"
    rows["acme"]["enabled"] = False
    status, _, _ = call(app, PATH_INFO="/organizations/acme/", HTTP_COOKIE=cookie)
    assert status == "200 OK"  # cached: the app has not said anything changed
    app.invalidate_tenant("acme")
    status, headers, _ = call(app, PATH_INFO="/organizations/acme/", HTTP_COOKIE=cookie)
    assert status.startswith("403")
    assert dict(headers)["x-saml-error"] == "tenant_disabled"
    assert any(k == "set-cookie" and v.startswith("saml_session=;") for k, v in headers)
