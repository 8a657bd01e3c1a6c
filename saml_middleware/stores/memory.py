"""The embedded default store: a cachetools TLRU cache behind a lock.

Good for one process. Each entry carries its own deadline, and the cache expires
it then (TLRU: time-aware LRU), so expired outstanding requests and replay marks
leave the cache by themselves. Bounded in size: when it is full, expired entries
go first, then the least recently used.
The lock is a thread lock, so the WSGI adapter's threads (each on its own
event loop) share one cache safely; no method awaits while holding it.
Records are kept as JSON text, as Redis keeps them: a caller's dict is never
shared, and both stores give back the same types.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from cachetools import TLRUCache


class _Record(str):
    """A record's JSON text (apart from the replay marks and member sets)."""

    __slots__ = ()


def _deadline(_key: str, entry: tuple[float, Any], _now: float) -> float:
    return entry[0]


class MemoryStore:
    def __init__(self, maxsize: int = 100_000) -> None:
        self._cache: TLRUCache[str, tuple[float, Any]] = TLRUCache(
            maxsize=maxsize, ttu=_deadline, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[float, Any] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._cache[key]
            return None
        return entry

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic() + ttl, _Record(json.dumps(value)))

    async def replace(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is None:
                return False
            self._cache[key] = (now + ttl, _Record(json.dumps(value)))
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
            del self._cache[key]
        return json.loads(entry[1]) if isinstance(entry[1], _Record) else None

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._cache[key] = (now + ttl, True)
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    async def add_member(self, key: str, member: str, ttl: float) -> None:
        with self._lock:
            now = time.monotonic()
            entry = self._live(key, now)
            current = entry[1] if entry and isinstance(entry[1], frozenset) else frozenset()
            self._cache[key] = (now + ttl, current | {member})

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
                self._cache[key] = (entry[0], remaining)
            else:
                del self._cache[key]
