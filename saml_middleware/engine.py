"""The engine: everything the middleware does, with no ASGI or WSGI in sight.

An adapter turns its request into an `HttpRequest` and calls `Engine.handle`,
which answers either `PassThrough` (call the app, with this user in scope and
perhaps a refreshed session cookie) or `Response` (answer the browser directly).

The flow, as a browser sees it (at the default paths: each endpoint's own is
`paths.<endpoint>`, an organization's `tenant_options.paths.<endpoint>`):

* A protected path without a session: a page navigation is sent (303) to
  `{prefix}/login/?next=<the page>`; any other request gets 401 JSON.
* `GET {prefix}/login/`: an AuthnRequest goes to the IdP (HTTP-Redirect, or an
  auto-posted form when the IdP only offers POST). Its ID is a token the SP
  signed (authn_requests.py), so nothing is stored; a short-lived cookie
  binds the login to this browser. RelayState carries the page, signed.
* `POST {prefix}/acs/`: the IdP's Response is verified (protocol.py), the
  assertion ID enters the replay cache, the request is marked used (once),
  the user is mapped and provisioned, a new session cookie is set, and the
  browser goes (303) to the page it first asked for. IdP-initiated responses
  (no InResponseTo) are accepted only when allowed, and land on a safe
  RelayState path or `paths.after_login`.
* `GET {prefix}/metadata/`: the SP metadata to give the IdP.
* `GET|POST {prefix}/logout/`: the local session ends (a POST; GET shows the
  button) and, when the IdP has a Single Logout endpoint, a LogoutRequest
  goes to it (its ID kept in the store, like an AuthnRequest's).
* `GET|POST {prefix}/sls/`: Single Logout Service (slo.py). The IdP's
  LogoutResponse to ours is checked and taken once; an IdP-initiated
  LogoutRequest (signed, for this SLS, recent, used once) ends the sessions of
  its NameID (all of them with server-side sessions, cookie or not) and is
  answered with a LogoutResponse.

Sessions are a signed cookie or, with `session.backend = "store"`, a signed id
in the cookie and the session in the store (session.py). A store that cannot
be reached (Redis down) makes login, the ACS and server-side sessions answer
503; cookie sessions carry on.

Every refusal is a `SAMLError` turned into a 4xx page (or JSON) here, logged
with its code; nothing the browser sends can produce a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from itsdangerous import BadData, URLSafeSerializer

from .authn_requests import (
    OUTSTANDING_REQUEST_TTL,
    LoginBinding,
    RequestToken,
    RequestTokens,
    wrong_browser,
)
from .config import SLUG, Settings, load_settings
from .crypto import XmlSecBackend
from .diagnostics import build_report, expected_from, observe_response, render_report
from .diagnostics.offline import Diagnosis
from .errors import SAMLError
from .identity import (
    ANONYMOUS,
    PROVISION_FAILED,
    SAMLUser,
    build_user,
    call_hook,
    check_required_role,
    resolve_overage,
    same_name_id,
)
from .identity import role_values as identity_role_values
from .pages import auto_post_form, error_page, logout_page, page
from .protocol import (
    NOT_YET,
    Outgoing,
    ResponseEnvelope,
    ServiceProvider,
    VerifiedLogin,
    decode_post_message,
    decode_redirect_message,
    public_error,
)
from .routing import EndpointRoutes, canonical_path, path_spellings, url_in
from .sessions import CookieSessions, Session, SessionBackend, make_sessions
from .slo import (
    MAX_RELAY_STATE,
    STATUS_SUCCESS,
    LogoutRequestMessage,
    LogoutResponseMessage,
    RedirectMessage,
    build_logout_request,
    build_logout_response,
    inspect_logout_request,
    inspect_logout_response,
    read_redirect_query,
    verify_enveloped_signature,
    verify_redirect_signature,
)
from .stores import Store, StoreUnavailable, make_store
from .tenants import Tenant, Tenants
from .urls import split_url

if TYPE_CHECKING:
    from .metadata import IdPMetadata

log = logging.getLogger("saml_middleware.engine")
login_log = logging.getLogger("saml_middleware.login")

# A Single Logout message older than this (by its IssueInstant) is refused; its ID
# is remembered as long (replay), plus twice the clock skew.
LOGOUT_MESSAGE_MAX_AGE = 600
_NO_STORE = ("cache-control", "no-store")
# A page of ours that must not be framed (clickjacking: a sign-out button, Test SSO).
_UNFRAMED_PAGE = [
    ("content-type", "text/html; charset=utf-8"),
    _NO_STORE,
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
]
# Distinct configuration warnings kept per engine (each is logged once).
_MAX_WARNINGS = 32
# Distinct unexpected errors (type, place) whose traceback is logged, per process.
_MAX_ERROR_CAUSES = 256


class UnexpectedErrors:
    """The log of exceptions no check anticipated (bugs), bounded per cause.

    Each one is logged as one line naming its type and the place it was raised;
    the traceback only the first time that (type, place) is seen in the process,
    later ones with their count. One bug that a flood of requests sets off then
    costs one line per request, not a traceback per request.
    """

    def __init__(self, max_causes: int = _MAX_ERROR_CAUSES) -> None:
        self._max_causes = max_causes
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def report(self, exc: BaseException, what: str) -> None:
        """Log `exc`, raised while answering `what` (method and path, say)."""
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        place = _raised_at(exc)
        key = (kind, place)
        with self._lock:
            count = 0  # not counted: too many distinct causes already
            if key in self._counts or len(self._counts) < self._max_causes:
                count = self._counts[key] = self._counts.get(key, 0) + 1
        if count == 1:
            log.error(
                "unexpected error in %s: %s at %s (its traceback is logged this once)",
                what,
                kind,
                place,
                exc_info=exc,
            )
        elif count:
            log.error(
                "unexpected error in %s: %s at %s (%d times in this process; traceback "
                "logged at the first)",
                what,
                kind,
                place,
                count,
            )
        else:
            log.error(
                "unexpected error in %s: %s at %s (too many kinds of errors to log more "
                "tracebacks)",
                what,
                kind,
                place,
            )


def _raised_at(exc: BaseException) -> str:
    """file:line of the frame that raised `exc` (the innermost one)."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = tb.tb_frame.f_code.co_filename.replace("\\", "/").rsplit("/", 2)
    return f"{'/'.join(path[-2:])}:{tb.tb_lineno}"


unexpected_errors = UnexpectedErrors()


