"""Server-side sessions (`session.backend = "store"`), on the memory store and on Redis.

The cookie carries a random, signed session id and nothing else; the session
lives in the store with the same absolute and idle timeouts as a cookie
session; logout deletes it, so a copied cookie is worthless afterwards; Single
Logout's revocation finds every session of a NameID through the index.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from saml_middleware.config import SessionSettings
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.identity import SAMLUser
from saml_middleware.sessions import StoreSessions
from saml_middleware.stores import MemoryStore, Store
from tests.adapter_apps import login
from tests.helpers import Browser, Clock, cookie_value, header, request
from tests.test_adapters import asgi_app, json_get, wsgi_app

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example.test/idp/metadata"
USER = SAMLUser(
    name_id="B.Simon@contoso.com",
    user_id="oid-1",
    email="B.Simon@contoso.com",
    issuer=ISSUER,
    session_index="_si-1",
    roles=("Admin",),
    attributes={"claim": ("v",)},
)


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"backend": "memory"}
    return {
        "backend": "redis",
        "url": request.getfixturevalue("redis_url"),
        "prefix": request.getfixturevalue("redis_prefix"),
    }


@pytest.fixture
async def store(store_settings: dict[str, Any]) -> AsyncIterator[Store]:
    if store_settings["backend"] == "memory":
        yield MemoryStore()
        return
    from saml_middleware.stores.redis import RedisStore

    made = RedisStore(store_settings["url"], prefix=store_settings["prefix"])
    yield made
    await made.aclose()


def sessions(store: Store, clock: Clock, **changes: Any) -> StoreSessions:
    settings = SessionSettings(
        cookie_name="saml_session",
        max_age_seconds=3600,
        idle_timeout_seconds=None,
        https_only=True,
        same_site="lax",
        backend="store",
    )
    return StoreSessions(dataclasses.replace(settings, **changes), "k" * 32, store, clock=clock)


# -- the backend --------------------------------------------------------------------------


async def test_the_cookie_carries_only_a_signed_id(store: Store) -> None:
    backend = sessions(store, Clock())
    set_cookie = await backend.start(USER)
    assert set_cookie.startswith("saml_session=")
    assert "Max-Age=3600" in set_cookie and "HttpOnly" in set_cookie and "Secure" in set_cookie
    value = cookie_value(set_cookie)
    assert len(value) < 100
    assert "Simon" not in value and "Admin" not in value
    session = await backend.load(value)
    assert session is not None and session.user == USER


async def test_each_login_gets_a_new_id(store: Store) -> None:
    backend = sessions(store, Clock())
    first = cookie_value(await backend.start(USER))
    second = cookie_value(await backend.start(USER))
    assert first != second
    assert (await backend.load(first)) is not None and (await backend.load(second)) is not None


@pytest.mark.parametrize(
    "forged",
    [None, "", "x", "a" * 300, "not.signed", "eyJzaWQiOiJ4In0.AAAA", "\x00\xff"],
)
async def test_missing_or_forged_cookie_is_no_session(store: Store, forged: str | None) -> None:
    assert await sessions(store, Clock()).load(forged) is None


async def test_a_cookie_signed_with_another_key_is_no_session(store: Store) -> None:
    clock = Clock()
    value = cookie_value(await sessions(store, clock).start(USER))
    other = StoreSessions(sessions(store, clock).settings, "another-key-0123456789", store)
    assert await other.load(value) is None


async def test_a_large_session_is_kept_whole(store: Store) -> None:
    """What a cookie cannot hold: 300 groups of an Entra user."""
    groups = tuple(f"00000000-0000-0000-0000-{n:012d}" for n in range(300))
    user = dataclasses.replace(USER, attributes={"groups": groups, "claim": ("v",)})
    backend = sessions(store, Clock())
    value = cookie_value(await backend.start(user))
    session = await backend.load(value)
    assert session is not None and session.user.attributes["groups"] == groups


async def test_session_attributes_allow_list_applies(store: Store) -> None:
    user = dataclasses.replace(USER, attributes={"keep": ("1",), "drop": ("2",)})
    backend = sessions(store, Clock(), attributes=("keep",))
    session = await backend.load(cookie_value(await backend.start(user)))
    assert session is not None and dict(session.user.attributes) == {"keep": ("1",)}


async def test_absolute_timeout_is_counted_from_login(store: Store) -> None:
    clock = Clock()
    backend = sessions(store, clock, idle_timeout_seconds=600)
    value = cookie_value(await backend.start(USER))
    for _ in range(6):  # active every 9 minutes
        clock.now += 540
        session = await backend.load(value)
        assert session is not None and session.refresh
        assert await backend.refresh(session) is None  # the cookie never changes
    clock.now += 540  # 63 minutes after login
    assert await backend.load(value) is None


async def test_idle_timeout(store: Store) -> None:
    clock = Clock()
    backend = sessions(store, clock, idle_timeout_seconds=600)
    value = cookie_value(await backend.start(USER))
    clock.now += 30
    session = await backend.load(value)
    assert session is not None and not session.refresh  # not yet a tenth of the window
    clock.now += 601
    assert await backend.load(value) is None
    clock.now -= 601  # even back in time: the expired record was deleted
    assert await backend.load(value) is None


async def test_end_deletes_the_session(store: Store) -> None:
    backend = sessions(store, Clock())
    value = cookie_value(await backend.start(USER))
    session = await backend.load(value)
    assert session is not None
    await backend.end(session)
    assert await backend.load(value) is None
    assert await backend.revoke(ISSUER, USER.name_id, ()) == 0  # and left the index


async def test_revoke_ends_every_session_of_a_name_id(store: Store) -> None:
    backend = sessions(store, Clock())
    laptop = cookie_value(await backend.start(USER))
    phone = cookie_value(await backend.start(dataclasses.replace(USER, session_index="_si-2")))
    other_user = cookie_value(
        await backend.start(dataclasses.replace(USER, name_id="A.Jones@contoso.com"))
    )
    other_idp = cookie_value(
        await backend.start(dataclasses.replace(USER, issuer="https://other-idp.example"))
    )
    assert await backend.revoke(ISSUER, USER.name_id, ()) == 2
    assert await backend.load(laptop) is None and await backend.load(phone) is None
    assert await backend.load(other_user) is not None
    assert await backend.load(other_idp) is not None


async def test_revoke_by_session_index_ends_only_that_session(store: Store) -> None:
    backend = sessions(store, Clock())
    laptop = cookie_value(await backend.start(USER))
    phone = cookie_value(await backend.start(dataclasses.replace(USER, session_index="_si-2")))
    assert await backend.revoke(ISSUER, USER.name_id, ["_si-2", "_unknown"]) == 1
    assert await backend.load(laptop) is not None
    assert await backend.load(phone) is None


async def test_a_refresh_never_brings_back_a_revoked_session(store: Store) -> None:
    clock = Clock()
    backend = sessions(store, clock, idle_timeout_seconds=600)
    value = cookie_value(await backend.start(USER))
    clock.now += 120
    session = await backend.load(value)
    assert session is not None and session.refresh
    assert await backend.revoke(ISSUER, USER.name_id, ()) == 1  # another worker, meanwhile
    await backend.refresh(session)
    assert await backend.load(value) is None


async def test_store_keys_reveal_neither_session_ids_nor_name_ids(
    redis_url: str, redis_prefix: str
) -> None:
    import redis.asyncio as aioredis

    from saml_middleware.stores.redis import RedisStore

    store = RedisStore(redis_url, prefix=redis_prefix)
    backend = sessions(store, Clock())
    value = cookie_value(await backend.start(USER))
    session = await backend.load(value)
    assert session is not None
    raw = aioredis.Redis.from_url(redis_url)
    keys = [k.decode() for k in await raw.keys(redis_prefix + "*")]
    members = await raw.smembers(next(k for k in keys if "sessions-of:" in k))
    await raw.aclose()
    await store.aclose()
    assert len(keys) == 2
    for text in [*keys, *(m.decode() for m in members)]:
        assert session.session_id not in text and "Simon" not in text and value not in text


# -- through the engine -------------------------------------------------------------------


@pytest.fixture
def make_store_engine(
    make_engine: Callable[..., Engine], store_settings: dict[str, Any]
) -> Callable[..., Engine]:
    def make(**overrides: Any) -> Engine:
        return make_engine(session__backend="store", store=store_settings, **overrides)

    return make


async def test_login_starts_a_server_side_session(make_store_engine, devidp: DevIdP) -> None:
    engine = make_store_engine()
    browser = Browser(engine, devidp)
    reply = await browser.login("bsimon", page="/reports")
    assert reply.status == 303 and header(reply, "location") == "/reports"
    value = browser.cookies["saml_session"]
    assert "Simon" not in value and len(value) < 100
    passed = await browser.get("/reports")
    assert isinstance(passed, PassThrough)
    assert passed.user.name_id == "B.Simon@contoso.com" and passed.user.roles == ("Admin",)
    assert passed.set_cookie is None


async def test_logout_deletes_the_session_so_a_copied_cookie_is_worthless(
    make_store_engine, devidp: DevIdP
) -> None:
    engine = make_store_engine()
    browser = Browser(engine, devidp)
    await browser.login("bsimon")
    copied = dict(browser.cookies)
    reply = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    assert isinstance(reply, Response) and reply.status == 303
    assert header(reply, "set-cookie").startswith("saml_session=;")
    replayed = await engine.handle(
        request("GET", "/reports", headers={"accept": "application/json"}, cookies=copied)
    )
    assert isinstance(replayed, Response) and replayed.status == 401


async def test_engine_idle_timeout_with_server_side_sessions(
    make_store_engine, devidp: DevIdP
) -> None:
    clock = Clock()
    engine = make_store_engine(clock=clock, session__idle_timeout_seconds=600)
    browser = Browser(engine, devidp)
    await browser.login("bsimon")
    clock.now += 300
    assert isinstance(await browser.get("/"), PassThrough)  # refreshes "last active"
    clock.now += 500  # 800 s after login, 500 s idle
    assert isinstance(await browser.get("/"), PassThrough)
    clock.now += 700
    reply = await browser.get("/")
    assert isinstance(reply, Response) and reply.status == 303


async def test_session_ids_never_reach_the_log(
    make_store_engine, devidp: DevIdP, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_store_engine()
    browser = Browser(engine, devidp)
    with caplog.at_level(logging.DEBUG):
        await browser.login("bsimon")
        await browser.get("/")
        await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    value = browser.cookies.get("saml_session") or ""
    assert value and value not in caplog.text
    assert value.split(".")[0] not in caplog.text


# -- through both adapters ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_adapters_with_server_side_sessions_on_redis(
    kind: str, devidp: DevIdP, redis_url: str, redis_prefix: str
) -> None:
    from tests.adapter_apps import client_for
    from tests.helpers import settings_for

    settings = settings_for(
        devidp,
        session__backend="store",
        store={"backend": "redis", "url": redis_url, "prefix": redis_prefix},
    )
    app, engine = (asgi_app if kind == "asgi" else wsgi_app)(settings)
    devidp.add_service_provider(engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        acs = login(client, devidp, "bsimon", "/me")
        assert acs.status_code == 303, acs.text
        me = json_get(client, "/me").json()
        assert me["auth"] is True and me["roles"] == ["Admin"]
        copied = client.cookies["saml_session"]
        assert client.post("/saml/logout/").status_code == 303
        assert json_get(client, "/me").status_code == 401
        stolen = httpx.Client(transport=client._transport, base_url=str(client.base_url))
        stolen.cookies.set("saml_session", copied)
        assert json_get(stolen, "/me").status_code == 401
