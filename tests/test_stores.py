"""The store interface, one suite run on both backends: memory and a real Redis.

Each Redis test works under a key prefix of its own on the session's private
redis-server (tests/redis_server.py). Concurrency is tested the way the
adapters use the store: many tasks on one loop (ASGI) and many threads, each
with its own event loop (the WSGI adapter), racing for one key: exactly one
winner.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from saml_middleware.config import StoreSettings
from saml_middleware.errors import ConfigError
from saml_middleware.stores import MemoryStore, Store, StoreUnavailable, make_store
from tests.redis_server import free_port

pytestmark = pytest.mark.anyio

RACERS = 64
THREADS = 16


def _redis_store(url: str, prefix: str, **options: Any) -> Any:
    from saml_middleware.stores.redis import RedisStore

    return RedisStore(url, prefix=prefix, **options)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(backend: str, request: pytest.FixtureRequest) -> Callable[[], Store]:
    """Makes stores of the backend under test; Redis ones share this test's prefix."""
    if backend == "memory":
        shared = MemoryStore()
        return lambda: shared
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: _redis_store(url, prefix)


@pytest.fixture
async def store(new_store: Callable[[], Store]) -> AsyncIterator[Store]:
    made = new_store()
    yield made
    aclose = getattr(made, "aclose", None)
    if aclose is not None:
        await aclose()


# -- single operations ------------------------------------------------------------------


async def test_put_then_get_returns_a_copy(store: Store) -> None:
    await store.put("k", {"next": "/x", "n": [1, 2]}, 60)
    value = await store.get("k")
    assert value == {"next": "/x", "n": [1, 2]}
    assert value is not None
    value["next"] = "/changed"
    assert await store.get("k") == {"next": "/x", "n": [1, 2]}


async def test_get_of_a_missing_key_is_none(store: Store) -> None:
    assert await store.get("nothing-here") is None


async def test_put_replaces_the_old_value(store: Store) -> None:
    await store.put("k", {"v": 1}, 60)
    await store.put("k", {"v": 2}, 60)
    assert await store.get("k") == {"v": 2}


async def test_pop_takes_the_value_once(store: Store) -> None:
    await store.put("k", {"v": 1}, 60)
    assert await store.pop("k") == {"v": 1}
    assert await store.pop("k") is None
    assert await store.get("k") is None


async def test_pop_of_a_missing_key_is_none(store: Store) -> None:
    assert await store.pop("nothing-here") is None


async def test_add_if_absent_is_true_only_the_first_time(store: Store) -> None:
    assert await store.add_if_absent("seen", 60) is True
    assert await store.add_if_absent("seen", 60) is False
    assert await store.add_if_absent("other", 60) is True


async def test_delete(store: Store) -> None:
    await store.put("k", {"v": 1}, 60)
    await store.delete("k")
    await store.delete("k")  # absent: no error
    assert await store.get("k") is None


async def test_replace_never_creates_a_key(store: Store) -> None:
    assert await store.replace("k", {"v": 1}, 60) is False
    assert await store.get("k") is None
    await store.put("k", {"v": 1}, 60)
    assert await store.replace("k", {"v": 2}, 60) is True
    assert await store.get("k") == {"v": 2}
    await store.delete("k")
    assert await store.replace("k", {"v": 3}, 60) is False
    assert await store.get("k") is None


async def test_sets(store: Store) -> None:
    assert await store.members("set") == set()
    await store.add_member("set", "a", 60)
    await store.add_member("set", "b", 60)
    await store.add_member("set", "a", 60)
    assert await store.members("set") == {"a", "b"}
    await store.remove_member("set", "a")
    await store.remove_member("set", "missing")
    assert await store.members("set") == {"b"}
    await store.remove_member("set", "b")
    assert await store.members("set") == set()
    await store.remove_member("nothing-here", "x")


# -- expiry ---------------------------------------------------------------------------------


async def test_entries_expire_after_their_own_ttl(store: Store) -> None:
    await store.put("short", {"v": 1}, 0.2)
    await store.put("long", {"v": 2}, 60)
    assert await store.add_if_absent("seen", 0.2) is True
    await store.add_member("set", "a", 0.2)
    await asyncio.sleep(0.5)
    assert await store.get("short") is None
    assert await store.pop("short") is None
    assert await store.get("long") == {"v": 2}
    assert await store.add_if_absent("seen", 60) is True  # the mark expired
    assert await store.members("set") == set()
    assert await store.replace("short", {"v": 3}, 60) is False


async def test_replace_sets_a_new_ttl(store: Store) -> None:
    await store.put("k", {"v": 1}, 0.3)
    assert await store.replace("k", {"v": 2}, 60) is True
    await asyncio.sleep(0.5)
    assert await store.get("k") == {"v": 2}


