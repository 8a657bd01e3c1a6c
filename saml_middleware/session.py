"""The login session: an itsdangerous-signed cookie that carries the user.

The cookie holds a fresh random session id, the login time and the mapped user.
Its signature timestamp is the last activity: `idle_timeout_seconds` is checked
against it and the cookie is re-issued (at most every tenth of the idle window)
while the user is active; `max_age_seconds` is counted from the login and never
extended. A cookie that is tampered with, signed with another key, expired or
malformed simply means "no session".
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .config import SessionSettings
from .identity import SAMLUser

log = logging.getLogger("saml_middleware.session")

# Browsers drop cookies over 4096 bytes (name and attributes included).
_COOKIE_BUDGET = 3800


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
        """A cookie value for `user`; a new session id unless one is given (refresh)."""
        payload: dict[str, Any] = {
            "sid": session_id or secrets.token_urlsafe(16),
            "iat": int(login_time if login_time is not None else self._clock()),
            "u": user.to_dict(),
        }
        value = self._dumps(payload)
        if len(value) > _COOKIE_BUDGET and payload["u"]["attributes"]:
            log.warning(
                "session cookie too large (%d bytes): raw attributes left out of the cookie; "
                "the mapped user fields and roles are kept",
                len(value),
            )
            payload["u"]["attributes"] = {}
            value = self._dumps(payload)
        return value

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
