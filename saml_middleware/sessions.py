"""Who a request is: the one gate (`SessionGate.user_for`) over a session backend.

The gate reads the session from the backend and applies an organization's own
timeouts (`Timeouts`, the one rule for how long a session lasts). A backend
is any `SessionBackend`: one of the two below (`session.backend`), or the
app's own, passed as `SAMLMiddleware(app, settings=..., sessions=...)`.

"cookie" (the default, `CookieSessions`): an itsdangerous-signed cookie that
carries the user; no I/O on a protected request. "store" (`StoreSessions`):
the cookie carries only a random, signed session id and the session lives in
the store, so it can be large and it can be revoked: logout deletes it, and
Single Logout ends every session of a NameID (an index kept in the store),
even in a browser that is not the one sending the LogoutRequest. Both enforce
the same absolute (`max_age_seconds`) and idle (`idle_timeout_seconds`)
timeouts and give the same `Session`. The rest of this docstring is about
cookies.

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

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from itsdangerous import BadData, TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from .config import SessionSettings
from .errors import SAMLError
from .identity import SAMLUser
from .state import digest as _digest
from .state import session_key, sessions_of_key
from .stores import Store, StoreUnavailable

if TYPE_CHECKING:
    from .http import HttpRequest
    from .tenants import Tenant

log = logging.getLogger("saml_middleware.session")
# The gate's records stay the engine's, as operators know them.
_engine_log = logging.getLogger("saml_middleware.engine")

# Browsers drop cookies over 4096 bytes (name and attributes included): the whole
# Set-Cookie value stays under this, with room to spare.
COOKIE_LIMIT = 4000
_TOO_LARGE = (
    "Your account sends too much information to keep in a session: ask your administrator "
    "to send fewer roles or claims to this application."
)


_VERIFIED_CACHE_SIZE = 2048


@dataclass(frozen=True)
class Session:
    user: SAMLUser
    session_id: str
    login_time: float
    refresh: bool  # True when the cookie should be re-issued (sliding idle timeout)
    last_active: float = 0.0  # when the session was last refreshed (idle timeouts)


@dataclass(frozen=True)
class Timeouts:
    """The one rule for how long a session lasts, whichever backend keeps it.

    A session ends `max_age` seconds after the login (never extended) or after
    `idle` seconds without a request; while the user is active its last-activity
    time moves on, at most every tenth of the idle window (a re-issued cookie, a
    rewritten record). An organization's own, shorter, timeouts are the same rule.
    """

    max_age: int
    idle: int | None

    @classmethod
    def of(cls, settings: SessionSettings) -> Timeouts:
        return cls(settings.max_age_seconds, settings.idle_timeout_seconds)

    def expired(self, login_time: float, last_active: float, now: float) -> bool:
        """Whether a session of this login and last activity is over (or dated ahead)."""
        idle = self.idle
        return (
            now - login_time > self.max_age
            or login_time > now + 60
            or (idle is not None and now - last_active > idle)
        )

    def refresh_due(self, last_active: float, now: float) -> bool:
        """Whether the session's last activity should be recorded now."""
        idle = self.idle
        return idle is not None and now - last_active >= max(1, idle // 10)


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
        self._timeouts = Timeouts.of(settings)
        # Cookie value -> what its verified payload said. A browser sends the same
        # cookie on every request: verify its signature once, not on each one. Only
        # values whose signature verified get in; the timeouts are still checked
        # on every request. Bounded: emptied when full (a dict's single operations
        # are atomic, so WSGI threads need no lock).
        # The cached Session is the one with refresh=False (frozen, so shareable).
        self._verified: dict[str, tuple[Session, float, float]] = {}

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
        hit = self._verified.get(value)
        if hit is None:
            try:
                payload, stamped = self._serializer.loads(value, return_timestamp=True)
                login_time = float(payload["iat"])
                last_active = stamped.timestamp()
                session = Session(
                    SAMLUser.from_dict(payload["u"]),
                    str(payload["sid"]),
                    login_time,
                    False,
                    last_active,
                )
            except (BadData, KeyError, TypeError, ValueError):
                return None
            hit = (session, login_time, last_active)
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[value] = hit
        session, login_time, last_active = hit
        if self._timeouts.expired(login_time, last_active, now):
            return None
        if self._timeouts.refresh_due(last_active, now):
            return Session(session.user, session.session_id, login_time, True, last_active)
        return session

    def remaining(self, login_time: float) -> int:
        """Seconds left before the absolute timeout (the cookie's Max-Age)."""
        return max(0, int(login_time + self.settings.max_age_seconds - self._clock()))

    def cookie_header(self, value: str, max_age: int) -> str:
        """The Set-Cookie header value for a session cookie."""
        return _set_cookie(self.settings, value, max_age)

    def clear_header(self) -> str:
        """The Set-Cookie header value that removes the session cookie."""
        return self.cookie_header("", 0)


def _set_cookie(s: SessionSettings, value: str, max_age: int) -> str:
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


class SessionBackend(Protocol):
    """What the engine needs of a session backend (cookie or store)."""

    settings: SessionSettings

    async def load(self, cookie: str | None) -> Session | None:
        """The session the cookie value names, or None (missing, forged, expired, revoked)."""

    async def start(self, user: SAMLUser) -> str:
        """A new session (new id: no fixation) for `user`; its Set-Cookie header value."""

    async def refresh(self, session: Session) -> str | None:
        """Record activity (idle timeout); a Set-Cookie header value when the cookie changes."""

    async def end(self, session: Session) -> None:
        """Logout: the session is over wherever it is kept."""

    async def revoke(
        self,
        issuer: str,
        name_id: str,
        session_indexes: Collection[str],
        *,
        matches: Callable[[SAMLUser], bool] | None = None,
    ) -> int:
        """Single Logout: end the sessions of `name_id` (those of `session_indexes` when
        given, and whose user `matches`: the NameID's qualifiers); how many ended.
        Only server-side sessions can be found this way."""

    def clear_header(self) -> str:
        """The Set-Cookie header value that removes the session cookie."""


class CookieSessions(SessionCodec):
    """`session.backend = "cookie"`: the whole session is the signed cookie."""

    async def load(self, cookie: str | None) -> Session | None:
        return self.decode(cookie)

    async def start(self, user: SAMLUser) -> str:
        return self.cookie_header(self.encode(user), self.settings.max_age_seconds)

    async def refresh(self, session: Session) -> str | None:
        if not session.refresh:
            return None
        value = self.encode(
            session.user, session_id=session.session_id, login_time=session.login_time
        )
        return self.cookie_header(value, self.remaining(session.login_time))

    async def end(self, session: Session) -> None:
        return None  # the browser drops the cookie (clear_header)

    async def revoke(
        self,
        issuer: str,
        name_id: str,
        session_indexes: Collection[str],
        *,
        matches: Callable[[SAMLUser], bool] | None = None,
    ) -> int:
        return 0  # cookies live in browsers: nothing server-side to find


# A session id: 32 random bytes, URL-safe Base64 (43 characters).
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _VERIFIED_CACHE_SIZE:
        cache.clear()
    cache[key] = value


class StoreSessions:
    """`session.backend = "store"`: a signed random id in the cookie, the session in the store.

    Store keys hold SHA-256 digests, never the ids themselves: whoever can list
    the store's keys cannot take over a session, and no e-mail address (NameID)
    appears in a key. `session:<digest of id>` is the record (user, login and
    last-activity times); `sessions-of:<digest of issuer and NameID>` is the set
    of record digests Single Logout revokes. The record's store TTL follows the
    idle and absolute timeouts; the times inside it are checked too.
    """

    def __init__(
        self,
        settings: SessionSettings,
        secret_key: str,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._ids = URLSafeSerializer(secret_key, salt="saml_middleware.session-id")
        self._timeouts = Timeouts.of(settings)
        # Work done once per session, not per request (bounded, emptied when full):
        # cookie -> its verified session id; (record digest, login time) -> user.
        self._ids_verified: dict[str, tuple[str, str]] = {}
        self._users: dict[tuple[str, float], SAMLUser] = {}

    # -- keys and records ------------------------------------------------------------

    def _session_id(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 256:
            return None
        try:
            session_id = self._ids.loads(cookie)
        except BadData:
            return None
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return None
        return session_id

    def _ttl(self, login_time: float, now: float) -> float:
        ttl = login_time + self.settings.max_age_seconds - now
        idle = self.settings.idle_timeout_seconds
        if idle is not None:
            ttl = min(ttl, idle)
        return max(1.0, ttl)

    def _record(self, user: SAMLUser, login_time: float, now: float) -> dict[str, Any]:
        data = user.to_dict()
        allowed = self.settings.attributes
        if allowed is not None:
            data["attributes"] = {k: v for k, v in data["attributes"].items() if k in allowed}
        return {"u": data, "iat": login_time, "seen": now}

    # -- the backend -------------------------------------------------------------------

    async def load(self, cookie: str | None) -> Session | None:
        known = self._ids_verified.get(cookie or "")
        if known is None:
            session_id = self._session_id(cookie)
            if session_id is None:
                return None
            known = (session_id, _digest(session_id))
            _remember(self._ids_verified, cookie or "", known)
        session_id, digest = known
        key = session_key(digest)
        record = await self.store.get(key)  # every time: a revoked session must end
        if record is None:
            return None
        try:
            login_time = float(record["iat"])
            last_active = float(record["seen"])
            user = self._users.get((digest, login_time))
            if user is None:
                user = SAMLUser.from_dict(record["u"])
                _remember(self._users, (digest, login_time), user)
        except (KeyError, TypeError, ValueError):
            return None
        now = self._clock()
        if self._timeouts.expired(login_time, last_active, now):
            await self.store.delete(key)
            return None
        refresh = self._timeouts.refresh_due(last_active, now)
        return Session(user, session_id, login_time, refresh, last_active)

    async def start(self, user: SAMLUser) -> str:
        session_id = secrets.token_urlsafe(32)
        digest = _digest(session_id)
        now = self._clock()
        # The index first: a session the index does not know could escape Single Logout.
        await self.store.add_member(
            sessions_of_key(user.issuer, user.name_id), digest, self.settings.max_age_seconds
        )
        await self.store.put(session_key(digest), self._record(user, now, now), self._ttl(now, now))
        return _set_cookie(
            self.settings, str(self._ids.dumps(session_id)), self.settings.max_age_seconds
        )

    async def refresh(self, session: Session) -> str | None:
        if session.refresh:
            now = self._clock()
            # `replace`, not `put`: a session revoked meanwhile must stay revoked.
            await self.store.replace(
                session_key(_digest(session.session_id)),
                self._record(session.user, session.login_time, now),
                self._ttl(session.login_time, now),
            )
        return None  # the cookie holds only the id: it never changes

    async def end(self, session: Session) -> None:
        digest = _digest(session.session_id)
        await self.store.delete(session_key(digest))
        await self.store.remove_member(
            sessions_of_key(session.user.issuer, session.user.name_id), digest
        )

    async def revoke(
        self,
        issuer: str,
        name_id: str,
        session_indexes: Collection[str],
        *,
        matches: Callable[[SAMLUser], bool] | None = None,
    ) -> int:
        index = sessions_of_key(issuer, name_id)
        wanted = set(session_indexes)
        ended = 0
        for digest in await self.store.members(index):
            key = session_key(digest)
            record = await self.store.get(key)
            if record is None:  # expired or logged out: just tidy the index
                await self.store.remove_member(index, digest)
                continue
            raw_user = record.get("u")
            user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
            if user.get("name_id") != name_id or (user.get("issuer") or "") != issuer:
                continue
            if wanted and user.get("session_index") not in wanted:
                continue
            if matches is not None and not _user_matches(user, matches):
                continue
            await self.store.delete(key)
            await self.store.remove_member(index, digest)
            ended += 1
        return ended

    def clear_header(self) -> str:
        return _set_cookie(self.settings, "", 0)


def _user_matches(data: dict[str, Any], matches: Callable[[SAMLUser], bool]) -> bool:
    try:
        user = SAMLUser.from_dict(data)
    except (KeyError, TypeError, ValueError):  # a record of another shape: not this user's
        return False
    return matches(user)


def make_sessions(
    settings: SessionSettings,
    secret_key: str,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
) -> CookieSessions | StoreSessions:
    """The backend `session.backend` names."""
    if settings.backend == "store":
        return StoreSessions(settings, secret_key, store, clock=clock)
    return CookieSessions(settings, secret_key, clock=clock)


@dataclass(frozen=True)
class Visit:
    """Who a request is: its session (None: anonymous) and, when its session has
    just ended, the Set-Cookie header value that clears the browser's cookie."""

    session: Session | None
    clear_cookie: str | None = None


class SessionGate:
    """The one answer to "who is this request?": `user_for(request)`.

    The backend's session, judged again by its organization's own (shorter)
    timeouts, and ended at its next request once the organization is disabled
    or gone. `user_now` is the same answer with no coroutine, for the adapters'
    shortcut, when only a cookie needs reading.
    """

    def __init__(
        self,
        backend: SessionBackend,
        tenant_named: Callable[[str], Awaitable[Tenant | None]] | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self._cookie_name = backend.settings.cookie_name
        self._tenant_named = tenant_named
        self._clock = clock
        # The default cookie backend needs no I/O: its sessions are read with a plain
        # call, so a signed-in user's request runs no coroutine for its session.
        self._decode_now = backend.decode if type(backend) is CookieSessions else None

    def user_now(self, cookie: str | None) -> SAMLUser | None:
        """The signed-in user when the cookie alone says so (no organizations, no
        refresh due); None means "ask `user_for`", which then gives the same user."""
        decode = self._decode_now
        if decode is None or self._tenant_named is not None:
            return None
        session = decode(cookie)
        if session is None or session.refresh or session.user.tenant is not None:
            return None
        return session.user

    async def user_for(self, request: HttpRequest) -> Visit:
        """The request's session. Raises `SAMLError` (503) when the store or the
        session's organization cannot be read."""
        cookie = request.cookies.get(self._cookie_name)
        decode = self._decode_now
        session = decode(cookie) if decode is not None else await self.backend.load(cookie)
        if session is None or session.user.tenant is None:
            return Visit(session)
        named = self._tenant_named
        tenant = await named(session.user.tenant) if named is not None else None
        if tenant is not None and tenant.enabled:
            timeouts = Timeouts.of(tenant.settings.session)
            now = self._clock()
            if not timeouts.expired(session.login_time, session.last_active, now):
                if timeouts.refresh_due(session.last_active, now):
                    session = replace(session, refresh=True)
                return Visit(session)
        _engine_log.info(
            "session of organization %s ended: %s",
            session.user.tenant,
            "organization disabled or removed"
            if tenant is None or not tenant.enabled
            else "timeout",
        )
        with contextlib.suppress(StoreUnavailable):
            await self.backend.end(session)
        return Visit(None, self.backend.clear_header())

    async def session_or_none(self, request: HttpRequest) -> Session | None:
        """The request's session; None also when it cannot be read (logged)."""
        try:
            return (await self.user_for(request)).session
        except StoreUnavailable:
            _engine_log.info("session lookup failed on %s: store_unavailable", request.path[:200])
            return None

    async def refreshed_cookie(self, session: Session) -> str | None:
        """Record the activity of a session whose refresh is due; its new cookie, if any."""
        if not session.refresh:
            return None
        try:
            return await self.backend.refresh(session)
        except StoreUnavailable:
            return None  # the session is still valid; its idle clock moves on the next request

    async def end(self, request: HttpRequest) -> Session | None:
        """End the request's session wherever it lives; the browser's cookie is cleared apart.

        With the store down, a server-side session cannot be deleted: the
        browser still forgets it, the record expires with its timeouts, and the
        operator is told.
        """
        session = await self.session_or_none(request)
        if session is None:
            return None
        try:
            await self.backend.end(session)
        except StoreUnavailable:
            _engine_log.error(
                "logout: the server-side session could not be deleted (store unavailable); "
                "it expires with its timeouts"
            )
        return session
