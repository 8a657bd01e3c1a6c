"""Outstanding AuthnRequests without server-side state, bound to the browser.

The ID of an AuthnRequest is itself a token the SP signed: its expiry, the
organization it is for, whether it is a Test SSO, and a random nonce. The ACS
reads it back from the Response's InResponseTo before any cryptography, so a
login page visit writes nothing to the store (an anonymous flood cannot fill
it); only an answer that passed every check marks its request used (once, in
the store, until the token expires).

The browser that started the login carries a short-lived signed cookie that
names the nonces of its logins in progress (one per tab, a few at most). The
ACS accepts a solicited answer only from a browser that carries its nonce:
an attacker's own solicited Response posted from a victim's browser (login
CSRF) is refused. The IdP's POST to the ACS is cross-site, so the cookie is
`SameSite=None; Secure`; with `session.https_only = false` (plain-http
development) it is `SameSite=Lax` without Secure, which browsers send on that
POST only when the IdP is on the same site (the development IdP on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from .config import SessionSettings
from .errors import SAMLError

# How long a user may spend at the IdP (MFA included) before the request expires.
OUTSTANDING_REQUEST_TTL = 900
# Logins one browser may have in progress at once (tabs); the oldest goes first.
MAX_PENDING_LOGINS = 8
# An xs:ID (NCName) is at most this long here; the tokens are far shorter.
_MAX_REQUEST_ID = 256
# xs:ID must start with a letter or "_" (Entra refuses a leading digit);
# the serializer's alphabet (base64url and ".") is all NCName characters.
_ID_PREFIX = "_"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class RequestToken:
    """What an AuthnRequest ID says, once its signature has been checked."""

    request_id: str
    nonce: str
    tenant: str | None
    test: bool
    expires_at: int


class RequestTokens:
    """Issues and reads the signed AuthnRequest IDs."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(
            secret_key,
            salt="saml_middleware.authn-request",
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def issue(self, tenant: str | None, *, test: bool, now: float) -> RequestToken:
        nonce = secrets.token_urlsafe(_NONCE_BYTES)
        expires_at = int(now) + OUTSTANDING_REQUEST_TTL
        payload = [expires_at, tenant or "", 1 if test else 0, nonce]
        request_id = _ID_PREFIX + str(self._serializer.dumps(payload))
        return RequestToken(request_id, nonce, tenant, test, expires_at)

    def read(self, request_id: str, now: float) -> RequestToken | None:
        """The token, or None when it is not one of ours, is malformed or has expired."""
        if len(request_id) > _MAX_REQUEST_ID or not request_id.startswith(_ID_PREFIX):
            return None
        try:
            payload = self._serializer.loads(request_id[len(_ID_PREFIX) :])
        except BadData:
            return None
        if not (isinstance(payload, list) and len(payload) == 4):
            return None
        expires_at, tenant, test, nonce = payload
        if not (
            isinstance(expires_at, int)
            and isinstance(tenant, str)
            and test in (0, 1)
            and isinstance(nonce, str)
        ):
            return None
        if expires_at <= now:
            return None
        return RequestToken(request_id, nonce, tenant or None, bool(test), expires_at)


def wrong_browser() -> SAMLError:
    return SAMLError(
        "wrong_browser",
        "This sign-in was started in another browser: start the sign-in again from this browser.",
        403,
    )


class LoginBinding:
    """The cookie naming the logins (nonces) a browser started, each with its expiry."""

    def __init__(self, secret_key: str, session: SessionSettings) -> None:
        self.cookie_name = f"{session.cookie_name}_login"
        self._secure = session.https_only
        self._serializer = URLSafeSerializer(secret_key, salt="saml_middleware.login-binding")

    def _pending(self, cookie: str | None, now: float) -> list[tuple[str, int]]:
        if not cookie or len(cookie) > 2048:
            return []
        try:
            entries = self._serializer.loads(cookie)
        except BadData:
            return []
        if not isinstance(entries, list):
            return []
        return [
            (entry[0], entry[1])
            for entry in entries[-MAX_PENDING_LOGINS:]
            if isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and entry[1] > now
        ]

    def holds(self, cookie: str | None, token: RequestToken, now: float) -> bool:
        """Whether this browser started the login `token` names."""
        return any(nonce == token.nonce for nonce, _ in self._pending(cookie, now))

    def started(self, cookie: str | None, token: RequestToken, now: float) -> str:
        """The Set-Cookie header adding `token`'s login (the oldest dropped beyond the bound)."""
        pending = [*self._pending(cookie, now), (token.nonce, token.expires_at)]
        return self._header(pending[-MAX_PENDING_LOGINS:], now)

    def finished(self, cookie: str | None, token: RequestToken, now: float) -> str:
        """The Set-Cookie header without `token`'s login (deleting the cookie when empty)."""
        pending = [entry for entry in self._pending(cookie, now) if entry[0] != token.nonce]
        return self._header(pending, now)

    def _header(self, pending: list[tuple[str, int]], now: float) -> str:
        value = str(self._serializer.dumps([list(entry) for entry in pending])) if pending else ""
        max_age = max(int(expires - now) for _, expires in pending) if pending else 0
        # The IdP's POST is cross-site: only SameSite=None (which needs Secure) is sent with it.
        same_site = "SameSite=None; Secure" if self._secure else "SameSite=Lax"
        return f"{self.cookie_name}={value}; Path=/; Max-Age={max_age}; HttpOnly; {same_site}"
