"""Signing in: the login start and the ACS finish, one method per step.

`GET login/` (`Login.start`): an AuthnRequest goes to the IdP. Its ID is a
token the SP signed (authn_requests.py), so nothing is stored; a short-lived
cookie binds the login to this browser; RelayState carries the page, signed.

`POST acs/` (`Login.finish`), in this order:

1. `verify`, in one worker-thread hop: the Response's structure (saml/sp.py),
   then `take_request` (a request of ours, for this organization, started in
   this browser: a forged answer costs no signature check), then signatures
   and conditions. IdP-initiated answers (no InResponseTo) only when allowed.
2. `refuse_replay`: the assertion ID enters the replay cache, the request is
   marked used, once (state.py).
3. `map_user`: attributes and roles (identity.py), Entra group overage
   resolved; then the required role.
4. `provision`: the app's hook (hooks.py).
5. `open_session`: a new session cookie (sessions.py), and back (303) to the
   page first asked for (or a safe RelayState path, or `paths.after_login`).

Test SSO (`SSOTest`) is the same round trip, answered by a diagnostics page:
its answer goes through `verify` and `map_user` and is reported, never signed
in. `Engine.diagnose` runs the same steps on a captured Response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from .authn_requests import LoginBinding, RequestToken, RequestTokens, wrong_browser
from .config import Settings
from .diagnostics import build_report, expected_from, observe_response, render_report
from .diagnostics.offline import Diagnosis
from .errors import SAMLError
from .hooks import run_hook
from .http import (
    NO_STORE,
    UNFRAMED_PAGE,
    HttpRequest,
    Response,
    Site,
    local_path,
    location,
    mount_path,
    outgoing_response,
    read_form,
    require_method,
    single,
)
from .identity import PROVISION_FAILED, SAMLUser, build_user, check_required_role, resolve_overage
from .identity import role_values as identity_role_values
from .saml.rules import VerifiedLogin
from .saml.sp import ResponseEnvelope, ServiceProvider, decode_post_message
from .sessions import SessionBackend
from .state import FlowState
from .tenants import Tenant, tenant_disabled

# The engine's logger (Test SSO, the provision hook) and the login outcomes' own.
log = logging.getLogger("saml_middleware.engine")
login_log = logging.getLogger("saml_middleware.login")


@dataclass(frozen=True)
class Answer:
    """An IdP's Response once `verify` has passed it."""

    envelope: ResponseEnvelope
    token: RequestToken | None  # the request of ours it answers; None: IdP-initiated
    login: VerifiedLogin | None  # None for a Test SSO answer (its report verifies it)


