"""Security state expires by time only: a full memory store refuses, it never forgets.

Each kind of entry has its own bound (`store.max_entries`). A kind at its bound
purges its expired entries; if it is still full, the new entry is refused with
`store_full` (503, logged once a minute) and every entry already there stays.
On Redis the same guarantee needs `maxmemory-policy noeviction`: the store
checks it at start-up and warns with the fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from saml_middleware.config import StoreSettings, load_settings
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.errors import ConfigError
from saml_middleware.stores import MemoryStore, StoreFull, make_store
from tests.helpers import Browser, header, request, settings_for

pytestmark = pytest.mark.anyio

BOUND = 20


async def _add_replay(store: MemoryStore, key: str, ttl: float) -> None:
    assert await store.add_if_absent(key, ttl)


async def _put(store: MemoryStore, key: str, ttl: float) -> None:
    await store.put(key, {"k": key}, ttl)


async def _add_member(store: MemoryStore, key: str, ttl: float) -> None:
    await store.add_member(key, "member", ttl)


async def _still_there(store: MemoryStore, key: str) -> bool:
    if key.startswith("sessions-of:"):
        return await store.members(key) == {"member"}
    if key.startswith(("assertion:", "request-used:", "logout-request:")):
        return not await store.add_if_absent(key, 60)  # a mark: "already seen"
    return await store.get(key) == {"k": key}


Write = Callable[[MemoryStore, str, float], Awaitable[None]]
KINDS: list[tuple[str, str, Write]] = [
    ("replay", "assertion:https://idp.example/:_a", _add_replay),
    ("requests", "request-used:nonce", _add_replay),
    ("logout", "logout-request:https://idp.example/:_l", _add_replay),
    ("logout", "logout:_r", _put),
    ("sessions", "session:digest", _put),
    ("session_index", "sessions-of:digest", _add_member),
]


@pytest.mark.parametrize(("kind", "key", "write"), KINDS, ids=[k[1].split(":")[0] for k in KINDS])
async def test_a_full_kind_refuses_new_entries_and_keeps_every_one(
    kind: str, key: str, write: Write
) -> None:
    store = MemoryStore({kind: BOUND})
    for i in range(BOUND):
        await write(store, f"{key}{i}", 3600)
    with pytest.raises(StoreFull) as refused:
        await write(store, f"{key}-one-more", 3600)
    assert (refused.value.code, refused.value.status) == ("store_full", 503)
    for i in range(BOUND):
        assert await _still_there(store, f"{key}{i}"), i
    assert store.sizes()[kind] == BOUND  # and the refused one is not there
    # The other kinds are not crowded out.
    other = "request-used:x" if kind == "replay" else "assertion:x"
    assert await store.add_if_absent(other, 60)


async def test_expired_entries_make_room_first() -> None:
    store = MemoryStore({"replay": BOUND})
    assert await store.add_if_absent("assertion:live", 3600)
    for i in range(BOUND - 1):
        assert await store.add_if_absent(f"assertion:short{i}", 0.01)
    time.sleep(0.05)
    for i in range(BOUND - 1):
        assert await store.add_if_absent(f"assertion:new{i}", 3600)
    assert not await store.add_if_absent("assertion:live", 3600)


async def test_a_full_kind_still_updates_what_it_holds() -> None:
    """Refreshing a session or adding to an index that exists needs no new entry."""
    store = MemoryStore({"sessions": 1, "session_index": 1})
    await store.put("session:a", {"v": 1}, 60)
    await store.add_member("sessions-of:x", "a", 60)
    assert await store.replace("session:a", {"v": 2}, 60)
    await store.add_member("sessions-of:x", "b", 60)
    assert await store.get("session:a") == {"v": 2}
    assert await store.members("sessions-of:x") == {"a", "b"}


async def test_a_full_kind_is_logged_once_a_minute_not_per_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore({"replay": 1})
    assert await store.add_if_absent("assertion:a", 60)
    with caplog.at_level(logging.ERROR, logger="saml_middleware.store"):
        for i in range(50):
            with pytest.raises(StoreFull):
                await store.add_if_absent(f"assertion:{i}", 60)
    records = [r for r in caplog.records if r.name == "saml_middleware.store"]
    assert len(records) == 1
    assert "store.max_entries.replay" in records[0].getMessage()


# -- through the engine: the next login gets 503, nothing is lost ------------------------------


def idp_answer(engine: Engine, devidp: DevIdP, user: str = "bsimon") -> str:
    return devidp.create_response(
        user, sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )


def assert_store_full(reply: Response) -> None:
    assert reply.status == 503 and header(reply, "x-saml-error") == "store_full"
    assert b"try again" in reply.body


@pytest.mark.parametrize("kind", ["replay", "sessions", "session_index"])
async def test_when_a_kind_is_full_the_next_login_gets_503_and_no_mark_is_lost(
    make_engine: Callable[..., Engine], devidp: DevIdP, kind: str
) -> None:
    # Three logins of two users: three replay marks and sessions, two index entries.
    bound = 2 if kind == "session_index" else 3
    engine = make_engine(session__backend="store", store={"max_entries": {kind: bound}})
    answers = [idp_answer(engine, devidp, user) for user in ("bsimon", "ajones", "bsimon")]
    browsers = [Browser(engine, devidp) for _ in answers]
    for browser, saml_response in zip(browsers, answers, strict=True):
        assert (await browser.post_acs(saml_response)).status == 303
    refused = Browser(engine, devidp)
    assert_store_full(await refused.post_acs(idp_answer(engine, devidp, "cnoroles")))
    assert "saml_session" not in refused.cookies
    for browser, saml_response in zip(browsers, answers, strict=True):
        assert isinstance(await browser.get("/dashboard"), PassThrough)  # sessions kept
        replay = await Browser(engine, devidp).post_acs(saml_response)
        assert header(replay, "x-saml-error") == "replay"  # replay marks kept


async def test_when_used_request_marks_are_full_the_next_login_gets_503(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(store={"max_entries": {"requests": 2}})
    for _ in range(2):
        assert (await Browser(engine, devidp).login()).status == 303
    assert_store_full(await Browser(engine, devidp).login())


async def test_when_logout_marks_are_full_an_idp_logout_request_gets_503(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(store={"max_entries": {"logout": 1}})
    for expected in (303, 503):
        _, outbound = devidp.create_logout_request(
            engine.settings.sp.entity_id, "B.Simon@contoso.com"
        )
        parts = urlsplit(outbound.url)
        reply = await engine.handle(request("GET", f"{parts.path}?{parts.query}"))
        assert isinstance(reply, Response) and reply.status == expected


# -- settings ---------------------------------------------------------------------------------


def test_max_entries_defaults_and_overrides(devidp: DevIdP) -> None:
    store = load_settings(settings_for(devidp, store={"max_entries": {"replay": 5}})).store
    assert store.max_entries["replay"] == 5 and store.max_entries["sessions"] == 100_000
    assert StoreSettings("memory").max_entries["replay"] == 100_000


@pytest.mark.parametrize(
    ("store", "key"),
    [
        ({"max_entries": {"replay": 0}}, "store.max_entries.replay"),
        ({"max_entries": {"replay": "many"}}, "store.max_entries.replay"),
        ({"max_entries": {"everything": 5}}, "store.max_entries.everything"),
        ({"max_entries": 5}, "store.max_entries"),
        (
            {"backend": "redis", "url": "redis://127.0.0.1:1/0", "max_entries": {"replay": 5}},
            "store.max_entries",
        ),
    ],
)
def test_bad_max_entries_name_their_key(devidp: DevIdP, store: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(settings_for(devidp, store=store))
    assert refused.value.key == key


async def test_make_store_passes_the_bounds_on() -> None:
    store = make_store(StoreSettings("memory", max_entries={"replay": 7}))
    for i in range(7):
        assert await store.add_if_absent(f"assertion:{i}", 60)
    with pytest.raises(StoreFull):
        await store.add_if_absent("assertion:7", 60)
