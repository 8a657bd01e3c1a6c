"""The embedded default store: cachetools TLRU caches behind a lock.

Good for one process. Each entry carries its own deadline, and the cache expires
it then (TLRU: time-aware LRU), so expired replay marks and logout requests
leave by themselves.

Security state expires by time only: it is never evicted to make room. Each
kind of entry (replay marks, used-request marks, logout requests and marks,
server-side sessions, their NameID index, anything else) has its own cache and
bound (`store.max_entries`), so one kind cannot crowd out another. When a kind
is full, its expired entries are purged first; if it is still full, the new
entry is refused with `StoreFull` (a 503 "try again" for the sign-in that
needed it), logged once a minute, and nothing already stored is forgotten.

The lock is a thread lock, so the WSGI adapter's threads (each on its own
event loop) share the caches safely; no method awaits while holding it.
Records are kept as JSON text, as Redis keeps them: a caller's dict is never
shared, and both stores give back the same types.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from cachetools import TLRUCache

from ..config import MEMORY_STORE_MAX_ENTRIES
from .base import StoreFull

log = logging.getLogger("saml_middleware.store")

# The kind of an entry, by the prefix of its key (the engine's and session.py's keys).
_KIND_OF_PREFIX = {
    "assertion": "replay",
    "request-used": "requests",
    "logout": "logout",
    "logout-request": "logout",
    "session": "sessions",
    "sessions-of": "session_index",
}
# A full kind is logged at most this often (it is refused at every attempt).
FULL_LOG_INTERVAL = 60.0


class _Record(str):
    """A record's JSON text (apart from the replay marks and member sets)."""

    __slots__ = ()


def _deadline(_key: str, entry: tuple[float, Any], _now: float) -> float:
    return entry[0]


def kind_of(key: str) -> str:
    """Which bound `key` counts against."""
    return _KIND_OF_PREFIX.get(key.partition(":")[0], "other")


class MemoryStore:
    def __init__(self, max_entries: Mapping[str, int] | None = None) -> None:
        limits = {**MEMORY_STORE_MAX_ENTRIES, **(max_entries or {})}
        self._caches: dict[str, TLRUCache[str, tuple[float, Any]]] = {
            kind: TLRUCache(maxsize=limit, ttu=_deadline, timer=time.monotonic)
            for kind, limit in limits.items()
        }
        self._lock = threading.Lock()
        self._full_logged: dict[str, float] = {}

    def sizes(self) -> dict[str, int]:
        """How many entries (expired ones not yet purged included) each kind holds."""
        with self._lock:
            return {kind: len(cache) for kind, cache in self._caches.items()}

    def _cache(self, key: str) -> TLRUCache[str, tuple[float, Any]]:
        return self._caches[kind_of(key)]

    def _live(self, key: str, now: float) -> tuple[float, Any] | None:
        cache = self._cache(key)
        entry = cache.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del cache[key]
            return None
        return entry

    def _store(self, key: str, entry: tuple[float, Any], now: float) -> None:
        """Keep `entry` under `key`, refusing a new key rather than evicting another."""
        cache = self._cache(key)
        # len() purges the expired entries first (cachetools' timed caches do).
        if key not in cache and len(cache) >= cache.maxsize:
            self._refuse(kind_of(key), int(cache.maxsize), now)
        cache[key] = entry

    def _refuse(self, kind: str, limit: int, now: float) -> None:
        last = self._full_logged.get(kind)
        if last is None or now - last >= FULL_LOG_INTERVAL:
            self._full_logged[kind] = now
            log.error(
                "the memory store is full: %d live %s entries (store.max_entries.%s): "
                "new sign-ins answer 503 until some expire",
                limit,
                kind,
                kind,
            )
        raise StoreFull()

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._store(key, (now + ttl, _Record(json.dumps(value))), now)

    async def replace(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is None:
                return False
            self._store(key, (now + ttl, _Record(json.dumps(value))), now)
            return True

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
        value = entry[1] if entry else None
        return json.loads(value) if isinstance(value, _Record) else None

    async def pop(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
            if entry is None:
                return None
            del self._cache(key)[key]
        return json.loads(entry[1]) if isinstance(entry[1], _Record) else None

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._store(key, (now + ttl, True), now)
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            self._cache(key).pop(key, None)

    async def add_member(self, key: str, member: str, ttl: float) -> None:
        with self._lock:
            now = time.monotonic()
            entry = self._live(key, now)
            current = entry[1] if entry and isinstance(entry[1], frozenset) else frozenset()
            self._store(key, (now + ttl, current | {member}), now)

    async def members(self, key: str) -> set[str]:
        with self._lock:
            entry = self._live(key, time.monotonic())
        return set(entry[1]) if entry and isinstance(entry[1], frozenset) else set()

    async def remove_member(self, key: str, member: str) -> None:
        with self._lock:
            entry = self._live(key, time.monotonic())
            if entry is None or not isinstance(entry[1], frozenset):
                return
            remaining = entry[1] - {member}
            if remaining:
                self._cache(key)[key] = (entry[0], remaining)
            else:
                del self._cache(key)[key]