class Login:
    """The login start and the ACS, for every tenant (the steps: see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        state: FlowState,
        sessions: SessionBackend,
        site: Site,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.state = state
        self.sessions = sessions
        self.site = site
        self.requests = RequestTokens(settings.secret_key)
        self.binding = LoginBinding(settings.secret_key, settings.session)
        self._relay = URLSafeSerializer(settings.secret_key, salt="saml_middleware.relay")
        self.clock = clock
        self.test = SSOTest(self)

    # -- the start ------------------------------------------------------------------

    async def start(self, request: HttpRequest, tenant: Tenant) -> Response:
        """`GET login/?next=<page>`: to the IdP, back to `next` (if safe) afterwards."""
        require_method(request, "GET", "HEAD")
        next_url = self.site.safe_redirect(request.query("next")) or self.home(request, tenant)
        return await self.send_to_idp(request, tenant, next_url, test=False)

    async def send_to_idp(
        self, request: HttpRequest, tenant: Tenant, next_url: str, *, test: bool
    ) -> Response:
        """An AuthnRequest to the tenant's IdP. Nothing is stored: its ID is a signed
        token (organization, test flag, expiry, nonce), and a cookie binds it to
        this browser."""
        sp = await tenant.service_provider()
        now = self.clock()
        token = self.requests.issue(tenant.slug, test=test, now=now)
        relay_state = self._relay.dumps(next_url)
        outgoing = await asyncio.to_thread(sp.authn_request, relay_state, token.request_id)
        bind = self.binding.started(request.cookies.get(self.binding.cookie_name), token, now)
        return outgoing_response(outgoing, [("set-cookie", bind), NO_STORE])

    def home(self, request: HttpRequest, tenant: Tenant | None) -> str:
        """Where a login lands without a page to go back to (`paths.after_login`)."""
        home = self.settings.paths.after_login
        if tenant is not None and self.settings.tenant_options is not None:
            home = tenant.home(home, self.settings.tenant_options.resolver)
        return mount_path(request.root_path) + home

    # -- the finish -----------------------------------------------------------------

    async def finish(self, request: HttpRequest, tenant: Tenant) -> Response:
        """`POST acs/`: the IdP's Response, step by step, to a session."""
        require_method(request, "POST")
        limit = self.settings.security.max_request_bytes
        form = await read_form(request, limit)
        xml = decode_post_message(single(form, "SAMLResponse", required=True) or "", limit)
        relay_state = single(form, "RelayState")
        sp = await tenant.service_provider()
        try:
            answer = await asyncio.to_thread(self.verify, request, tenant, sp, xml)
        except SAMLError as err:
            return await self.test.report_refused(request, tenant, sp, xml, err)
        if answer.login is None:  # a Test SSO answer
            assert answer.token is not None
            return await self.test.report(request, tenant, sp, xml, answer.token, answer.envelope)
        await self.refuse_replay(answer.login, answer.token)
        user = await self.map_user(tenant, answer.login)
        check_required_role(user, tenant.settings.roles)
        user = await self.provision(user)
        return await self.open_session(request, tenant, user, answer, relay_state)

    def verify(
        self, request: HttpRequest, tenant: Tenant, sp: ServiceProvider, xml: bytes
    ) -> Answer:
        """Step 1, in a worker thread: the structure, the request answered, then the
        cryptography. A Test SSO answer stops before the cryptography (its report
        runs it); a disabled organization's answer is refused there."""
        envelope = sp.inspect(xml)
        answered = envelope.in_response_to
        token = self.take_request(request, tenant, answered) if answered else None
        if token is not None and token.test:
            return Answer(envelope, token, None)
        if not tenant.enabled:
            raise tenant_disabled(tenant)
        return Answer(envelope, token, self.check_signed(sp, envelope, token is not None))

    def check_signed(
        self, sp: ServiceProvider, envelope: ResponseEnvelope, answers: bool
    ) -> VerifiedLogin:
        """Signatures, issuer, audience and times (saml/sp.py); `answers`: whether the
        request its InResponseTo names was found (else a solicited answer is refused)."""
        return sp.verify_response(
            envelope,
            outstanding_id=envelope.in_response_to if answers else None,
            now=self.clock(),
        )

    def take_request(self, request: HttpRequest, tenant: Tenant, request_id: str) -> RequestToken:
        """The request of ours that a Response answers (InResponseTo), for this tenant,
        started in this browser; refused otherwise. Whether it was already used is
        known only once the answer has passed every other check (`refuse_replay`)."""
        token = self.requests.read(request_id, self.clock())
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
        cookie = request.cookies.get(self.binding.cookie_name)
        if not self.binding.holds(cookie, token, self.clock()):
            raise wrong_browser()
        return token

    async def refuse_replay(self, login: VerifiedLogin, token: RequestToken | None) -> None:
        """Step 2: the assertion is new (replay cache) and its request answered once."""
        if not await self.state.mark_assertion_seen(
            login.issuer, login.assertion_id, login.expires_at
        ):
            raise SAMLError("replay", "This sign-in answer has already been used.")
        if token is not None and not await self.state.mark_request_used(token):
            raise SAMLError("wrong_in_response_to", "This sign-in answer was already used.")

    async def map_user(self, tenant: Tenant, login: VerifiedLogin) -> SAMLUser:
        """Step 3: the user a verified login maps to, under the tenant's attribute and
        role rules (Entra group overage resolved; the required role is the caller's)."""
        settings = tenant.settings
        user = build_user(
            name_id=login.name_id,
            name_id_format=login.name_id_format,
            name_id_qualifier=login.name_id_qualifier,
            sp_name_qualifier=login.sp_name_qualifier,
            sp_provided_id=login.sp_provided_id,
            session_index=login.session_index,
            issuer=login.issuer,
            attributes=login.attributes,
            attribute_settings=settings.attributes,
            role_settings=settings.roles,
            tenant=tenant.slug,
        )
        return await resolve_overage(user, settings.roles)

    async def provision(self, user: SAMLUser) -> SAMLUser:
        """Step 4: the JIT `provision` hook, once for a login that passed every check
        (hooks.py's failure policy; a signing-in user retries with a new assertion)."""
        hook = self.settings.provision
        if hook is None:
            return user
        result = await run_hook(
            hook,
            user,
            failure=SAMLError("provision_failed", PROVISION_FAILED, 503),
            log=log,
            failed=("the provision hook failed",),
        )
        if not isinstance(result, SAMLUser) or not result.is_authenticated:
            log.error(
                "the provision hook returned %s, not a signed-in SAMLUser (use "
                "dataclasses.replace(user, ...))",
                type(result).__name__,
            )
            raise SAMLError("provision_failed", PROVISION_FAILED, 503)
        return result

    async def open_session(
        self,
        request: HttpRequest,
        tenant: Tenant,
        user: SAMLUser,
        answer: Answer,
        relay_state: str | None,
    ) -> Response:
        """Step 5: a new session (a new id: no fixation), then on to the page."""
        token, login = answer.token, answer.login
        assert login is not None
        # Ours: the page signed into the RelayState; else (IdP-initiated, or an IdP
        # that did not echo ours) only a path on this site.
        signed_next = self._signed_next(relay_state) if token is not None else None
        next_url = signed_next or local_path(relay_state) or self.home(request, tenant)
        set_cookie = await self.sessions.start(user)
        login_log.info(
            "login ok",
            extra={
                "saml_outcome": "ok",
                "saml_tenant": user.tenant,
                "saml_issuer": login.issuer,
                "saml_name_id_hash": log_digest(user.name_id),
                "saml_idp_initiated": token is None,
            },
        )
        headers = [("location", location(next_url)), ("set-cookie", set_cookie), NO_STORE]
        if token is not None:
            headers.append(("set-cookie", self.binding_finished(request, token)))
        return Response(303, headers)

    def binding_finished(self, request: HttpRequest, token: RequestToken) -> str:
        """The login-binding cookie without `token`'s login (it is over)."""
        cookie = request.cookies.get(self.binding.cookie_name)
        return self.binding.finished(cookie, token, self.clock())

    def _signed_next(self, relay_state: str | None) -> str | None:
        """The page a login of ours started from: the RelayState we signed, if intact."""
        if not relay_state:
            return None
        try:
            next_url = self._relay.loads(relay_state)
        except BadData:
            return None
        return next_url if isinstance(next_url, str) and next_url else None


