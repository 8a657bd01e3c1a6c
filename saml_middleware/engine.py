"""The engine: everything the middleware does, with no ASGI or WSGI in sight.

An adapter (asgi.py, wsgi.py) turns its request into an `HttpRequest` (http.py)
and calls `Engine.handle`, which answers `PassThrough` (call the app, with this
user, perhaps with a refreshed session cookie) or `Response` (answer directly).
A request is one of the middleware's endpoints (the route table below, at
`paths.<endpoint>`; an organization's at `tenant_options.paths.<endpoint>`) or
a path of the app, where `SessionGate.user_for` (sessions.py) says who it is:

* a protected path without a session: a page navigation goes (303) to
  `login/?next=<the page>`, anything else gets 401 JSON;
* `login/`, `acs/`, `test/`: signing in (login.py): an AuthnRequest whose ID is
  a signed token, then at the ACS: verify -> take the request -> refuse replay
  -> map the user -> provision -> open the session; Test SSO reports instead;
* `logout/`, `sls/`: signing out (logout.py): the local session, SP-initiated
  Single Logout, and the IdP's LogoutRequests and LogoutResponses;
* `metadata/`: the SP metadata to give the IdP.

Whose endpoint or path it is, the app's own IdP or an organization's, is a
`Tenant` (tenants.py); what must outlive a request (used requests, replay
marks, logout requests) is kept in the store under state.py's keys; the app's
hooks are called under hooks.py's one failure policy. A store that cannot be
reached (Redis down) makes sign-in and server-side sessions answer 503;
cookie sessions carry on. Every refusal is a `SAMLError` that
`http.error_response` turns into a 4xx page (or JSON), logged with its code:
nothing the browser sends can produce a stack trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .config import SLUG, Settings, load_settings
from .diagnostics.offline import Diagnosis
from .errors import SAMLError
from .hooks import run_sync_hook
from .http import (
    HttpRequest,
    PassThrough,
    Reply,
    Response,
    Site,
    error_response,
    login_required,
    require_method,
)
from .identity import ANONYMOUS, SAMLUser
from .login import Login, login_log
from .logout import Logout
from .routing import EndpointRoutes, canonical_path, path_spellings
from .sessions import SessionBackend, SessionGate, Visit, make_sessions
from .state import FlowState
from .stores import Store, make_store
from .tenants import Tenant, Tenants, tenant_disabled

if TYPE_CHECKING:
    from .metadata import IdPMetadata

log = logging.getLogger("saml_middleware.engine")

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


@dataclass(frozen=True)
class Endpoint:
    """One of the middleware's endpoints: what serves it, and its policy."""

    # (request, tenant) -> Response; the tenant is None only for a `tenantless` one.
    serve: Callable[[HttpRequest, Any], Awaitable[Response]]
    # Served at the top-level path without a top-level idp (sign-out always works).
    tenantless: bool = False
    # Refused (403) for a disabled organization (Test SSO is not: test before enabling).
    refused_when_disabled: bool = False
    # Its refusals are login outcomes too (the `saml_middleware.login` record).
    login_outcome: bool = False


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
        self.gate = SessionGate(
            self.sessions, self._tenant_named if self.tenants is not None else None, clock=clock
        )
        self.site = Site(self.settings)
        state = FlowState(self.store, clock)
        self.login = Login(self.settings, state, self.sessions, self.site, clock)
        self.logout = Logout(self.settings, state, self.gate, self.site, self._tenant_of, clock)
        self._endpoints: dict[str, Endpoint] = {
            "login": Endpoint(self.login.start, refused_when_disabled=True),
            "acs": Endpoint(self.login.finish, login_outcome=True),
            "test": Endpoint(self.login.test.start),
            "metadata": Endpoint(self._metadata),
            "logout": Endpoint(self.logout.local, tenantless=True),
            "sls": Endpoint(self.logout.sls),
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
        route = self._routes.match(request.path)
        if route is not None:
            self.site.check_public_url(request)
            return await self._serve(route[0], route[1], request)
        try:
            tenant = None if self.tenants is None else await self._tenant_of_path(request)
        except SAMLError as err:  # which organization, or its rules, unknown: fail closed
            log.info("organization lookup failed for %s: %s", request.path[:200], err.code)
            return error_response(err, request)
        try:
            visit = await self.gate.user_for(request)
        except SAMLError as err:
            # Server-side sessions or the session's organization cannot be read: a
            # protected page says "try again" (never a 500, never a login that would
            # fail the same way); an unprotected one is served to an anonymous user.
            log.info("session lookup failed for %s: %s", request.path[:200], err.code)
            if tenant is None and not self.is_protected(request.path):
                return PassThrough(ANONYMOUS)
            return error_response(err, request)
        if tenant is not None:
            return await self._tenant_path(request, tenant, visit)
        session = visit.session
        if session is not None:
            if not session.refresh:  # the common case: no coroutine to run
                return PassThrough(session.user)
            return PassThrough(session.user, await self.gate.refreshed_cookie(session))
        if not self.is_protected(request.path):
            return PassThrough(ANONYMOUS, visit.clear_cookie)
        login_path = self.settings.paths.endpoints["login"][0]
        return login_required(request, login_path, visit.clear_cookie)

    def signed_in_user(self, path: str, cookie: str | None) -> SAMLUser | None:
        """The user, when a request needs nothing but its valid cookie session.

        A shortcut for adapters, with no request object and no coroutine: off
        the middleware's own paths, `SessionGate.user_now`. None means "ask
        `handle`" (which gives the same answer whenever this one gives a user).
        """
        if self._routes.match(path) is not None:
            return None
        return self.gate.user_now(cookie)

    async def websocket_user(self, request: HttpRequest) -> SAMLUser | None:
        """The user for a websocket handshake, or None when it must be refused."""
        if self._routes.match(request.path) is not None:  # our own paths are not the app's
            return ANONYMOUS
        reply = await self.handle(replace(request, method="GET"))
        return reply.user if isinstance(reply, PassThrough) else None

    async def _tenant_path(self, request: HttpRequest, tenant: Tenant, visit: Visit) -> Reply:
        """A path of an organization: only its own sessions count there (`strict` says
        whether anonymous requests pass, for the app's own login)."""
        session = visit.session
        if session is not None and session.user.tenant == tenant.slug:
            return PassThrough(session.user, await self.gate.refreshed_cookie(session))
        if not tenant.strict or self._exempt(request.path):
            return PassThrough(ANONYMOUS, visit.clear_cookie)
        if not tenant.enabled:
            return error_response(tenant_disabled(tenant), request, visit.clear_cookie)
        login_path = tenant.settings.paths.endpoints["login"][0]
        return login_required(request, login_path, visit.clear_cookie)

    def is_protected(self, path: str) -> bool:
        """Whether `path` is under `paths.protect` (organization paths follow `strict`).

        Whatever its spelling: protected when the path as received or its canonical
        form (case, `//`, dot segments, percent-encoding, `;params`) is protected
        and not exempt, so that no spelling a router may serve as a protected view
        passes, and an exempt prefix never opens a way around a protected one.
        """
        paths = self.settings.paths
        if self._routes.match(path) is not None:
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

    # -- tenants ------------------------------------------------------------------

    async def _tenant_named(self, slug: str) -> Tenant | None:
        """An organization, by slug (None when unknown)."""
        return None if self.tenants is None else await self.tenants.get(slug)

    async def _tenant_of(self, slug: str | None) -> Tenant | None:
        """A user's tenant: the app's own (no slug) or the organization's."""
        return self.tenant if slug is None else await self._tenant_named(slug)

    async def _tenant_of_path(self, request: HttpRequest) -> Tenant | None:
        """The organization a (non-endpoint) path belongs to, if any."""
        assert self.tenants is not None
        slug = run_sync_hook(
            self.tenants.resolve,
            request.path,
            request.headers.get("host", ""),
            failure=SAMLError("tenant_unavailable", "This page cannot be served now.", 503),
            log=log,
            failed=("tenant_options.resolver failed for %s", request.path[:200]),
        )
        return None if slug is None else await self._tenant_named(slug)

    async def _endpoint_tenant(self, endpoint: Endpoint, slug: str | None) -> Tenant | None:
        """Whose endpoint this is: the app's own, or an organization's (404 if unknown)."""
        if slug is None:
            if self.tenant is None and not endpoint.tenantless:
                raise SAMLError(
                    "unknown_tenant", "Sign in from your organization's own sign-in page.", 404
                )
            return self.tenant
        if self.tenants is None or not SLUG.fullmatch(slug):
            raise SAMLError("not_found", "There is no such sign-in page.", 404)
        tenant = await self.tenants.get(slug)
        if tenant is None:
            raise SAMLError("unknown_tenant", "There is no such organization.", 404)
        if not tenant.enabled and endpoint.refused_when_disabled:
            raise tenant_disabled(tenant)
        return tenant

    # -- endpoints ----------------------------------------------------------------

    async def _serve(self, name: str, slug: str | None, request: HttpRequest) -> Response:
        """Run one endpoint; the one place its refusals are logged and answered."""
        endpoint = self._endpoints.get(name)
        tenant = None
        try:
            if endpoint is None:
                raise SAMLError("not_found", "There is no such sign-in page.", 404)
            tenant = await self._endpoint_tenant(endpoint, slug)
            return await endpoint.serve(request, tenant)
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
            if endpoint is not None and endpoint.login_outcome:
                login_log.info(
                    "login failed: %s",
                    err.code,
                    extra={
                        "saml_outcome": err.code,
                        "saml_tenant": slug,
                        "saml_issuer": _issuer_or_none(tenant),
                    },
                )
            return error_response(err, request)
        except Exception as exc:  # a bug: the last resort, never the way to refuse input
            unexpected_errors.report(exc, f"{request.method} {request.path[:200]}")
            return error_response(
                SAMLError("internal_error", "Sign-in could not be completed.", 500), request
            )

    async def _metadata(self, request: HttpRequest, tenant: Tenant) -> Response:
        """`GET metadata/`: the tenant's SP metadata."""
        require_method(request, "GET", "HEAD")
        body = (await tenant.service_provider()).metadata_xml().encode("utf-8")
        return Response(
            200, [("content-type", "application/samlmetadata+xml; charset=utf-8")], body
        )

    def sp_metadata_xml(self) -> str:
        """The SP metadata to give the app's own IdP (entity ID, ACS URL, certificates)."""
        assert self.tenant is not None, "no top-level idp: use sp_metadata_for(slug)"
        return self.tenant.service_provider_sync().metadata_xml()

    async def sp_metadata_for(self, slug: str | None) -> str:
        """The SP metadata of an organization (or, for None, of the app's own IdP).

        Raises `SAMLError` for an unknown organization or one whose IdP cannot be read.
        """
        tenant = await self._endpoint_tenant(self._endpoints["metadata"], slug)
        assert tenant is not None
        return (await tenant.service_provider()).metadata_xml()

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
        assert self.tenant is not None, "diagnose needs the top-level idp (or one organization's)"
        return await self.login.test.diagnose(self.tenant, saml_response, request_id)


def _issuer_or_none(tenant: Tenant | None) -> str | None:
    if tenant is None or tenant.metadata.version == 0:
        return None
    return tenant.metadata.current().entity_id


def _under_any(path: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if not base or path == base or path.startswith(base + "/"):
            return True
    return False
