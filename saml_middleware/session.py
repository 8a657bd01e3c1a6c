"""The login session: an itsdangerous-signed cookie that carries the user.

The cookie holds a fresh random session id, the login time and the mapped user.
Its signature timestamp is the last activity: `idle_timeout_seconds` is checked
against it and the cookie is re-issued (at most every tenth of the idle window)
while the user is active; `max_age_seconds` is counted from the login and never
extended. A cookie that is tampered with, signed with another key, expired or
malformed simply means "no session".

Size: browsers drop a cookie over 4096 bytes, and an Entra user in 200 groups
sends ~8 KB of claims. The cookie keeps only the claims in `session.attributes`
(all when unset); if it is still too large, the largest claims are left out
until it fits. The mapped fields and roles are always kept; a user who does not
fit even then is refused at login rather than given a cookie the browser drops.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .config import SessionSettings
from .errors import SAMLError
from .identity import SAMLUser

log = logging.getLogger("saml_middleware.session")

# Browsers drop cookies over 4096 bytes (name and attributes included): the whole
# Set-Cookie value stays under this, with room to spare.
COOKIE_LIMIT = 4000
_TOO_LARGE = (
    "Your account sends too much information to keep in a session: ask your administrator "
    "to send fewer roles or claims to this application."
)


@dataclass(frozen=True)
class Session:
    user: SAMLUser
    session_id: str
    login_time: float
    refresh: bool  # True when the cookie should be re-issued (sliding idle timeout)


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner reading the codec's clock, so timeouts are testable."""

    def __init__(self, secret_key: str, *, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(secret_key, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class SessionCodec:
    """Turns a user into a cookie value and back, enforcing both timeouts."""

    def __init__(
        self,
        settings: SessionSettings,
        secret_key: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            secret_key,
            salt="saml_middleware.session",
            signer=_ClockedSigner,
            signer_kwargs={"clock": clock},
        )
        idle = settings.idle_timeout_seconds
        self._refresh_after = max(1, idle // 10) if idle else None

    def encode(
        self, user: SAMLUser, *, session_id: str | None = None, login_time: float | None = None
    ) -> str:
        """A cookie value for `user`; a new session id unless one is given (refresh).

        Keeps the claims `session.attributes` allows, then as many of them as
        fit (smallest first). Raises `SAMLError("session_too_large")` for a new
        session that cannot fit even with no claims.
        """
        data = user.to_dict()
        allowed = self.settings.attributes
        if allowed is not None:
            data["attributes"] = {k: v for k, v in data["attributes"].items() if k in allowed}
        claims: dict[str, list[str]] = data["attributes"]
        payload: dict[str, Any] = {
            "sid": session_id or secrets.token_urlsafe(16),
            "iat": int(login_time if login_time is not None else self._clock()),
            "u": data,
        }
        value = self._dumps(payload)
        if self._fits(value) or not claims:
            return self._checked(value, new=session_id is None)
        # Keep the k smallest claims for the largest k that fits (binary search:
        # a few encodings, however many claims the IdP sent).
        by_size = sorted(claims, key=lambda k: (len(json.dumps([k, claims[k]])), k))

        def keeping(count: int) -> str:
            kept = set(by_size[:count])
            data["attributes"] = {k: v for k, v in claims.items() if k in kept}
            return self._dumps(payload)

        fits, too_big = 0, len(by_size)
        value = keeping(0)
        if self._fits(value):
            while too_big - fits > 1:
                middle = (fits + too_big) // 2
                if self._fits(keeping(middle)):
                    fits = middle
                else:
                    too_big = middle
            value = keeping(fits)
        left_out = by_size[fits:]
        shown = ", ".join(left_out[:5]) + (
            f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
        )
        log.warning(
            "session cookie too large: %d claim(s) left out of it (%s); the mapped user "
            "fields and roles are kept. List the claims the app needs in session.attributes",
            len(left_out),
            shown,
        )
        return self._checked(value, new=session_id is None)

    def _fits(self, value: str) -> bool:
        return len(self.cookie_header(value, self.settings.max_age_seconds)) <= COOKIE_LIMIT

    def _checked(self, value: str, *, new: bool) -> str:
        if self._fits(value):
            return value
        log.error(
            "session cookie too large (%d bytes) even without claims: the user's roles or "
            "names are too long for a cookie session",
            len(value),
        )
        if new:
            raise SAMLError("session_too_large", _TOO_LARGE, 403)
        return value  # a refresh: the browser keeps the previous, still valid cookie

    def _dumps(self, payload: dict[str, Any]) -> str:
        return str(self._serializer.dumps(payload))

    def decode(self, value: str | None) -> Session | None:
        """The session in `value`, or None when missing, forged or expired."""
        if not value or len(value) > 8192:
            return None
        now = self._clock()
        try:
            payload, stamped = self._serializer.loads(value, return_timestamp=True)
            login_time = float(payload["iat"])
            user = SAMLUser.from_dict(payload["u"])
            session_id = str(payload["sid"])
        except (BadData, KeyError, TypeError, ValueError):
            return None
        last_active = stamped.timestamp()
        if now - login_time > self.settings.max_age_seconds or login_time > now + 60:
            return None
        idle = self.settings.idle_timeout_seconds
        if idle is not None and now - last_active > idle:
            return None
        refresh = self._refresh_after is not None and now - last_active >= self._refresh_after
        return Session(user, session_id, login_time, refresh)

    def remaining(self, login_time: float) -> int:
        """Seconds left before the absolute timeout (the cookie's Max-Age)."""
        return max(0, int(login_time + self.settings.max_age_seconds - self._clock()))

    def cookie_header(self, value: str, max_age: int) -> str:
        """The Set-Cookie header value for a session cookie."""
        s = self.settings
        parts = [
            f"{s.cookie_name}={value}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            f"SameSite={s.same_site.capitalize()}",
        ]
        if s.https_only:
            parts.append("Secure")
        return "; ".join(parts)

    def clear_header(self) -> str:
        """The Set-Cookie header value that removes the session cookie."""
        return self.cookie_header("", 0)