async def test_a_set_lives_ttl_after_its_last_addition(store: Store) -> None:
    await store.add_member("set", "a", 0.3)
    await asyncio.sleep(0.15)
    await store.add_member("set", "b", 0.6)
    await asyncio.sleep(0.3)
    assert await store.members("set") == {"a", "b"}


# -- concurrency: exactly one winner ----------------------------------------------------


async def test_concurrent_pops_from_many_tasks_have_one_winner(store: Store) -> None:
    for round_ in range(3):
        await store.put(f"req{round_}", {"next": "/"}, 60)
        taken = await asyncio.gather(*(store.pop(f"req{round_}") for _ in range(RACERS)))
        assert sum(value is not None for value in taken) == 1


async def test_concurrent_add_if_absent_from_many_tasks_has_one_winner(store: Store) -> None:
    for round_ in range(3):
        firsts = await asyncio.gather(
            *(store.add_if_absent(f"assertion{round_}", 60) for _ in range(RACERS))
        )
        assert firsts.count(True) == 1


def _race_in_threads(
    new_store: Callable[[], Store], operation: Callable[[Store], Any], threads: int = THREADS
) -> list[Any]:
    """`operation` in `threads` threads at once, each on its own event loop (as WSGI does)."""
    store = new_store()
    barrier = threading.Barrier(threads, timeout=10)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        async def once() -> Any:
            try:
                # Connect first, so the race is on the operation, not on the connect.
                await store.get("warm-up")
                barrier.wait()
                return await operation(store)
            finally:
                aclose = getattr(store, "aclose", None)
                if aclose is not None:
                    await aclose()

        try:
            results.append(asyncio.run(once()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors
    return results


async def test_concurrent_pops_from_many_threads_have_one_winner(
    new_store: Callable[[], Store],
) -> None:
    store = new_store()
    await store.put("req", {"next": "/"}, 60)
    taken = await asyncio.to_thread(_race_in_threads, new_store, lambda s: s.pop("req"))
    assert sum(value is not None for value in taken) == 1
    await _close(store)


async def test_concurrent_add_if_absent_from_many_threads_has_one_winner(
    new_store: Callable[[], Store],
) -> None:
    firsts = await asyncio.to_thread(
        _race_in_threads, new_store, lambda s: s.add_if_absent("assertion", 60)
    )
    assert firsts.count(True) == 1


async def test_two_store_objects_on_one_redis_see_one_state(
    redis_url: str, redis_prefix: str
) -> None:
    """What two worker processes see: each has its own store object on the same Redis."""
    first, second = _redis_store(redis_url, redis_prefix), _redis_store(redis_url, redis_prefix)
    await first.put("req", {"next": "/x"}, 60)
    assert await second.pop("req") == {"next": "/x"}
    assert await first.pop("req") is None
    assert await first.add_if_absent("assertion", 60) is True
    assert await second.add_if_absent("assertion", 60) is False
    await first.add_member("set", "a", 60)
    assert await second.members("set") == {"a"}
    await _close(first)
    await _close(second)


async def _close(store: Store) -> None:
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()


# -- Redis specifics ------------------------------------------------------------------------


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_redis_keys_carry_the_prefix(redis_url: str, redis_prefix: str, raw_redis) -> None:
    store = _redis_store(redis_url, redis_prefix)
    other = _redis_store(redis_url, redis_prefix + "other:")
    await store.put("request:abc", {"next": "/"}, 60)
    await store.add_if_absent("assertion:x", 60)
    await store.add_member("sessions-of:y", "m", 60)
    keys = sorted(k.decode() for k in await raw_redis.keys(redis_prefix + "*"))
    assert keys == [
        f"{redis_prefix}assertion:x",
        f"{redis_prefix}request:abc",
        f"{redis_prefix}sessions-of:y",
    ]
    assert 0 < await raw_redis.pttl(f"{redis_prefix}request:abc") <= 60_000
    # Another prefix is another namespace.
    assert await other.get("request:abc") is None
    assert await other.add_if_absent("assertion:x", 60) is True
    await _close(store)
    await _close(other)


async def test_redis_value_that_is_not_ours_reads_as_missing(
    redis_url: str, redis_prefix: str, raw_redis
) -> None:
    store = _redis_store(redis_url, redis_prefix)
    await raw_redis.set(f"{redis_prefix}k", b"\xff not json")
    await raw_redis.set(f"{redis_prefix}list", b"[1, 2]")
    assert await store.get("k") is None
    assert await store.pop("list") is None
    await _close(store)


async def test_redis_pop_falls_back_to_a_script_without_getdel(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    async def no_getdel(self: Any, name: Any) -> Any:
        raise ResponseError("unknown command 'GETDEL', with args beginning with: ")

    monkeypatch.setattr(Redis, "getdel", no_getdel)
    store = _redis_store(redis_url, redis_prefix)
    await store.put("req", {"v": 1}, 60)
    assert await store.pop("req") == {"v": 1}
    assert await store.pop("req") is None
    assert store._getdel is False
    await _close(store)


async def test_one_redis_store_serves_many_event_loops(redis_url: str, redis_prefix: str) -> None:
    """The WSGI case: one store, each thread on its own loop, clients never shared."""
    store = _redis_store(redis_url, redis_prefix)
    await store.put("k", {"v": 1}, 60)

    async def read_and_disconnect() -> Any:
        value = await store.get("k")
        # Disconnect, but leave the client registered, as a loop that just ends would.
        await store._clients[asyncio.get_running_loop()].aclose()
        return value

    def in_new_loop() -> Any:
        return asyncio.run(read_and_disconnect())

    assert await asyncio.to_thread(in_new_loop) == {"v": 1}
    assert len(store._clients) == 2  # this loop's and the ended one's
    assert await asyncio.to_thread(in_new_loop) == {"v": 1}
    assert len(store._clients) == 2  # the ended loop's client was dropped for the new one
    await _close(store)
    assert len(store._clients) == 1


async def test_unreachable_redis_raises_store_unavailable_and_logs_once(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("redis")
    store = _redis_store(
        f"redis://:secret-password@127.0.0.1:{free_port()}/0",
        redis_prefix,
        connect_timeout=0.5,
        socket_timeout=0.5,
    )
    operations = [
        store.put("k", {"v": 1}, 60),
        store.get("k"),
        store.pop("k"),
        store.add_if_absent("k", 60),
        store.delete("k"),
        store.replace("k", {}, 60),
        store.add_member("s", "m", 60),
        store.members("s"),
        store.remove_member("s", "m"),
    ]
    with caplog.at_level(logging.DEBUG, logger="saml_middleware.store"):
        for operation in operations:
            with pytest.raises(StoreUnavailable) as refused:
                await operation
            assert refused.value.status == 503
            assert refused.value.code == "store_unavailable"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "127.0.0.1" in errors[0].getMessage()
    assert "secret-password" not in caplog.text
    assert "secret-password" not in repr(store)
    await _close(store)


# -- building a store from settings ---------------------------------------------------------


def test_make_store_builds_the_named_backend() -> None:
    pytest.importorskip("redis")
    from saml_middleware.stores.redis import RedisStore

    assert isinstance(make_store(StoreSettings("memory")), MemoryStore)
    store = make_store(StoreSettings("redis", "redis://127.0.0.1:1/0", "app1:", 1.5, 0.5, 7))
    assert isinstance(store, RedisStore)
    assert store.prefix == "app1:"
    assert store._options["socket_timeout"] == 1.5
    assert store._options["socket_connect_timeout"] == 0.5
    assert store._options["max_connections"] == 7


def test_redis_backend_without_the_redis_package_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "saml_middleware.stores.redis", raising=False)
    monkeypatch.setitem(sys.modules, "redis", None)  # "import redis" now raises ImportError
    with pytest.raises(ConfigError) as refused:
        make_store(StoreSettings("redis", "redis://127.0.0.1:6379/0"))
    assert refused.value.key == "store.backend"
    assert "pip install 'saml-middleware[redis]'" in str(refused.value)


def test_a_url_redis_cannot_parse_is_a_config_error_that_hides_it() -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigError) as refused:
        make_store(StoreSettings("redis", "redis://:pw@127.0.0.1:6379/0?db=x"))
    assert refused.value.key == "store.url"
    assert "pw" not in str(refused.value)


def test_memory_store_lets_expired_entries_go_before_live_ones():
    """A full kind purges its expired entries to make room, never a live one."""
    import asyncio
    import time as _time

    from saml_middleware.stores.memory import MemoryStore

    async def scenario() -> None:
        store = MemoryStore({"replay": 10})
        assert await store.add_if_absent("assertion:live", 3600)
        for i in range(9):
            assert await store.add_if_absent(f"assertion:{i}", 0.01)
        _time.sleep(0.05)  # the nine marks expire
        for i in range(9):
            assert await store.add_if_absent(f"assertion:new{i}", 3600)
        assert not await store.add_if_absent("assertion:live", 3600)  # still remembered
        assert store.sizes()["replay"] == 10

    asyncio.run(scenario())