class SSOTest:
    """Test SSO: the login round trip, answered at the ACS by a diagnostics page.

    Works while an organization is disabled (test before enabling). The answer
    creates no session and provisions no one; the test request is marked used
    first (once, whatever the outcome), so its answer can never sign anyone in.
    """

    def __init__(self, login: Login) -> None:
        self.login = login

    async def start(self, request: HttpRequest, tenant: Tenant) -> Response:
        """`GET test/`: the round trip, with a request marked as a test."""
        require_method(request, "GET", "HEAD")
        return await self.login.send_to_idp(request, tenant, "", test=True)

    async def report_refused(
        self, request: HttpRequest, tenant: Tenant, sp: ServiceProvider, xml: bytes, err: SAMLError
    ) -> Response:
        """An answer `verify` refused: reported when it is a Test SSO's (an IdP error
        status, most often: its request ID names it), else the refusal stands."""
        if err.status == 400:  # not even a well-formed Response: nothing to diagnose
            raise err
        observed = observe_response(xml)
        request_id = observed.in_response_to if observed is not None else None
        token = self.login.requests.read(request_id, self.login.clock()) if request_id else None
        if token is None or not token.test or token.tenant != tenant.slug:
            raise err
        # Refused when it was started in another browser.
        token = self.login.take_request(request, tenant, token.request_id)
        return await self.report(request, tenant, sp, xml, token, None, err)

    async def report(
        self,
        request: HttpRequest,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        token: RequestToken,
        envelope: ResponseEnvelope | None,
        error: SAMLError | None = None,
    ) -> Response:
        """The diagnostics page: every check, the claims, the mapped user."""
        if not await self.login.state.mark_request_used(token):
            raise SAMLError("wrong_in_response_to", "This test answer was already used.")
        diagnosis = await self.diagnosis(tenant, sp, xml, envelope, error, token.request_id)
        error = diagnosis.error
        log.info(
            "Test SSO%s: %s",
            f" for organization {tenant.slug}" if tenant.slug else "",
            "passed" if error is None else f"failed ({error.code})",
            extra={"saml_tenant": tenant.slug, "saml_outcome": error.code if error else "ok"},
        )
        return Response(
            200,
            [*UNFRAMED_PAGE, ("set-cookie", self.login.binding_finished(request, token))],
            render_report(diagnosis.report),
        )

    async def diagnosis(
        self,
        tenant: Tenant,
        sp: ServiceProvider,
        xml: bytes,
        envelope: ResponseEnvelope | None,
        error: SAMLError | None,
        request_id: str | None,
    ) -> Diagnosis:
        """The verdict: an answer that passed the ACS's first checks (`envelope`) goes
        through the ACS's signature check and `map_user`, then the required role; one
        refused earlier (`error`) is only described. Nothing is stored or provisioned."""
        user: SAMLUser | None = None
        role_values: tuple[str, ...] = ()
        if envelope is not None and error is None:
            try:
                verified = await asyncio.to_thread(self.login.check_signed, sp, envelope, True)
                user = await self.login.map_user(tenant, verified)
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
            now=self.login.clock(),
        )
        return Diagnosis(report, error, observed)

    async def diagnose(
        self, tenant: Tenant, saml_response: str, request_id: str | None
    ) -> Diagnosis:
        """`Engine.diagnose`: the ACS's steps on a captured SAMLResponse, storing nothing."""
        sp = await tenant.service_provider()
        xml, envelope, error = b"", None, None
        try:
            xml = decode_post_message(saml_response, self.login.settings.security.max_request_bytes)
            envelope = await asyncio.to_thread(sp.inspect, xml)
            if envelope.in_response_to and envelope.in_response_to != request_id:
                raise SAMLError(
                    "wrong_in_response_to",
                    "The SAML response answers another request than the outstanding one.",
                )
            if not tenant.enabled:
                raise tenant_disabled(tenant)
        except SAMLError as err:
            error = err
        return await self.diagnosis(tenant, sp, xml, envelope, error, request_id)


def log_digest(value: str) -> str:
    """A NameID's short digest, for log records that must not hold the address itself."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
