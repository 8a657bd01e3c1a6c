"""What the flows remember in the store, and under which keys (every key is built here).

* `request-used:<nonce>`: an AuthnRequest was answered (a login or a Test SSO),
  until its signed ID expires: one answer per request.
* `assertion:<issuer>:<ID>`: the replay cache, until the assertion expires.
* `logout-request:<issuer>:<ID>`: an IdP's LogoutRequest was acted on (replay).
* `logout:<ID>`: our outstanding LogoutRequest, with the page to go to after.
* `session:<digest>` and `sessions-of:<digest>`: server-side sessions and the
  index Single Logout revokes them by (sessions.StoreSessions).

A mark is an `add_if_absent`: of two concurrent answers only one is taken,
on every worker sharing the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from .authn_requests import OUTSTANDING_REQUEST_TTL, RequestToken
from .stores import Store

# A Single Logout message older than this (by its IssueInstant) is refused; its ID
# is remembered as long (replay), plus twice the clock skew.
LOGOUT_MESSAGE_MAX_AGE = 600


def digest(*parts: str) -> str:
    """SHA-256 of `parts`: what a key holds instead of a session id or a NameID."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def session_key(record_digest: str) -> str:
    return f"session:{record_digest}"


def sessions_of_key(issuer: str | None, name_id: str) -> str:
    return f"sessions-of:{digest(issuer or '', name_id)}"


class FlowState:
    """The one-time marks and outstanding messages of the login and logout flows."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock

    async def mark_request_used(self, token: RequestToken) -> bool:
        """Mark the request answered, until it expires; False when it already was."""
        return await self.store.add_if_absent(
            f"request-used:{token.nonce}", max(1.0, token.expires_at - self._clock())
        )

    async def mark_assertion_seen(self, issuer: str, assertion_id: str, expires_at: float) -> bool:
        """Enter an accepted assertion in the replay cache; False when it is a replay."""
        return await self.store.add_if_absent(
            f"assertion:{issuer}:{assertion_id}", max(1.0, expires_at - self._clock())
        )

    async def mark_logout_request_seen(self, issuer: str, message_id: str, ttl: float) -> bool:
        """Enter an IdP's LogoutRequest in the replay cache; False when it is a replay."""
        return await self.store.add_if_absent(f"logout-request:{issuer}:{message_id}", ttl)

    async def keep_logout(self, request_id: str, next_url: str, tenant: str | None) -> None:
        """Remember our LogoutRequest (for its answer) with where the user goes next."""
        record: dict[str, Any] = {"next": next_url, **({"tenant": tenant} if tenant else {})}
        await self.store.put(f"logout:{request_id}", record, OUTSTANDING_REQUEST_TTL)

    async def take_logout(self, request_id: str) -> dict[str, Any] | None:
        """Our LogoutRequest's record, taken once (None when unknown, expired or taken)."""
        return await self.store.pop(f"logout:{request_id}")
