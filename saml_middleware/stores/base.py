"""The store interface: the small set of atomic operations SAML state needs.

Used-request marks, outstanding LogoutRequests, the assertion-ID replay cache and
server-side sessions (with their NameID index, for Single Logout) all live
behind it, so several processes can share them when the store is shared
(Redis). Values are JSON-serialisable dicts; set members are short strings.
Every method is a coroutine; the memory backend simply does its work inline.

A backend that cannot reach its server raises `StoreUnavailable`: a 503 for
the browser ("try again"), never a 500, and never a silent "not found" that
would turn an outage into refused logins or accepted replays. A backend that
has no room left raises `StoreFull` (a kind of `StoreUnavailable`) rather than
forget a replay mark or a session to make room.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import SAMLError

STORE_UNAVAILABLE_REASON = (
    "Sign-in is unavailable for a moment: a service this site needs is not answering. "
    "Please try again shortly."
)


class StoreUnavailable(SAMLError):
    """The shared store (Redis) is unreachable or refused the command."""

    def __init__(self) -> None:
        super().__init__("store_unavailable", STORE_UNAVAILABLE_REASON, 503)


STORE_FULL_REASON = (
    "Sign-in is unavailable for a moment: this site is handling too many sign-ins. "
    "Please try again shortly."
)


class StoreFull(StoreUnavailable):
    """The memory store has no room for a new entry of a kind, even after purging
    expired ones: the sign-in that needed it is refused, nothing stored is evicted."""

    def __init__(self) -> None:
        SAMLError.__init__(self, "store_full", STORE_FULL_REASON, 503)


class Store(Protocol):
    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds, replacing any old value."""

    async def replace(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        """Overwrite `key` only if it is still there (never resurrects a deleted key)."""

    async def get(self, key: str) -> dict[str, Any] | None:
        """Read without removing."""

    async def pop(self, key: str) -> dict[str, Any] | None:
        """Take the value atomically: of two concurrent callers only one gets it."""

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        """Mark `key` as seen; True only for the first caller (replay cache)."""

    async def delete(self, key: str) -> None:
        """Remove `key` if present."""

    async def add_member(self, key: str, member: str, ttl: float) -> None:
        """Add `member` to the set at `key`; the set lives `ttl` seconds after this call."""

    async def members(self, key: str) -> set[str]:
        """The members of the set at `key` (empty when there is none)."""

    async def remove_member(self, key: str, member: str) -> None:
        """Remove `member` from the set at `key` if present."""
