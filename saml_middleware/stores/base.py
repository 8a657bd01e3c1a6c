"""The store interface: the small set of atomic operations SAML state needs.

Outstanding AuthnRequests, the assertion-ID replay cache and (later)
server-side sessions all live behind it, so several processes can share them
when the store is shared. Values are JSON-serialisable dicts. Every method is a
coroutine; a synchronous backend simply does its work inline.
"""

from __future__ import annotations

from typing import Any, Protocol


class Store(Protocol):
    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds, replacing any old value."""

    async def get(self, key: str) -> dict[str, Any] | None:
        """Read without removing."""

    async def pop(self, key: str) -> dict[str, Any] | None:
        """Take the value atomically: of two concurrent callers only one gets it."""

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        """Mark `key` as seen; True only for the first caller (replay cache)."""

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""
