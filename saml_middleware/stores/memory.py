"""The embedded default store: a cachetools TTL cache behind a lock.

Good for one process. Each entry keeps its own expiry (cachetools' TTLCache has
one TTL per cache, so entries carry their deadline and the cache TTL is only the
upper bound). Bounded in size: the oldest entries go first when it is full.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from cachetools import TTLCache

_MAX_TTL = 7 * 24 * 3600.0


class MemoryStore:
    def __init__(self, maxsize: int = 100_000) -> None:
        self._cache: TTLCache[str, tuple[float, dict[str, Any] | None]] = TTLCache(
            maxsize=maxsize, ttl=_MAX_TTL
        )
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[float, dict[str, Any] | None] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._cache[key]
            return None
        return entry

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic() + ttl, copy.deepcopy(value))

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
        return copy.deepcopy(entry[1]) if entry else None

    async def pop(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
            if entry is None:
                return None
            del self._cache[key]
        return entry[1]

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._live(key, now) is not None:
                return False
            self._cache[key] = (now + ttl, None)
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)
