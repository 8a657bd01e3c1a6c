"""Redis going away and coming back, with a real redis-server the test stops and restarts.

While Redis is down: the ACS answers 503 with a clear page (JSON for an API
client) and a log record, never a 500 (the login page needs no store: it still
sends the browser to the IdP); cookie sessions keep working on
protected paths; server-side sessions answer 503 on protected paths and
anonymous on the others. When Redis is back, sign-in works again with no
restart of the app. A Redis that accepts connections but never answers costs
a request at most the configured timeouts.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from tests.adapter_apps import client_for, login
from tests.helpers import Browser, header, request, settings_for
from tests.redis_server import RedisServer
from tests.test_adapters import asgi_app, json_get, wsgi_app

pytestmark = pytest.mark.anyio


def redis_settings(server_url: str, prefix: str = "failure:", **options: Any) -> dict[str, Any]:
    return {
        "backend": "redis",
        "url": server_url,
        "prefix": prefix,
        "socket_timeout_seconds": 0.5,
        "connect_timeout_seconds": 0.5,
        **options,
    }


def idp_answer(engine: Engine, devidp: DevIdP, user: str = "bsimon") -> str:
    return devidp.create_response(
        user, sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )


async def idp_initiated(engine: Engine, devidp: DevIdP) -> Response:
    return await Browser(engine, devidp).post_acs(idp_answer(engine, devidp))


def assert_unavailable(reply: Any, *, json: bool = False) -> None:
    assert isinstance(reply, Response)
    assert reply.status == 503
    assert header(reply, "x-saml-error") == "store_unavailable"
    if json:
        assert header(reply, "content-type") == "application/json"
        assert b"try again" in reply.body
    else:
        assert header(reply, "content-type").startswith("text/html")
        assert b"Sign-in unavailable" in reply.body and b"try again" in reply.body


async def test_login_and_acs_answer_503_while_redis_is_down_then_recover(
    make_engine: Callable[..., Engine],
    devidp: DevIdP,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = make_engine(store=redis_settings(own_redis.url))
    signed_in = Browser(engine, devidp)
    assert (await signed_in.login("bsimon")).status == 303
    pending = Browser(engine, devidp)
    saml_request, relay_state = await pending.start_login()  # at the IdP when Redis stops

    own_redis.stop()
    with caplog.at_level(logging.INFO):
        login = await engine.handle(request("GET", "/saml/login/?next=/x"))
        assert isinstance(login, Response) and login.status == 303  # nothing to store
        assert_unavailable(await idp_initiated(engine, devidp))
        assert_unavailable(
            await engine.handle(
                request(
                    "POST",
                    "/saml/acs/",
                    form={"SAMLResponse": idp_answer(engine, devidp, "ajones")},
                    headers={"accept": "application/json"},
                )
            ),
            json=True,
        )
        info = devidp.parse_authn_request(saml_request, "redirect")
        answer = devidp.create_response(
            "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
        )
        assert_unavailable(await pending.post_acs(answer, relay_state))
        # A cookie session needs no store: the signed-in user carries on.
        passed = await signed_in.get("/dashboard")
        assert isinstance(passed, PassThrough) and passed.user.name_id == "B.Simon@contoso.com"
        # Signing out needs no store either (cookie sessions, no IdP SLO endpoint).
        out = await engine.handle(request("POST", "/saml/logout/", cookies=signed_in.cookies))
        assert isinstance(out, Response) and out.status == 303
    store_errors = [
        r for r in caplog.records if r.name == "saml_middleware.store" and r.levelno >= 40
    ]
    assert len(store_errors) == 1, "the outage is logged once"
    assert "unreachable" in store_errors[0].getMessage() or "failed" in store_errors[0].getMessage()
    refusals = [r for r in caplog.records if getattr(r, "saml_error", None) == "store_unavailable"]
    assert len(refusals) == 3, "and every refused request has its record"

    own_redis.start()  # the same port: the app is not restarted
    caplog.clear()
    with caplog.at_level(logging.INFO):
        # The request that was pending needs nothing of the old (non-persistent) Redis.
        assert (await pending.post_acs(answer, relay_state)).status == 303
        again = Browser(engine, devidp)
        assert (await again.login("bsimon")).status == 303
        assert (await idp_initiated(engine, devidp)).status == 303
    assert "reachable again" in caplog.text


async def test_server_side_sessions_while_redis_is_down(
    make_engine: Callable[..., Engine], devidp: DevIdP, own_redis: RedisServer
) -> None:
    engine = make_engine(
        store=redis_settings(own_redis.url),
        session__backend="store",
        paths__exempt=["/public"],
    )
    browser = Browser(engine, devidp)
    assert (await browser.login("bsimon")).status == 303
    assert isinstance(await browser.get("/dashboard"), PassThrough)

    own_redis.stop()
    assert_unavailable(await browser.get("/dashboard"))
    assert_unavailable(await browser.get("/api/x", accept="application/json"), json=True)
    public = await browser.get("/public/page")
    assert isinstance(public, PassThrough) and not public.user.is_authenticated
    # Logout still clears the browser's cookie.
    out = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    assert isinstance(out, Response) and out.status == 303
    assert header(out, "set-cookie").startswith("saml_session=;")
    user = await engine.websocket_user(request("GET", "/ws", cookies=browser.cookies))
    assert user is None

    own_redis.start()
    fresh = Browser(engine, devidp)
    assert (await fresh.login("bsimon")).status == 303
    assert isinstance(await fresh.get("/dashboard"), PassThrough)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_a_hung_redis_costs_a_request_no_more_than_the_timeouts(
    make_engine: Callable[..., Engine], devidp: DevIdP, silent_server: str
) -> None:
    pytest.importorskip("redis")
    engine = make_engine(
        store=redis_settings(silent_server, socket_timeout_seconds=0.2, connect_timeout_seconds=0.2)
    )
    started = time.monotonic()
    assert_unavailable(await idp_initiated(engine, devidp))
    assert time.monotonic() - started < 3  # two tries of 0.2 s, and margin


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_adapters_answer_503_and_recover(kind: str, devidp: DevIdP, own_redis: RedisServer) -> None:
    settings = settings_for(devidp, store=redis_settings(own_redis.url, prefix=f"{kind}:"))
    app, engine = (asgi_app if kind == "asgi" else wsgi_app)(settings)
    devidp.add_service_provider(engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        assert login(client, devidp, "bsimon", "/me").status_code == 303
        own_redis.stop()
        reply = client.post("/saml/acs/", data={"SAMLResponse": idp_answer(engine, devidp)})
        assert reply.status_code == 503
        assert reply.headers["x-saml-error"] == "store_unavailable"
        assert "try again" in reply.text
        assert json_get(client, "/me").json()["auth"] is True  # the cookie session lives on
        own_redis.start()
        client.cookies.clear()
        assert login(client, devidp, "ajones", "/me").status_code == 303
        assert json_get(client, "/me").json()["name_id"] == "A.Jones@contoso.com"
