"""Signing out: the local logout, SP-initiated Single Logout, and the SLS.

* `GET|POST logout/` (`Logout.local`): the local session ends, by POST only (a
  GET shows the button); then, when the user's IdP has a Single Logout
  endpoint, a LogoutRequest goes to it (`single_logout`; its ID kept in the
  store, state.py).
* `GET|POST sls/` (`Logout.sls`): the IdP's LogoutResponse to ours is checked
  and taken once (`logout_answered`); an IdP-initiated LogoutRequest (signed,
  for this SLS, recent, used once: `check_message`) ends the sessions of its
  NameID, all of them with server-side sessions (`logout_requested`), and is
  answered with a LogoutResponse. The messages themselves are saml/logout_messages.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import cached_property
from html import escape
from urllib.parse import quote

from .authn_requests import OUTSTANDING_REQUEST_TTL
from .config import Settings
from .errors import SAMLError
from .http import (
    NO_STORE,
    UNFRAMED_PAGE,
    HttpRequest,
    Response,
    Site,
    location,
    mount_path,
    outgoing_response,
    read_form,
    require_method,
    single,
)
from .identity import SAMLUser, same_name_id
from .login import log_digest
from .pages import logout_page, page
from .routing import url_in
from .saml.crypto import XmlSecBackend
from .saml.logout_messages import (
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
from .saml.sp import Outgoing, ServiceProvider, decode_post_message, decode_redirect_message
from .sessions import Session, SessionBackend, SessionGate
from .state import LOGOUT_MESSAGE_MAX_AGE, FlowState
from .stores import StoreUnavailable
from .tenants import Tenant

# The engine's logger: operators know these records by it.
log = logging.getLogger("saml_middleware.engine")


class Logout:
    """The sign-out endpoints, for every tenant (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        state: FlowState,
        gate: SessionGate,
        site: Site,
        tenant_of: Callable[[str | None], Awaitable[Tenant | None]],
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.state = state
        self.gate = gate
        self.backend: SessionBackend = gate.backend
        self.site = site
        self._tenant_of = tenant_of
        self._clock = clock

    async def local(self, request: HttpRequest, tenant: Tenant | None) -> Response:
        """End the local session, by POST only: a link, an image or a prefetch cannot.

        GET (and HEAD) with a session answers a page whose button POSTs here
        (keeping a safe `next`); without one, it just goes to `next`. A POST
        from another site (Sec-Fetch-Site: cross-site, or an Origin that is not
        base_url's nor an allowed host's) is refused: 403 `csrf`.
        """
        require_method(request, "GET", "HEAD", "POST")
        home = mount_path(request.root_path) + self.settings.paths.after_logout
        safe_next = self.site.safe_redirect(request.query("next"))
        next_url = safe_next or home
        if request.method != "POST":
            if await self.gate.session_or_none(request) is None:  # nothing to end
                return Response(303, [("location", location(next_url)), NO_STORE])
            own = tenant.settings if tenant is not None else self.settings
            action = f"{mount_path(request.root_path)}{own.paths.endpoints['logout'][0]}"
            if safe_next:
                action += f"?next={quote(safe_next, safe='/')}"
            return Response(
                200,
                UNFRAMED_PAGE,
                logout_page(action),
            )
        if self.site.cross_site(request):
            raise SAMLError("csrf", "Sign out from this site's own pages.", 403)
        session = await self.gate.end(request)
        headers = [("set-cookie", self.backend.clear_header()), NO_STORE]
        if session is not None:
            outgoing = await self.single_logout(session, next_url, tenant)
            if outgoing is not None:
                return outgoing_response(outgoing, headers)
        return Response(303, [("location", location(next_url)), *headers])

    async def single_logout(
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
        try:
            tenant = await self._tenant_of(user.tenant)
        except SAMLError:
            tenant = None
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
            await self.state.keep_logout(request_id, next_url, tenant.slug)
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
        require_method(request, "GET", "POST")
        limit = self.settings.security.max_request_bytes
        query: RedirectMessage | None = None
        if request.method == "GET":
            if len(request.query_string) > 2 * limit:
                raise SAMLError("too_large", "The sign-out message is too large.", 413)
            query = read_redirect_query(request.query_string)
            kind, relay_state = query.kind, query.relay_state
            xml = decode_redirect_message(query.encoded, limit)
        else:
            form = await read_form(request, limit)
            kinds = [k for k in ("SAMLRequest", "SAMLResponse") if k in form]
            if len(kinds) != 1:
                raise SAMLError(
                    "malformed", "The sign-out form needs one SAMLRequest or SAMLResponse.", 400
                )
            kind = kinds[0]
            xml = decode_post_message(single(form, kind, required=True) or "", limit)
            relay_state = single(form, "RelayState")
            if relay_state is not None and len(relay_state) > MAX_RELAY_STATE:
                raise SAMLError("malformed", "The sign-out message's RelayState is too long.", 400)
        assert tenant is not None
        sp = await tenant.service_provider()
        if kind == "SAMLRequest":
            return await self.logout_requested(request, tenant, sp, xml, query, relay_state)
        return await self.logout_answered(request, tenant, sp, xml, query)

    async def logout_requested(
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
        await self.check_message(tenant, sp, message, query)
        skew = self.settings.security.clock_skew_seconds
        if message.not_on_or_after is not None and self._clock() - skew >= message.not_on_or_after:
            raise SAMLError("expired", "This sign-out request has expired.")
        if not await self.state.mark_logout_request_seen(
            sp.idp.entity_id, message.id, LOGOUT_MESSAGE_MAX_AGE + 2 * skew
        ):
            raise SAMLError("replay", "This sign-out request has already been used.")
        own = await self.gate.session_or_none(request)  # before revoke, which may end it
        ended = await self.backend.revoke(
            sp.idp.entity_id,
            message.name_id,
            message.session_indexes,
            matches=lambda user: _same_name_id(user, tenant, sp.idp.entity_id, message),
        )
        headers = [NO_STORE]
        if own is not None and _is_subject(own.user, tenant, sp.idp.entity_id, message):
            with contextlib.suppress(StoreUnavailable):  # revoke just used the store
                await self.backend.end(own)
            headers.append(("set-cookie", self.backend.clear_header()))
        log.info(
            "single logout requested by the IdP: %d server-side session(s) ended, "
            "this browser's session %s",
            ended,
            "ended" if len(headers) > 1 else "not concerned",
            extra={"saml_name_id_hash": log_digest(message.name_id)},
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
        return outgoing_response(outgoing, headers)

    async def logout_answered(
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
        await self.check_message(tenant, sp, message, query)
        record = None
        if message.in_response_to:
            record = await self.state.take_logout(message.in_response_to)
        if record is None or record.get("tenant") != tenant.slug:
            raise SAMLError(
                "wrong_in_response_to",
                "This sign-out answer is unknown, expired or already used. "
                "You are signed out of this site.",
            )
        clear = ("set-cookie", self.backend.clear_header())
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
                [("content-type", "text/html; charset=utf-8"), clear, NO_STORE],
                page("Signed out", body),
            )
        home = mount_path(request.root_path) + self.settings.paths.after_logout
        next_url = str(record.get("next") or home)
        return Response(303, [("location", location(next_url)), clear, NO_STORE])

    async def check_message(
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