@dataclass
class HttpRequest:
    """A framework-neutral request; the body is read only when an endpoint needs it."""

    method: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    cookies: Mapping[str, str] = field(default_factory=dict)
    read_body: Callable[[int], Awaitable[bytes]] | None = None
    # Where the app is mounted (WSGI SCRIPT_NAME, ASGI root_path): `path` is
    # matched below it, and every URL sent to the browser starts with it.
    root_path: str = ""
    scheme: str = ""  # the request's own scheme ("http"/"https"), before any proxy

    def query(self, name: str) -> str | None:
        values = parse_qs(self.query_string, keep_blank_values=True).get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An answer the middleware gives itself."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class PassThrough:
    """Let the app answer, with `user` in scope (and a refreshed cookie, if any)."""

    user: SAMLUser
    set_cookie: str | None = None


Reply = Response | PassThrough
Endpoint = Callable[[HttpRequest, "Tenant | None"], Awaitable[Response]]


class Engine:
    """The middleware's behaviour for one settings dict (see the module docstring)."""

    def __init__(
        self,
        settings: Mapping[str, Any] | Settings,
        *,
        store: Store | None = None,
        sessions: SessionBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = load_settings(settings)
        # The app's own IdP (top-level `idp`), if any, and the organizations, if any.
        self.tenant: Tenant | None = None
        if self.settings.idp is not None:
            self.tenant = Tenant(self.settings, clock=clock)
            self.tenant.metadata.load()
            self.tenant.service_provider_sync()
        self.tenants = Tenants(self.settings, clock) if self.settings.tenants is not None else None
        self.store: Store = store or make_store(self.settings.store)
        self.sessions: SessionBackend = sessions or make_sessions(
            self.settings.session, self.settings.secret_key, self.store, clock=clock
        )
        # The default cookie backend needs no I/O: its sessions are read with a plain
        # call, so a signed-in user's request runs no coroutine for its session.
        self._decode_now = self.sessions.decode if type(self.sessions) is CookieSessions else None
        self._relay = URLSafeSerializer(self.settings.secret_key, salt="saml_middleware.relay")
        self._requests = RequestTokens(self.settings.secret_key)
        self._binding = LoginBinding(self.settings.secret_key, self.settings.session)
        self._clock = clock
        self._endpoints: dict[str, Endpoint] = {
            "login": self.login,
            "acs": self.acs,
            "metadata": self.metadata_endpoint,
            "logout": self.logout,
            "sls": self.sls,
            "test": self.test_sso,
        }
        paths = self.settings.paths
        options = self.settings.tenant_options
        self._routes = EndpointRoutes(
            paths.prefix, paths.endpoints, options.paths if options is not None else {}
        )
        # `paths.protect`/`exempt` as a path's canonical spelling is compared with them.
        self._canonical_protect = tuple(canonical_path(p) for p in paths.protect)
        self._canonical_exempt = tuple(canonical_path(p) for p in paths.exempt)

    @property
    def metadata(self) -> IdPMetadata:
        """The app's own IdP description (the top-level `idp`)."""
        assert self.tenant is not None, "no top-level idp: see engine.tenants"
        return self.tenant.metadata

    def invalidate_tenant(self, slug: str | None = None) -> None:
        """Apply an admin's change to an organization (or to all) at the next request."""
        if self.tenants is not None:
            self.tenants.invalidate(slug)

    # -- dispatch -----------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> Reply:
        """Answer one HTTP request: an endpoint, a login redirect, a 401, or pass through."""
        route = self._route(request.path)
        if route is not None:
            self._check_public_url(request)
            return await self._run_endpoint(route[0], route[1], request)
        try:
            org = None if self.tenants is None else await self._organization_of(request)
        except SAMLError as err:  # which organization, or its rules, unknown: fail closed
            log.info("organization lookup failed for %s: %s", request.path[:200], err.code)
            return self.error_response(err, request)
        try:
            session, clear = await self._session(request)
        except SAMLError as err:
            # Server-side sessions or the session's organization cannot be read: a
            # protected page says "try again" (never a 500, never a login that would
            # fail the same way); an unprotected one is served to an anonymous user.
            log.info("session lookup failed for %s: %s", request.path[:200], err.code)
            if org is None and not self.is_protected(request.path):
                return PassThrough(ANONYMOUS)
            return self.error_response(err, request)
        if org is not None:
            return await self._organization_path(request, org, session, clear)
        if session is not None:
            if not session.refresh:  # the common case: no coroutine to run
                return PassThrough(session.user)
            return PassThrough(session.user, await self._refreshed_cookie(session))
        if not self.is_protected(request.path):
            return PassThrough(ANONYMOUS, clear)
        return self._login_required(request, None, clear)

    def signed_in_user(self, path: str, cookie: str | None) -> SAMLUser | None:
        """The user, when a request needs nothing but its valid cookie session.

        A shortcut for adapters, with no request object and no coroutine: only
        without organizations, off the middleware's own paths, and with no
        refresh due. None means "ask `handle`" (which gives the same answer
        whenever this one gives a user).
        """
        decode = self._decode_now
        if self.tenants is not None or decode is None or self._route(path) is not None:
            return None
        session = decode(cookie)
        if session is None or session.refresh or session.user.tenant is not None:
            return None
        return session.user

    async def _organization_path(
        self, request: HttpRequest, org: Tenant, session: Session | None, clear: str | None
    ) -> Reply:
        """A path of an organization: only its own sessions count there (`strict` says
        whether anonymous requests pass, for the app's own login)."""
        if session is not None and session.user.tenant == org.slug:
            return PassThrough(session.user, await self._refreshed_cookie(session))
        if not org.strict or self._exempt(request.path):
            return PassThrough(ANONYMOUS, clear)
        if not org.enabled:
            return self.error_response(_tenant_disabled(org), request, clear)
        return self._login_required(request, org, clear)

    async def authenticate(self, request: HttpRequest) -> Session | None:
        """The request's session, if its cookie is valid (and, server-side, still there).

        Raises `StoreUnavailable` when server-side sessions cannot be read.
        """
        return (await self._session(request))[0]

    async def _session(self, request: HttpRequest) -> tuple[Session | None, str | None]:
        """The request's session and, when it just ended, the header clearing its cookie.

        An organization's session ends at its next request once the organization
        is disabled or gone, or its own (shorter) timeouts pass. Raises
        `SAMLError` when the store or the organization cannot be read.
        """
        cookie = request.cookies.get(self.settings.session.cookie_name)
        decode = self._decode_now
        session = decode(cookie) if decode is not None else await self.sessions.load(cookie)
        if session is None or session.user.tenant is None:
            return session, None
        org = await self._organization(session.user.tenant)
        if org is not None and org.enabled:
            limits = org.settings.session
            now = self._clock()
            idle = limits.idle_timeout_seconds
            if now - session.login_time <= limits.max_age_seconds and (
                idle is None or now - session.last_active <= idle
            ):
                if idle is not None and now - session.last_active >= max(1, idle // 10):
                    session = replace(session, refresh=True)
                return session, None
        log.info(
            "session of organization %s ended: %s",
            session.user.tenant,
            "organization disabled or removed" if org is None or not org.enabled else "timeout",
        )
        with contextlib.suppress(StoreUnavailable):
            await self.sessions.end(session)
        return None, self.sessions.clear_header()

    async def _organization(self, slug: str | None) -> Tenant | None:
        if slug is None or self.tenants is None:
            return None
        return await self.tenants.get(slug)

    async def _organization_of(self, request: HttpRequest) -> Tenant | None:
        """The organization a (non-endpoint) path belongs to, if any."""
        if self.tenants is None:
            return None
        try:
            slug = self.tenants.resolve(request.path, request.headers.get("host", ""))
        except SAMLError:  # a path or host naming no valid organization: refused
            raise
        except Exception:
            log.exception("tenant_options.resolver failed for %s", request.path[:200])
            raise SAMLError("tenant_unavailable", "This page cannot be served now.", 503) from None
        return await self._organization(slug)

    async def websocket_user(self, request: HttpRequest) -> SAMLUser | None:
        """The user for a websocket handshake, or None when it must be refused."""
        if self._route(request.path) is not None:  # our own paths are not the app's
            return ANONYMOUS
        reply = await self.handle(replace(request, method="GET"))
        return reply.user if isinstance(reply, PassThrough) else None

    def is_protected(self, path: str) -> bool:
        """Whether `path` is under `paths.protect` (organization paths follow `strict`).

        Whatever its spelling: protected when the path as received or its canonical
        form (case, `//`, dot segments, percent-encoding, `;params`) is protected
        and not exempt, so that no spelling a router may serve as a protected view
        passes, and an exempt prefix never opens a way around a protected one.
        """
        paths = self.settings.paths
        if self._route(path) is not None:
            return False
        if _under_any(path, paths.protect) and not _under_any(path, paths.exempt):
            return True
        spellings = path_spellings(path)
        return len(spellings) > 1 and (
            _under_any(spellings[1], self._canonical_protect)
            and not _under_any(spellings[1], self._canonical_exempt)
        )

    def _exempt(self, path: str) -> bool:
        """Whether every spelling of `path` is under `paths.exempt`."""
        spellings = path_spellings(path)
        return _under_any(path, self.settings.paths.exempt) and (
            len(spellings) == 1 or _under_any(spellings[1], self._canonical_exempt)
        )

    def _route(self, path: str) -> tuple[str, str | None] | None:
        """(endpoint name, organization slug or None) for one of the middleware's paths:
        the configured endpoint paths (either slash variant), and anything under the prefix."""
        return self._routes.match(path)

    async def _endpoint_realm(self, name: str, slug: str | None) -> Tenant | None:
        """Whose endpoint this is: the app's own, or an organization's (404 if unknown)."""
        if slug is None:
            if self.tenant is None and name != "logout":
                raise SAMLError(
                    "unknown_tenant", "Sign in from your organization's own sign-in page.", 404
                )
            return self.tenant
        if self.tenants is None or not SLUG.fullmatch(slug):
            raise SAMLError("not_found", "There is no such sign-in page.", 404)
        org = await self.tenants.get(slug)
        if org is None:
            raise SAMLError("unknown_tenant", "There is no such organization.", 404)
        if not org.enabled and name == "login":
            raise _tenant_disabled(org)
        return org

    async def _run_endpoint(self, name: str, slug: str | None, request: HttpRequest) -> Response:
        endpoint = self._endpoints.get(name, self.not_found)
        tenant = None
        try:
            if endpoint != self.not_found:
                tenant = await self._endpoint_realm(name, slug)
            return await endpoint(request, tenant)
        except SAMLError as err:
            # The one record with the real code: the browser may see a coarser one.
            log.warning(
                "refused %s %s: %s (%s)",
                request.method,
                request.path[:200],
                err.code,
                err.reason,
                extra={"saml_error": err.code},
            )
            if endpoint == self.acs:
                login_log.info(
                    "login failed: %s",
                    err.code,
                    extra={
                        "saml_outcome": err.code,
                        "saml_tenant": slug,
                        "saml_issuer": _issuer_or_none(tenant),
                    },
                )
            return self.error_response(err, request)
        except Exception as exc:  # a bug: the last resort, never the way to refuse input
            unexpected_errors.report(exc, f"{request.method} {request.path[:200]}")
            return self.error_response(
                SAMLError("internal_error", "Sign-in could not be completed.", 500), request
            )

    def error_response(
        self, err: SAMLError, request: HttpRequest, set_cookie: str | None = None
    ) -> Response:
        """The one place a refusal becomes an HTTP answer.

        Signature, key, algorithm and decryption refusals all get the same
        answer (`protocol.public_error`): no oracle. The real code is logged.
        """
        err = public_error(err)
        headers = [("x-saml-error", err.code), _NO_STORE]
        if set_cookie is not None:
            headers.append(("set-cookie", set_cookie))
        if err.status == 405:
            headers.append(("allow", "POST"))
        if _wants_json(request):
            body = json.dumps({"error": err.code, "reason": err.reason}).encode()
            return Response(err.status, [("content-type", "application/json"), *headers], body)
        return Response(
            err.status,
            [("content-type", "text/html; charset=utf-8"), *headers],
            error_page(err.status, err.reason, err.code),
        )

    def _login_required(
        self, request: HttpRequest, org: Tenant | None, set_cookie: str | None = None
    ) -> Response:
        root = _mount_path(request.root_path)
        target = root + request.path + (f"?{request.query_string}" if request.query_string else "")
        login_path = (org.settings if org is not None else self.settings).paths.endpoints["login"]
        login_url = f"{_location(root)}{login_path[0]}?next={quote(target, safe='/')}"
        extra = [("set-cookie", set_cookie)] if set_cookie is not None else []
        if request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", ""):
            return Response(303, [("location", login_url), _NO_STORE, *extra])
        body = json.dumps({"error": "authentication_required", "login_url": login_url}).encode()
        return Response(401, [("content-type", "application/json"), _NO_STORE, *extra], body)

    async def _refreshed_cookie(self, session: Session) -> str | None:
        if not session.refresh:
            return None
        try:
            return await self.sessions.refresh(session)
        except StoreUnavailable:
            return None  # the session is still valid; its idle clock moves on the next request

    # -- endpoints ----------------------------------------------------------------

    async def not_found(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        raise SAMLError("not_found", "There is no such sign-in page.", 404)

    def sp_metadata_xml(self) -> str:
        """The SP metadata to give the app's own IdP (entity ID, ACS URL, certificates)."""
        assert self.tenant is not None, "no top-level idp: use sp_metadata_for(slug)"
        return self.tenant.service_provider_sync().metadata_xml()

    async def sp_metadata_for(self, slug: str | None) -> str:
        """The SP metadata of an organization (or, for None, of the app's own IdP).

        Raises `SAMLError` for an unknown organization or one whose IdP cannot be read.
        """
        tenant = await self._endpoint_realm("metadata", slug)
        assert tenant is not None
        return (await tenant.service_provider()).metadata_xml()

    async def metadata_endpoint(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        _require_method(request, "GET", "HEAD")
        assert tenant is not None
        body = (await tenant.service_provider()).metadata_xml().encode("utf-8")
        return Response(
            200, [("content-type", "application/samlmetadata+xml; charset=utf-8")], body
        )

    async def login(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        _require_method(request, "GET", "HEAD")
        assert tenant is not None
        next_url = self.safe_redirect(request.query("next")) or self._home(request, tenant)
        return await self._send_to_idp(request, tenant, next_url, test=False)

    async def test_sso(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        """Test SSO: the login round trip, answered at the ACS by a diagnostics page.

        Works while an organization is disabled (test before enabling). The
        answer creates no session and provisions no one.
        """
        _require_method(request, "GET", "HEAD")
        assert tenant is not None
        return await self._send_to_idp(request, tenant, "", test=True)

    async def _send_to_idp(
        self, request: HttpRequest, tenant: Tenant, next_url: str, *, test: bool
    ) -> Response:
        """An AuthnRequest to the tenant's IdP. Nothing is stored: its ID is a signed
        token (organization, test flag, expiry, nonce), and a cookie binds it to
        this browser."""
        sp = await tenant.service_provider()
        now = self._clock()
        token = self._requests.issue(tenant.slug, test=test, now=now)
        relay_state = self._relay.dumps(next_url)
        outgoing = await asyncio.to_thread(sp.authn_request, relay_state, token.request_id)
        bind = (
            "set-cookie",
            self._binding.started(request.cookies.get(self._binding.cookie_name), token, now),
        )
        if outgoing.form is None:
            return Response(303, [("location", outgoing.url), bind, _NO_STORE])
        return Response(
            200,
            [("content-type", "text/html; charset=utf-8"), bind, _NO_STORE],
            auto_post_form(outgoing.url, outgoing.form),
        )

    def _home(self, request: HttpRequest, tenant: Tenant | None) -> str:
        home = self.settings.paths.after_login
        if tenant is not None and self.settings.tenant_options is not None:
            home = tenant.home(home, self.settings.tenant_options.resolver)
        return _mount_path(request.root_path) + home

    async def acs(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        _require_method(request, "POST")
        assert tenant is not None
        form = await self._read_form(request)
        security = self.settings.security
        xml = decode_post_message(
            _single(form, "SAMLResponse", required=True) or "", security.max_request_bytes
        )
        relay_state = _single(form, "RelayState")
        sp = await tenant.service_provider()

        def outstanding(envelope: ResponseEnvelope) -> Any:
            # Before any cryptography. IdP-initiated, for an enabled tenant, or answering a
            # request of ours for this tenant from this browser: the signatures are checked
            # in the same thread hop. Anything else is decided (or refused) below.
            if not envelope.in_response_to:
                return None if tenant.enabled else NOT_YET
            try:
                token = self._outstanding_request(request, tenant, envelope.in_response_to)
            except SAMLError:
                return NOT_YET
            return token if tenant.enabled and not token.test else NOT_YET

        try:
            checked = await asyncio.to_thread(
                sp.check_response, xml, lookup=outstanding, now=self._clock
            )
        except SAMLError as err:
            if err.status == 400:  # not even a well-formed Response: nothing to diagnose
                raise
            # A Test SSO answer is diagnosed even when it fails this early (an
            # IdP error status, most often): its request ID names it.
            observed = observe_response(xml)
            test_token = self._test_request(
                request, tenant, observed.in_response_to if observed is not None else None
            )
            if test_token is None:
                raise
            return await self._test_report(request, tenant, sp, xml, test_token, None, err)
        envelope, verified = checked.envelope, checked.login
        token = (
            self._outstanding_request(request, tenant, envelope.in_response_to)
            if envelope.in_response_to
            else None
        )
        if token is not None and token.test:
            return await self._test_report(request, tenant, sp, xml, token, envelope, None)
        if not tenant.enabled:
            raise _tenant_disabled(tenant)
        if verified is None:
            verified = await asyncio.to_thread(
                sp.verify_response,
                envelope,
                outstanding_id=envelope.in_response_to if token else None,
                now=self._clock(),
            )
        replay_ttl = max(1.0, verified.expires_at - self._clock())
        if not await self.store.add_if_absent(
            f"assertion:{verified.issuer}:{verified.assertion_id}", replay_ttl
        ):
            raise SAMLError("replay", "This sign-in answer has already been used.")
        if token is not None and not await self._mark_used(token):
            raise SAMLError("wrong_in_response_to", "This sign-in answer was already used.")
        user = await self._mapped_user(tenant, verified)
        check_required_role(user, tenant.settings.roles)
        user = await self._provision(user)
        home = self._home(request, tenant)
        # Ours: the page signed into the RelayState; else (IdP-initiated, or an IdP
        # that did not echo ours) only a path on this site.
        signed_next = self._signed_next(relay_state) if token is not None else None
        next_url = signed_next or _local_path(relay_state) or home
        set_cookie = await self.sessions.start(user)
        login_log.info(
            "login ok",
            extra={
                "saml_outcome": "ok",
                "saml_tenant": user.tenant,
                "saml_issuer": verified.issuer,
                "saml_name_id_hash": _digest(user.name_id),
                "saml_idp_initiated": token is None,
            },
        )
        headers = [("location", _location(next_url)), ("set-cookie", set_cookie), _NO_STORE]
        if token is not None:
            headers.append(("set-cookie", self._binding_finished(request, token)))
        return Response(303, headers)

    def _outstanding_request(
        self, request: HttpRequest, tenant: Tenant, request_id: str
    ) -> RequestToken:
        """The request of ours that a Response answers (InResponseTo), for this tenant,
        started in this browser; refused otherwise. Whether it was already used is
        known only once the answer has passed every other check (`_mark_used`)."""
        token = self._requests.read(request_id, self._clock())
        if token is None:
            raise SAMLError(
                "wrong_in_response_to",
                "This sign-in answer is unknown, expired or already used: please sign in again.",
            )
        if token.tenant != tenant.slug:
            raise SAMLError(
                "wrong_in_response_to",
                "This sign-in answer belongs to another organization's sign-in.",
            )
        cookie = request.cookies.get(self._binding.cookie_name)
        if not self._binding.holds(cookie, token, self._clock()):
            raise wrong_browser()
        return token

    async def _mark_used(self, token: RequestToken) -> bool:
        """Mark the request answered, until it expires; False when it already was."""
        return await self.store.add_if_absent(
            token.used_key, max(1.0, token.expires_at - self._clock())
        )

    def _binding_finished(self, request: HttpRequest, token: RequestToken) -> str:
        cookie = request.cookies.get(self._binding.cookie_name)
        return self._binding.finished(cookie, token, self._clock())

    def _signed_next(self, relay_state: str | None) -> str | None:
        """The page a login of ours started from: the RelayState we signed, if intact."""
        if not relay_state:
            return None
        try:
            next_url = self._relay.loads(relay_state)
        except BadData:
            return None
        return next_url if isinstance(next_url, str) and next_url else None

    async def _mapped_user(self, tenant: Tenant, verified: VerifiedLogin) -> SAMLUser:
        """The user a verified login maps to, under the tenant's attribute and role rules
        (Entra group overage resolved; `roles.require_mapped_role` is the caller's)."""
        settings = tenant.settings
        user = build_user(
            name_id=verified.name_id,
            name_id_format=verified.name_id_format,
            name_id_qualifier=verified.name_id_qualifier,
            sp_name_qualifier=verified.sp_name_qualifier,
            sp_provided_id=verified.sp_provided_id,
            session_index=verified.session_index,
            issuer=verified.issuer,
            attributes=verified.attributes,
            attribute_settings=settings.attributes,
            role_settings=settings.roles,
            tenant=tenant.slug,
        )
        return await resolve_overage(user, settings.roles)

    def _test_request(
        self, request: HttpRequest, tenant: Tenant, request_id: str | None
    ) -> RequestToken | None:
        """This tenant's Test SSO request `request_id`, if it is one (refused when it
        was started in another browser)."""
        if not request_id:
            return None
        token = self._requests.read(request_id, self._clock())
        if token is None or not token.test or token.tenant != tenant.slug:
            return None
        return self._outstanding_request(request, tenant, request_id)

    async def _test_report(
        self,
        request: HttpRequest,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        token: RequestToken,
        envelope: ResponseEnvelope | None,
        error: SAMLError | None,
    ) -> Response:
        """The Test SSO diagnostics page: every check, the claims, the mapped user.

        The test request is marked used first (once, whatever the outcome), so
        the answer, which names it in InResponseTo, can never sign anyone in
        afterwards. No session, no provisioning.
        """
        if not await self._mark_used(token):
            raise SAMLError("wrong_in_response_to", "This test answer was already used.")
        diagnosis = await self._diagnosis(tenant, sp, xml, envelope, error, token.request_id)
        error, report = diagnosis.error, diagnosis.report
        log.info(
            "Test SSO%s: %s",
            f" for organization {tenant.slug}" if tenant.slug else "",
            "passed" if error is None else f"failed ({error.code})",
            extra={"saml_tenant": tenant.slug, "saml_outcome": error.code if error else "ok"},
        )
        return Response(
            200,
            [*_UNFRAMED_PAGE, ("set-cookie", self._binding_finished(request, token))],
            render_report(report),
        )

    async def _diagnosis(
        self,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        envelope: ResponseEnvelope | None,
        error: SAMLError | None,
        request_id: str | None,
    ) -> Diagnosis:
        """Test SSO's verdict: an answer that passed the ACS's earlier steps (`envelope`)
        is verified as the ACS verifies it, its user mapped and the required role checked;
        one refused earlier (`error`) is only described. Nothing is stored or provisioned."""
        user: SAMLUser | None = None
        role_values: tuple[str, ...] = ()
        if envelope is not None and error is None:
            try:
                verified = await asyncio.to_thread(
                    sp.verify_response,
                    envelope,
                    outstanding_id=envelope.in_response_to,
                    now=self._clock(),
                )
                user = await self._mapped_user(tenant, verified)
                role_values = identity_role_values(user.attributes, tenant.settings.roles)
                check_required_role(user, tenant.settings.roles)
            except SAMLError as err:
                error = err
        observed = observe_response(xml)
        report = build_report(
            expected=expected_from(
                tenant.settings,
                sp.idp,
                tenant=tenant.slug,
                tenant_name=tenant.name or None,
                request_id=request_id,
            ),
            observed=observed,
            error=error,
            user=user,
            role_values=role_values,
            now=self._clock(),
        )
        return Diagnosis(report, error, observed)

    async def diagnose(self, saml_response: str, *, request_id: str | None = None) -> Diagnosis:
        """The ACS's verdict and Test SSO's checks on a captured SAMLResponse (the
        Base64 form value), for `saml-middleware diagnose`; judged at the engine's clock.

        The ACS's steps in its order (decoding, structure, the request answered,
        the tenant enabled, verification, mapping, required role), reading and
        writing nothing in the store: no replay mark, no session, no request
        taken. `request_id` stands for the one outstanding request: a Response
        answering another (or any, without it) is refused as the ACS refuses an
        unknown request. The replay check and the provision hook are not run.
        """
        tenant = self.tenant
        assert tenant is not None, "diagnose needs the top-level idp (or one organization's)"
        sp = await tenant.service_provider()
        xml, envelope, error = b"", None, None
        try:
            xml = decode_post_message(saml_response, self.settings.security.max_request_bytes)
            checked = await asyncio.to_thread(sp.check_response, xml, lookup=lambda _e: NOT_YET)
            envelope = checked.envelope
            if envelope.in_response_to and envelope.in_response_to != request_id:
                raise SAMLError(
                    "wrong_in_response_to",
                    "The SAML response answers another request than the outstanding one.",
                )
            if not tenant.enabled:
                raise _tenant_disabled(tenant)
        except SAMLError as err:
            error = err
        return await self._diagnosis(tenant, sp, xml, envelope, error, request_id)

    async def logout(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        """End the local session, by POST only: a link, an image or a prefetch cannot.

        GET (and HEAD) with a session answers a page whose button POSTs here
        (keeping a safe `next`); without one, it just goes to `next`. A POST
        from another site (Sec-Fetch-Site: cross-site, or an Origin that is not
        base_url's nor an allowed host's) is refused: 403 `csrf`.
        """
        _require_method(request, "GET", "HEAD", "POST")
        home = _mount_path(request.root_path) + self.settings.paths.after_logout
        safe_next = self.safe_redirect(request.query("next"))
        next_url = safe_next or home
        if request.method != "POST":
            if await self._session_or_none(request) is None:  # nothing to end
                return Response(303, [("location", _location(next_url)), _NO_STORE])
            own = tenant.settings if tenant is not None else self.settings
            action = f"{_mount_path(request.root_path)}{own.paths.endpoints['logout'][0]}"
            if safe_next:
                action += f"?next={quote(safe_next, safe='/')}"
            return Response(
                200,
                _UNFRAMED_PAGE,
                logout_page(action),
            )
        origin = request.headers.get("origin")
        if origin is not None:  # "null" and other non-origins count as foreign
            parts = split_url(origin.strip())
            origin = (_origin(parts.scheme, parts.netloc) if parts else None) or ""
        if request.headers.get("sec-fetch-site") == "cross-site" or (
            origin is not None and not self._origin_allowed(origin)
        ):
            raise SAMLError("csrf", "Sign out from this site's own pages.", 403)
        session = await self._end_session(request)
        headers = [("set-cookie", self.sessions.clear_header()), _NO_STORE]
        if session is not None:
            outgoing = await self._single_logout(session, next_url, tenant)
            if outgoing is not None:
                return _outgoing_response(outgoing, headers)
        return Response(303, [("location", _location(next_url)), *headers])

    async def _single_logout(
        self, session: Session, next_url: str, tenant: Tenant | None
    ) -> Outgoing | None:
        """SP-initiated Single Logout: the LogoutRequest for the IdP, or None (local only).

        The user's own IdP (the app's, or their organization's) is asked. Local
        only when it has no Single Logout Service, when the user signed in at
        another IdP (metadata changed since), when the organization cannot be
        read, or when the store cannot keep the request (the user is signed out
        here all the same).
        """
        user = session.user
        if user.tenant is not None:
            try:
                tenant = await self._organization(user.tenant)
            except SAMLError:
                tenant = None
        else:
            tenant = self.tenant
        if tenant is None:
            return None
        try:
            sp = await tenant.service_provider()
        except SAMLError:
            return None
        if user.issuer != sp.idp.entity_id:
            return None
        try:
            built = await asyncio.to_thread(
                build_logout_request,
                sp,
                name_id=user.name_id,
                name_id_format=user.name_id_format,
                session_index=user.session_index,
                lifetime_seconds=OUTSTANDING_REQUEST_TTL,
                name_qualifier=user.name_id_qualifier,
                sp_name_qualifier=user.sp_name_qualifier,
                sp_provided_id=user.sp_provided_id,
            )
        except Exception:  # pysaml2 or a key that cannot sign: never a 500 at sign-out
            log.exception("single logout skipped: the LogoutRequest could not be built")
            return None
        if built is None:
            return None
        request_id, outgoing = built
        try:
            await self.store.put(
                f"logout:{request_id}",
                {"next": next_url, **({"tenant": tenant.slug} if tenant.slug else {})},
                OUTSTANDING_REQUEST_TTL,
            )
        except StoreUnavailable:
            log.warning("single logout skipped: the store is unavailable; signed out locally")
            return None
        return outgoing

    async def sls(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        """Single Logout Service: the IdP's LogoutRequest, or its LogoutResponse to ours.

        HTTP-Redirect (GET, the signature over the raw query) or HTTP-POST (an
        enveloped signature). Either must come from the IdP, signed (unless
        `security.want_logout_signed` is false), addressed to this SLS, recent.
        """
        _require_method(request, "GET", "POST")
        limit = self.settings.security.max_request_bytes
        query: RedirectMessage | None = None
        if request.method == "GET":
            if len(request.query_string) > 2 * limit:
                raise SAMLError("too_large", "The sign-out message is too large.", 413)
            query = read_redirect_query(request.query_string)
            kind, relay_state = query.kind, query.relay_state
            xml = decode_redirect_message(query.encoded, limit)
        else:
            form = await self._read_form(request)
            kinds = [k for k in ("SAMLRequest", "SAMLResponse") if k in form]
            if len(kinds) != 1:
                raise SAMLError(
                    "malformed", "The sign-out form needs one SAMLRequest or SAMLResponse.", 400
                )
            kind = kinds[0]
            xml = decode_post_message(_single(form, kind, required=True) or "", limit)
            relay_state = _single(form, "RelayState")
            if relay_state is not None and len(relay_state) > MAX_RELAY_STATE:
                raise SAMLError("malformed", "The sign-out message's RelayState is too long.", 400)
        assert tenant is not None
        sp = await tenant.service_provider()
        if kind == "SAMLRequest":
            return await self._logout_requested(request, tenant, sp, xml, query, relay_state)
        return await self._logout_answered(request, tenant, sp, xml, query)

    async def _logout_requested(
        self,
        request: HttpRequest,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        query: RedirectMessage | None,
        relay_state: str | None,
    ) -> Response:
        """IdP-initiated logout: end the NameID's sessions (all, or those of its
        SessionIndexes), then answer the IdP with a LogoutResponse."""
        message = await asyncio.to_thread(inspect_logout_request, xml)
        await self._check_logout_message(tenant, sp, message, query)
        skew = self.settings.security.clock_skew_seconds
        if message.not_on_or_after is not None and self._clock() - skew >= message.not_on_or_after:
            raise SAMLError("expired", "This sign-out request has expired.")
        if not await self.store.add_if_absent(
            f"logout-request:{sp.idp.entity_id}:{message.id}", LOGOUT_MESSAGE_MAX_AGE + 2 * skew
        ):
            raise SAMLError("replay", "This sign-out request has already been used.")
        own = await self._session_or_none(request)  # before revoke, which may end it
        ended = await self.sessions.revoke(
            sp.idp.entity_id,
            message.name_id,
            message.session_indexes,
            matches=lambda user: _same_name_id(user, tenant, sp.idp.entity_id, message),
        )
        headers = [_NO_STORE]
        if own is not None and _is_subject(own.user, tenant, sp.idp.entity_id, message):
            with contextlib.suppress(StoreUnavailable):  # revoke just used the store
                await self.sessions.end(own)
            headers.append(("set-cookie", self.sessions.clear_header()))
        log.info(
            "single logout requested by the IdP: %d server-side session(s) ended, "
            "this browser's session %s",
            ended,
            "ended" if len(headers) > 1 else "not concerned",
            extra={"saml_name_id_hash": _digest(message.name_id)},
        )
        try:
            outgoing = await asyncio.to_thread(
                build_logout_response,
                sp,
                in_response_to=message.id,
                binding="redirect" if query is not None else "post",
                relay_state=relay_state,
            )
        except Exception:  # the sessions are ended: a failed answer must not hide that
            log.exception("the LogoutResponse to the IdP could not be built")
            outgoing = None
        if outgoing is None:  # nowhere (or nothing) to answer: say so to the browser
            return Response(
                200,
                [("content-type", "text/html; charset=utf-8"), *headers],
                page("Signed out", "<h1>Signed out</h1><p>You are signed out of this site.</p>"),
            )
        return _outgoing_response(outgoing, headers)

    async def _logout_answered(
        self,
        request: HttpRequest,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        query: RedirectMessage | None,
    ) -> Response:
        """The IdP's LogoutResponse to our LogoutRequest: taken once, then on to `next`.

        The local session ended when the user signed out; an unknown, replayed
        or failed answer does not change that (its cookie is cleared again).
        """
        message = await asyncio.to_thread(inspect_logout_response, xml)
        await self._check_logout_message(tenant, sp, message, query)
        record = None
        if message.in_response_to:
            record = await self.store.pop(f"logout:{message.in_response_to}")
        if record is None or record.get("tenant") != tenant.slug:
            raise SAMLError(
                "wrong_in_response_to",
                "This sign-out answer is unknown, expired or already used. "
                "You are signed out of this site.",
            )
        clear = ("set-cookie", self.sessions.clear_header())
        if message.status != STATUS_SUCCESS:
            log.warning(
                "the IdP answered our LogoutRequest with status %s: the user is signed out "
                "here, maybe not at the IdP",
                message.status_name,
            )
            body = (
                "<h1>Signed out of this site</h1><p>You are signed out of this site, but the "
                "identity provider could not sign you out everywhere (status: "
                f"<code>{escape(message.status_name)}</code>). Close the browser to end "
                "your other sessions.</p>"
            )
            return Response(
                200,
                [("content-type", "text/html; charset=utf-8"), clear, _NO_STORE],
                page("Signed out", body),
            )
        home = _mount_path(request.root_path) + self.settings.paths.after_logout
        next_url = str(record.get("next") or home)
        return Response(303, [("location", _location(next_url)), clear, _NO_STORE])

    async def _check_logout_message(
        self,
        tenant: Tenant,
        sp: ServiceProvider,
        message: LogoutRequestMessage | LogoutResponseMessage,
        query: RedirectMessage | None,
    ) -> None:
        """From our IdP, signed by a key in its metadata, for this SLS, recent
        (docs/security.md, row W7)."""
        security = self.settings.security
        idp = sp.idp
        if message.issuer != idp.entity_id:
            raise SAMLError("wrong_issuer", "The sign-out message comes from an unexpected issuer.")
        signed = True
        if query is not None and query.signature is not None:
            await asyncio.to_thread(
                verify_redirect_signature,
                query,
                idp.signing_certs,
                reject_sha1=security.reject_sha1,
            )
        elif message.enveloped_signature:
            await asyncio.to_thread(
                verify_enveloped_signature, self._xml_verifier, message, idp.signing_certs
            )
        elif security.want_logout_signed:
            raise SAMLError("signature_required", "The sign-out message is not signed.")
        else:
            signed = False
        sls_url = tenant.settings.endpoint_url("sls")
        if not url_in(message.destination, (sls_url,)) and (
            signed or message.destination is not None
        ):
            raise SAMLError(
                "wrong_destination", "The sign-out message was sent to another address."
            )
        now, skew = self._clock(), security.clock_skew_seconds
        if message.issue_instant > now + skew:
            raise SAMLError("not_yet_valid", "The sign-out message was issued in the future.")
        if message.issue_instant < now - skew - LOGOUT_MESSAGE_MAX_AGE:
            raise SAMLError("expired", "The sign-out message is too old.")

    @cached_property
    def _xml_verifier(self) -> XmlSecBackend:
        return XmlSecBackend(reject_sha1=self.settings.security.reject_sha1)

    # -- helpers ------------------------------------------------------------------

    async def _session_or_none(self, request: HttpRequest) -> Session | None:
        """The request's session; None also when the store cannot be read (logged)."""
        try:
            return await self.authenticate(request)
        except StoreUnavailable:
            log.info("session lookup failed on %s: store_unavailable", request.path[:200])
            return None

    async def _end_session(self, request: HttpRequest) -> Session | None:
        """End the request's session wherever it lives; the browser's cookie is cleared apart.

        With the store down, a server-side session cannot be deleted: the
        browser still forgets it, the record expires with its timeouts, and the
        operator is told.
        """
        session = await self._session_or_none(request)
        if session is None:
            return None
        try:
            await self.sessions.end(session)
        except StoreUnavailable:
            log.error(
                "logout: the server-side session could not be deleted (store unavailable); "
                "it expires with its timeouts"
            )
        return session

    async def _provision(self, user: SAMLUser) -> SAMLUser:
        """Run the JIT `provision` hook once for a login that passed every check.

        `AccessDenied` (any `SAMLError`) from the hook is the refusal it names.
        Anything else is the app's failure, not the user's: the traceback goes
        to the operator's log and the browser gets 503 "try again" (the cause is
        usually transient: a database or directory that is down), never a 500
        page. A signing-in user retries by signing in again (a new assertion).
        """
        hook = self.settings.provision
        if hook is None:
            return user
        try:
            result = await call_hook(hook, user)
        except SAMLError:
            raise
        except Exception:
            log.exception("the provision hook failed")
            raise SAMLError("provision_failed", PROVISION_FAILED, 503) from None
        if not isinstance(result, SAMLUser) or not result.is_authenticated:
            log.error(
                "the provision hook returned %s, not a signed-in SAMLUser (use "
                "dataclasses.replace(user, ...))",
                type(result).__name__,
            )
            raise SAMLError("provision_failed", PROVISION_FAILED, 503)
        return result

    async def _read_form(self, request: HttpRequest) -> dict[str, list[str]]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise SAMLError("malformed", "The sign-in answer must be a submitted form.", 400)
        limit = self.settings.security.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise SAMLError("too_large", "The sign-in answer is too large.", 413)
        if request.read_body is None:
            raise SAMLError("malformed", "The sign-in answer is empty.", 400)
        body = await request.read_body(limit)
        if len(body) > limit:
            raise SAMLError("too_large", "The sign-in answer is too large.", 413)
        try:
            return parse_qs(
                body.decode("ascii"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=16,
            )
        except (UnicodeDecodeError, ValueError):
            raise SAMLError("malformed", "The sign-in answer is not a valid form.", 400) from None

    def safe_redirect(self, target: str | None) -> str | None:
        """`target` if it is a same-origin path or an allowed host's URL, else None."""
        if not target or len(target) > 2048:
            return None
        if any(ord(c) < 0x20 or c == "\\" for c in target):
            return None
        if _local_path(target):
            return target
        parts = split_url(target)
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        base = urlsplit(self.settings.base_url)
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return target
        if parts.hostname.lower() in self.settings.security.allowed_redirect_hosts:
            return target
        return None

    # -- the public URL: diagnostics only -----------------------------------------

    def public_origin(self, request: HttpRequest) -> str | None:
        """The origin (scheme://host) the browser used, or None when it is not known.

        Behind a proxy the request's own scheme and Host are the proxy's, so they
        count only with `security.trust_forwarded_headers`; then X-Forwarded-Proto
        and X-Forwarded-Host (their last value: the one the nearest proxy added)
        replace them, but only when they name base_url's origin or a host in
        `allowed_redirect_hosts`: anything else is ignored, and logged. The result
        feeds the operator's warnings, never a decision: base_url alone makes the
        ACS URL that a Response's Destination and Recipient must match.
        """
        if not self.settings.security.trust_forwarded_headers:
            return None
        own_host = request.headers.get("host", "")
        proto = _last_value(request.headers.get("x-forwarded-proto"))
        host = _last_value(request.headers.get("x-forwarded-host"))
        if not proto and not host:
            return _origin(request.scheme, own_host)
        forwarded = _origin(proto or request.scheme, host or own_host)
        if forwarded is not None and self._origin_allowed(forwarded):
            return forwarded
        self._warn_once(
            f"forwarded:{proto}:{host}",
            "ignored X-Forwarded-Proto %r / X-Forwarded-Host %r: %s is neither base_url's "
            "origin nor on a host in security.allowed_redirect_hosts",
            proto[:100],
            host[:100],
            (forwarded or "that")[:200],
        )
        return None

    def _origin_allowed(self, origin: str) -> bool:
        if origin == _base_origin(self.settings.base_url) or self._organization_origin(origin):
            return True
        parts = split_url(origin)
        hostname = (parts.hostname if parts else None) or ""
        return hostname in self.settings.security.allowed_redirect_hosts

    def _check_public_url(self, request: HttpRequest) -> None:
        """Warn (once) when the browser reached us elsewhere than base_url says."""
        base_path = urlsplit(self.settings.base_url).path.rstrip("/")
        root = _mount_path(request.root_path)
        if root != base_path:
            self._warn_once(
                f"mount:{root}",
                "the app is mounted at %r (WSGI SCRIPT_NAME / ASGI root_path) but base_url's "
                "path is %r: the browser is sent to the mount path, the IdP to base_url; "
                "make them agree (e.g. uvicorn --root-path, or SCRIPT_NAME for WSGI)",
                root[:200],
                base_path,
            )
        origin = self.public_origin(request)
        base_origin = _base_origin(self.settings.base_url)
        if origin is not None and origin != base_origin and not self._organization_origin(origin):
            self._warn_once(
                f"origin:{origin}",
                "a request reached %s, but base_url says %s: the IdP sends users back to "
                "base_url, so they sign in there, not here",
                origin[:200],
                base_origin,
            )

    def _organization_origin(self, origin: str) -> bool:
        """Whether `origin` is an organization's own (`tenant_options.base_url`)."""
        options = self.settings.tenant_options
        if options is None or options.base_url is None:
            return False
        template = _base_origin(options.base_url.replace("{slug}", "x-slug-x"))
        head, _, tail = template.partition("x-slug-x")
        if not (origin.startswith(head) and origin.endswith(tail)):
            return False
        return bool(SLUG.fullmatch(origin[len(head) : len(origin) - len(tail)]))

    @cached_property
    def _warned(self) -> set[str]:
        return set()

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        # Bounded: a client varying forged headers cannot grow it or flood the log.
        if key in self._warned:
            return
        if len(self._warned) >= _MAX_WARNINGS:
            log.debug(message, *args)
            return
        self._warned.add(key)
        log.warning(message, *args)


def _is_subject(user: SAMLUser, tenant: Tenant, issuer: str, message: LogoutRequestMessage) -> bool:
    """Whether a LogoutRequest names this user's session (its SessionIndex, if it names any)."""
    if user.name_id != message.name_id or (user.issuer or "") != issuer:
        return False
    if user.tenant != tenant.slug or not _same_name_id(user, tenant, issuer, message):
        return False
    return not message.session_indexes or user.session_index in message.session_indexes


def _same_name_id(
    user: SAMLUser, tenant: Tenant, issuer: str, message: LogoutRequestMessage
) -> bool:
    """The LogoutRequest's NameID qualifiers are the user's (Format, NameQualifier, ...)."""
    return same_name_id(
        user,
        name_id_format=message.name_id_format,
        name_qualifier=message.name_qualifier,
        sp_name_qualifier=message.sp_name_qualifier,
        sp_provided_id=message.sp_provided_id,
        idp_entity_id=issuer,
        sp_entity_id=tenant.settings.sp.entity_id,
    )


def _tenant_disabled(org: Tenant) -> SAMLError:
    return SAMLError(
        "tenant_disabled",
        f"Single sign-on is switched off for {org.name}: sign in another way, or ask "
        "its administrator.",
        403,
    )


def _issuer_or_none(tenant: Tenant | None) -> str | None:
    if tenant is None or tenant.metadata.version == 0:
        return None
    return tenant.metadata.current().entity_id


def _outgoing_response(outgoing: Outgoing, headers: list[tuple[str, str]]) -> Response:
    """A message on its way to the IdP: a redirect, or the auto-posted form."""
    if outgoing.form is None:
        return Response(303, [("location", outgoing.url), *headers])
    return Response(
        200,
        [("content-type", "text/html; charset=utf-8"), *headers],
        auto_post_form(outgoing.url, outgoing.form),
    )


def _mount_path(root_path: str) -> str:
    """The mount path without its trailing slash; "" unless it is a plain local path."""
    root = root_path.rstrip("/")
    if not root:
        return ""
    if _local_path(root) != root or "?" in root or "#" in root or len(root) > 1024:
        log.warning("ignored a mount path (SCRIPT_NAME / root_path) that is not a plain path")
        return ""
    return root


def _location(url: str) -> str:
    """`url` safe for a Location header: spaces and non-ASCII characters percent-encoded."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


_HOST_PORT = re.compile(
    r"(?P<name>[a-z0-9](?:[a-z0-9.\-]{0,251}[a-z0-9])?|\[[0-9a-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)


def _origin(scheme: str, host: str) -> str | None:
    """A normalized origin ("https://host[:port]"), or None when either part is not valid."""
    scheme = scheme.strip().lower()
    match = _HOST_PORT.fullmatch(host.strip().lower())
    if scheme not in ("http", "https") or match is None:
        return None
    name, port = match.group("name"), match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    if port is None or int(port) == (443 if scheme == "https" else 80):
        return f"{scheme}://{name}"
    return f"{scheme}://{name}:{int(port)}"


def _base_origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return _origin(parts.scheme, parts.netloc) or f"{parts.scheme}://{parts.netloc}"


def _last_value(header: str | None) -> str:
    """The last of a comma-separated header's values: the one the nearest proxy set."""
    return (header or "").rsplit(",", 1)[-1].strip()


def _local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site ("/x?y"), never "//host" or a URL."""
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    if target.startswith("//") or any(ord(c) < 0x20 or c == "\\" for c in target):
        return None
    parts = split_url(target)
    return target if parts and not parts.scheme and not parts.netloc else None


def _under_any(path: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if not base or path == base or path.startswith(base + "/"):
            return True
    return False


def _require_method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise SAMLError("method_not_allowed", f"Use {' or '.join(allowed)} here.", 405)


def _single(form: Mapping[str, list[str]], name: str, *, required: bool = False) -> str | None:
    values = form.get(name, [])
    if len(values) > 1:
        raise SAMLError("malformed", f"The form repeats {name}.", 400)
    if required and not values:
        raise SAMLError("malformed", f"The form has no {name}.", 400)
    return values[0] if values else None


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
