"""A development SAML 2.0 Identity Provider on pysaml2's server side.

NOT FOR PRODUCTION. Anyone who can reach it signs in as any of its users with
one click: it exists so the demo, the examples and the tests can run a real
SAML round trip (AuthnRequest in, signed Response out) without a Microsoft
Entra tenant. Its responses are shaped like Entra's: claim URIs as Attribute
names with no NameFormat, an emailAddress NameID, an assertion signed with
RSA-SHA256 / SHA-256, the Password authentication context.

pysaml2 is synchronous and signs by running `xmlsec1` (tens of milliseconds);
web code calls this class from a thread pool.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.assertion import Policy
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.mdstore import InMemoryMetaData
from saml2.metadata import create_metadata_string
from saml2.samlp import (
    STATUS_RESPONDER,
    STATUS_SUCCESS,
    LogoutResponse,
    Status,
    StatusCode,
    authn_request_from_string,
    logout_response_from_string,
)
from saml2.server import Server
from saml2.sigver import (
    RSA_OAEP_MGF1P,
    get_pem_wrapped_unwrapped,
    make_temp,
    pre_encryption_part,
)
from saml2.sigver import verify_redirect_signature as pysaml2_verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_ECDSA_SHA256, SIG_RSA_SHA256

from ..keys import generate_key_pair
from ..saml.logout_messages import read_redirect_query, redirect_url, verify_redirect_signature
from .local_sps import (
    LocalMetadataError,
    fetch_local_metadata,
    is_loopback_origin,
    is_loopback_url,
)
from .users import DEFAULT_USERS, DevUser

log = logging.getLogger("saml_middleware.devidp")

NAMEID_EMAIL = saml.NAMEID_FORMAT_EMAILADDRESS
# Attributes leave with no NameFormat (Entra's way), which SAML reads as "unspecified".
_NAME_FORM = saml.NAME_FORMAT_UNSPECIFIED
ASSERTION_LIFETIME_MINUTES = 10
# An encoded AuthnRequest is a few KB; the inflated XML is bounded too (no zip bombs).
MAX_REQUEST_CHARS = 64 * 1024
MAX_INFLATED_BYTES = 256 * 1024
_BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
# An SP trusted from its metadata URL (see local_sps) is read again when it sends
# an AuthnRequest and its copy is older than this: a restarted app may have
# changed its key or endpoints.
LOCAL_SP_REFRESH_SECONDS = 30.0


class DevIdPError(ValueError):
    """A request or argument the development IdP refuses; the message is safe to show."""


@dataclass(frozen=True)
class LogoutRequestInfo:
    """A checked LogoutRequest from a trusted SP (the IdP answers it with a LogoutResponse)."""

    request_id: str
    sp_entity_id: str
    name_id: str
    session_indexes: tuple[str, ...]
    signed: bool


@dataclass(frozen=True)
class LogoutResponseInfo:
    """An SP's LogoutResponse to an IdP-initiated logout."""

    in_response_to: str | None
    sp_entity_id: str
    status: str  # "Success", "Responder", ...
    signed: bool


@dataclass(frozen=True)
class Outbound:
    """A message for the browser to carry: a redirect URL, or a form to auto-post."""

    url: str
    form: Mapping[str, str] | None = None


@dataclass(frozen=True)
class AuthnRequestInfo:
    """What the sign-in page needs from a parsed, checked AuthnRequest."""

    request_id: str
    sp_entity_id: str
    acs_url: str
    signed: bool


class _EntraAttributes(AttributeConverter):
    """Sends every claim as-is: `<Attribute Name="<claim URI>">` with no NameFormat.

    pysaml2's own converters rename known attributes (to OIDs and the like),
    lowercase unknown names and stamp a NameFormat and xsi:type on them; Entra
    does none of that.
    """

    def __init__(self) -> None:
        super().__init__(_NAME_FORM)

    def to_(self, attrvals: Mapping[str, Sequence[str]]) -> list[saml.Attribute]:
        return [
            # saml.Attribute defaults NameFormat to the URI format: None omits it.
            saml.Attribute(
                name=name, name_format=None, attribute_value=[_plain_value(v) for v in values]
            )
            for name, values in attrvals.items()
        ]


def _plain_value(text: str) -> saml.AttributeValue:
    """`<AttributeValue>text</AttributeValue>`: Entra adds no xsi:type (pysaml2 would)."""
    value = saml.AttributeValue(text=str(text))
    value.clear_type()
    value.extension_attributes.pop("xmlns:xs", None)
    return value


class _ReleaseAll(Policy):
    """Every claim the user has goes to every SP, like Entra's claim configuration.

    pysaml2's default policy drops attributes the SP's metadata did not ask
    for (RequestedAttribute) and knows no claim URIs.
    """

    def restrict(self, ava: Any, sp_entity_id: Any, metadata: Any = None) -> Any:
        return dict(ava)

    def get_name_form(self, sp_entity_id: Any) -> str:
        return _NAME_FORM


# What Entra ID sends: RSA-OAEP key transport, AES-256-CBC content encryption
# (pysaml2's own default is 3DES-CBC, which the middleware refuses by default).
DATA_ENCRYPTION = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
KEY_TRANSPORT = RSA_OAEP_MGF1P


class _Server(Server):
    # pysaml2 otherwise keeps every assertion it issues, in memory, forever.
    def support_AssertionIDRequest(self) -> bool:  # noqa: N802 (pysaml2's name)
        return False

    def support_AuthnQuery(self) -> bool:  # noqa: N802
        return False

    def _encrypt_assertion(
        self, encrypt_cert: Any, sp_entity_id: Any, response: Any, node_xpath: Any = None
    ) -> Any:
        """pysaml2 7.5's method with Entra's algorithms instead of its 3DES default."""
        certs = (
            [(None, encrypt_cert)]
            if encrypt_cert
            else self.metadata.certs(sp_entity_id, "any", "encryption")
            if sp_entity_id is not None
            else []
        )
        problem: Exception | None = None
        for name, cert in certs:
            wrapped, unwrapped = get_pem_wrapped_unwrapped(cert)
            try:
                cert_file = make_temp(
                    wrapped.encode("ascii"),
                    decode=False,
                    delete_tmpfiles=self.config.delete_tmpfiles,
                )
                template = pre_encryption_part(
                    msg_enc=DATA_ENCRYPTION,
                    key_enc=KEY_TRANSPORT,
                    key_name=name,
                    encrypt_cert=unwrapped,
                )
                return self.sec.encrypt_assertion(
                    response, cert_file.name, template, key_type="aes-256", node_xpath=node_xpath
                )
            except Exception as exc:  # noqa: BLE001 - pysaml2's own loop: try the next cert
                problem = exc
        if problem is not None:
            raise problem
        return response


def _inflated_size_ok(saml_request: str) -> bool:
    """Whether an HTTP-Redirect SAMLRequest inflates to at most MAX_INFLATED_BYTES."""
    try:
        raw = base64.b64decode(saml_request, validate=False)
        inflater = zlib.decompressobj(-15)
        inflater.decompress(raw, MAX_INFLATED_BYTES + 1)
    except (ValueError, zlib.error):
        return False
    return not inflater.unconsumed_tail


def _signing_algorithm(key_pem: str) -> str:
    key = load_pem_private_key(key_pem.encode("ascii"), password=None)
    return SIG_ECDSA_SHA256 if isinstance(key, ec.EllipticCurvePrivateKey) else SIG_RSA_SHA256


class _SingleLogout:
    """Single Logout, both directions, for `DevIdP` (mixed in; pysaml2's server side).

    SP-initiated: `parse_logout_request` checks the SP's LogoutRequest (its
    signature too, when signed: over the raw query for HTTP-Redirect) and
    `create_logout_response` answers it, signed. IdP-initiated ("sign out
    everywhere"): `create_logout_request` sends a signed LogoutRequest to the
    SP's SingleLogoutService, and `parse_logout_response` reads its answer.
    """

    entity_id: str
    signing_algorithm: str
    _key_pem: str
    _sp_metadata: dict[str, str]

    def _current_server(self) -> Server:
        raise NotImplementedError

    def _sp_signing_certs(self, server: Server, sp_entity_id: str) -> list[str]:
        return [cert for _, cert in server.metadata.certs(sp_entity_id, "any", "signing")]

    def _incoming(
        self, binding: str, raw_query: str | None, message: str | None, kind: str
    ) -> tuple[bytes, Any]:
        """(the message XML, the Redirect query parts or None), size-bounded."""
        if binding == "redirect":
            if raw_query is None or len(raw_query) > MAX_REQUEST_CHARS:
                raise DevIdPError(f"{kind} is missing or too large")
            try:
                query = read_redirect_query(raw_query)
            except Exception as exc:  # noqa: BLE001 - SAMLError: a bad query
                raise DevIdPError(f"the query is not a valid {kind} message ({exc})") from None
            if query.kind != kind or not _inflated_size_ok(query.encoded):
                raise DevIdPError(f"{kind} is not valid deflated Base64, or inflates too large")
            raw = base64.b64decode(query.encoded)
            return zlib.decompress(raw, -15), query
        if binding != "post":
            raise DevIdPError("binding must be 'redirect' or 'post'")
        if not message or len(message) > MAX_REQUEST_CHARS:
            raise DevIdPError(f"{kind} is missing or too large")
        try:
            return base64.b64decode(message, validate=True), None
        except ValueError:
            raise DevIdPError(f"{kind} is not valid Base64") from None

    def _check_query_signature(self, server: Server, sp_entity_id: str, query: Any) -> bool:
        if query is None or query.signature is None:
            return False
        certs = self._sp_signing_certs(server, sp_entity_id)
        if not certs:
            raise DevIdPError("the message is signed but the SP's metadata has no signing key")
        try:
            verify_redirect_signature(query, certs, reject_sha1=True)
        except Exception:  # noqa: BLE001 - SAMLError: not valid
            raise DevIdPError("the message's signature does not verify") from None
        return True

    def parse_logout_request(
        self, binding: str, *, raw_query: str | None = None, saml_request: str | None = None
    ) -> LogoutRequestInfo:
        """Check an SP's LogoutRequest: `raw_query` (the whole query string) for
        "redirect", `saml_request` (the form field) for "post". Raises DevIdPError."""
        xml, query = self._incoming(binding, raw_query, saml_request, "SAMLRequest")
        server = self._current_server()
        try:
            encoded = base64.b64encode(xml).decode("ascii")
            message = server.parse_logout_request(encoded, BINDING_HTTP_POST).message
        except Exception as exc:  # noqa: BLE001 - pysaml2 raises anything on bad input
            log.info("development IdP: unreadable LogoutRequest (%s: %s)", type(exc).__name__, exc)
            raise DevIdPError("SAMLRequest is not a valid LogoutRequest for this IdP") from None
        if message is None or not message.id or message.name_id is None:
            raise DevIdPError("SAMLRequest is not a valid LogoutRequest for this IdP")
        sp_entity_id = (message.issuer.text or "").strip() if message.issuer else ""
        if sp_entity_id not in self._sp_metadata:
            raise DevIdPError(f"unknown service provider {sp_entity_id[:200]!r}")
        signed = message.signature is not None  # pysaml2 verified an enveloped one
        if binding == "redirect":
            signed = self._check_query_signature(server, sp_entity_id, query)
        return LogoutRequestInfo(
            request_id=message.id,
            sp_entity_id=sp_entity_id,
            name_id=(message.name_id.text or "").strip(),
            session_indexes=tuple((i.text or "").strip() for i in message.session_index or []),
            signed=signed,
        )

    def _sp_logout_endpoint(self, server: Server, sp_entity_id: str, binding: str) -> str:
        try:
            services = server.metadata.single_logout_service(
                sp_entity_id, _BINDINGS[binding], "spsso"
            )
        except Exception:  # noqa: BLE001 - UnsupportedBinding, UnknownSystemEntity
            services = []
        if not services:
            raise DevIdPError(
                f"the SP {sp_entity_id[:200]!r} has no {binding} SingleLogoutService "
                "in its metadata"
            )
        return str(services[0].get("response_location") or services[0]["location"])

    def _outbound(
        self, kind: str, xml: str, destination: str, relay_state: str | None, binding: str
    ) -> Outbound:
        if binding == "redirect":
            return Outbound(
                redirect_url(destination, kind, xml.encode("utf-8"), relay_state, self._key_pem)
            )
        form = {kind: base64.b64encode(xml.encode("utf-8")).decode("ascii")}
        if relay_state is not None:
            form["RelayState"] = relay_state
        return Outbound(destination, form)

    def create_logout_response(
        self,
        request: LogoutRequestInfo,
        *,
        relay_state: str | None = None,
        binding: str = "redirect",
        success: bool = True,
    ) -> Outbound:
        """The signed LogoutResponse to `request`, for the SP's SingleLogoutService."""
        server = self._current_server()
        destination = self._sp_logout_endpoint(server, request.sp_entity_id, binding)
        code = STATUS_SUCCESS if success else STATUS_RESPONDER
        response = server._message(  # noqa: SLF001 - pysaml2 builds the envelope
            LogoutResponse,
            destination,
            in_response_to=request.request_id,
            status=Status(status_code=StatusCode(value=code)),
            issuer=server._issuer(),  # noqa: SLF001
            sign=binding == "post",
            sign_alg=self.signing_algorithm,
            digest_alg=DIGEST_SHA256,
        )[1]
        log.info("development IdP: signed out of %s", request.sp_entity_id)
        return self._outbound("SAMLResponse", str(response), destination, relay_state, binding)

    def create_logout_request(
        self,
        sp_entity_id: str,
        name_id: str,
        *,
        session_indexes: Sequence[str] = (),
        binding: str = "redirect",
        relay_state: str | None = None,
        sign: bool = True,
        name_qualifier: str | None = None,
        sp_name_qualifier: str | None = None,
    ) -> tuple[str, Outbound]:
        """An IdP-initiated LogoutRequest for `name_id` at `sp_entity_id`: (its ID, how to send).

        The NameID carries `name_qualifier` / `sp_name_qualifier` when given.
        """
        if binding not in _BINDINGS:
            raise DevIdPError("binding must be 'redirect' or 'post'")
        server = self._current_server()
        if sp_entity_id not in self._sp_metadata:
            raise DevIdPError(f"unknown service provider {sp_entity_id[:200]!r}")
        destination = self._sp_logout_endpoint(server, sp_entity_id, binding)
        request_id, request = server.create_logout_request(
            destination,
            sp_entity_id,
            name_id=saml.NameID(
                format=NAMEID_EMAIL,
                name_qualifier=name_qualifier,
                sp_name_qualifier=sp_name_qualifier,
                text=name_id,
            ),
            session_indexes=list(session_indexes) or None,
            sign=sign and binding == "post",
            sign_alg=self.signing_algorithm,
            digest_alg=DIGEST_SHA256,
        )
        outbound = self._outbound("SAMLRequest", str(request), destination, relay_state, binding)
        if binding == "redirect" and not sign:
            outbound = Outbound(outbound.url.split("&SigAlg=", 1)[0])
        log.info("development IdP: asking %s to sign %s out", sp_entity_id, name_id)
        return str(request_id), outbound

    def parse_logout_response(
        self, binding: str, *, raw_query: str | None = None, saml_response: str | None = None
    ) -> LogoutResponseInfo:
        """Read an SP's LogoutResponse (its signature checked when signed)."""
        xml, query = self._incoming(binding, raw_query, saml_response, "SAMLResponse")
        if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
            raise DevIdPError("SAMLResponse contains a DTD")
        try:
            message = logout_response_from_string(xml.decode("utf-8"))
        except Exception:  # noqa: BLE001
            message = None
        if message is None or message.status is None or message.status.status_code is None:
            raise DevIdPError("SAMLResponse is not a LogoutResponse")
        sp_entity_id = (message.issuer.text or "").strip() if message.issuer else ""
        if sp_entity_id not in self._sp_metadata:
            raise DevIdPError(f"unknown service provider {sp_entity_id[:200]!r}")
        server = self._current_server()
        signed = False
        if binding == "redirect":
            signed = self._check_query_signature(server, sp_entity_id, query)
        elif message.signature is not None:
            try:
                server.sec.correctly_signed_logout_response(xml.decode("utf-8"))
            except Exception:  # noqa: BLE001
                raise DevIdPError("the message's signature does not verify") from None
            signed = True
        code = message.status.status_code.value or ""
        return LogoutResponseInfo(
            in_response_to=message.in_response_to,
            sp_entity_id=sp_entity_id,
            status=code.rsplit(":", 1)[-1],
            signed=signed,
        )


class DevIdP(_SingleLogout):
    """The development IdP: metadata, AuthnRequest parsing, signed Responses, Single Logout.

    `base_url` is where its web pages live (`create_app` mounted there), e.g.
    `http://127.0.0.1:8000/idp`; the entity ID is `{base_url}/metadata`.
    `service_providers` are SP metadata XML documents.

    `trust_local_sps`: trust an SP it was not told about when the SP's entity
    ID is an http(s) URL on this machine (127.0.0.1, ::1, localhost): its
    metadata is read from that URL at its first AuthnRequest (see local_sps).
    By default (None) on exactly when `base_url` itself is on a loopback
    address, as when the CLI's `dev-idp` or `demo` serve it; an IdP under any
    other name trusts only the SPs it is given.
    """

    def __init__(
        self,
        base_url: str,
        *,
        users: Sequence[DevUser] | None = None,
        key_pem: str | None = None,
        cert_pem: str | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        service_providers: Sequence[str] = (),
        trust_local_sps: bool | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an absolute http(s) URL")
        if bool(key_pem) != bool(cert_pem):
            raise ValueError("key_pem and cert_pem must be given together")
        if not (sign_assertion or sign_response):
            log.warning("development IdP: neither assertions nor responses will be signed")
        self.base_url = base_url.rstrip("/")
        self.entity_id = f"{self.base_url}/metadata"
        self.sso_redirect_url = f"{self.base_url}/sso/redirect"
        self.sso_post_url = f"{self.base_url}/sso/post"
        self.slo_url = f"{self.base_url}/slo"
        self.sign_assertion = sign_assertion
        self.sign_response = sign_response
        self.trust_local_sps = (
            is_loopback_origin(self.base_url) if trust_local_sps is None else trust_local_sps
        )
        self.users: dict[str, DevUser] = {}
        for user in DEFAULT_USERS if users is None else users:
            if user.key in self.users:
                raise ValueError(f"duplicate user key {user.key!r}")
            self.users[user.key] = user
        if not self.users:
            raise ValueError("the development IdP needs at least one user")
        if key_pem is None or cert_pem is None:
            key_pem, cert_pem = generate_key_pair("saml-middleware development IdP")
        self.cert_pem = cert_pem
        self.signing_algorithm = _signing_algorithm(key_pem)
        self._key_pem = key_pem  # signs Redirect-binding logout messages (query signatures)
        self._key_dir = tempfile.mkdtemp(prefix="saml-devidp-")  # mode 0700
        # The private key should not outlive the IdP on disk (best effort).
        weakref.finalize(self, shutil.rmtree, self._key_dir, ignore_errors=True)
        self._key_file = os.path.join(self._key_dir, "idp.key")
        self._cert_file = os.path.join(self._key_dir, "idp.crt")
        fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key_pem)
        with open(self._cert_file, "w") as fh:
            fh.write(cert_pem)

        self._lock = threading.RLock()
        self._sp_metadata: dict[str, str] = {}
        self._sources: list[Callable[[], str]] = []
        # entity ID -> (metadata URL, when it was read): SPs trusted from a URL.
        self._fetched: dict[str, tuple[str, float]] = {}
        self._server: Server | None = None
        self._metadata: str | None = None
        for xml in service_providers:
            self.add_service_provider(xml)
        log.warning(
            "development IdP at %s: NOT FOR PRODUCTION, anyone who can reach it "
            "signs in as any of its users",
            self.base_url,
        )

    # -- service providers ---------------------------------------------------------

    def add_service_provider(self, metadata_xml: str) -> str:
        """Trust one SP (its metadata XML); returns its entity ID. Replaces a same-ID SP."""
        entity_id = _sp_entity_id(metadata_xml)
        with self._lock:
            if self._sp_metadata.get(entity_id) == metadata_xml:
                return entity_id  # unchanged: keep the pysaml2 server as it is
            self._sp_metadata[entity_id] = metadata_xml
            self._server = None  # rebuilt with the new metadata on next use
        log.info("development IdP: trusting service provider %s", entity_id)
        return entity_id

    def add_service_provider_url(self, url: str, *, entity_id: str | None = None) -> str:
        """Trust the SP whose metadata is at `url`, a URL on this machine; its entity ID.

        Only loopback http(s) URLs are read (see local_sps). With `entity_id`,
        the metadata must describe that SP. Raises DevIdPError with the reason.
        """
        try:
            xml = fetch_local_metadata(url)
        except LocalMetadataError as exc:
            raise DevIdPError(f"could not read SP metadata from {url[:200]!r}: {exc}") from None
        found = _sp_entity_id(xml)
        if entity_id is not None and found != entity_id:
            raise DevIdPError(
                f"the metadata at {url[:200]!r} describes {found[:200]!r}, not {entity_id[:200]!r}"
            )
        self.add_service_provider(xml)
        with self._lock:
            self._fetched[found] = (url, time.monotonic())
        return found

    def _discover(self, saml_request: str, binding: str) -> None:
        """Trust (or refresh) the local SP an AuthnRequest comes from, when allowed."""
        self._load_sources()  # an SP the IdP was told about is never fetched
        issuer = _peek_issuer(saml_request, binding)
        if issuer is None:
            return  # not readable: the ordinary parse says why
        with self._lock:
            known = issuer in self._sp_metadata
            fetched = self._fetched.get(issuer)
        if not known:
            if not is_loopback_url(issuer):
                return  # refused as unknown by the ordinary checks
            log.info("development IdP: reading the metadata of new local SP %s", issuer)
            self.add_service_provider_url(issuer, entity_id=issuer)
            return
        if fetched is not None and time.monotonic() - fetched[1] > LOCAL_SP_REFRESH_SECONDS:
            try:
                self.add_service_provider_url(fetched[0], entity_id=issuer)
            except DevIdPError as exc:  # the copy we have keeps serving
                log.warning("development IdP: could not refresh %s (%s)", issuer, exc)

    def add_service_provider_source(self, source: Callable[[], str]) -> None:
        """Trust an SP whose metadata is not available yet (e.g. its server is starting).

        `source()` returns the metadata XML; it is called when the IdP first needs
        its SPs, and again later if it fails.
        """
        with self._lock:
            self._sources.append(source)

    def _load_sources(self) -> None:
        # Sources run outside the lock: one may fetch over HTTP from a slow SP.
        with self._lock:
            pending, self._sources = self._sources, []
        failed = []
        for source in pending:
            try:
                self.add_service_provider(source())
            except Exception as exc:  # noqa: BLE001 - any failure: retry later
                log.warning("development IdP: SP metadata source failed (%s); will retry", exc)
                failed.append(source)
        if failed:
            with self._lock:
                self._sources[:0] = failed

    def _current_server(self) -> Server:
        self._load_sources()
        with self._lock:
            if self._server is None:
                self._server = _Server(config=self._config(list(self._sp_metadata.values())))
            return self._server

    def service_providers(self) -> list[tuple[str, str]]:
        """(entity ID, default ACS URL) of each trusted SP, for the My Apps page."""
        server = self._current_server()
        with self._lock:
            entity_ids = list(self._sp_metadata)
        return [(entity_id, self._default_acs(server, entity_id)) for entity_id in entity_ids]

    # -- pysaml2 configuration -----------------------------------------------------

    def _config(self, sp_metadata: list[str]) -> IdPConfig:
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "name": "saml-middleware development IdP (not for production)",
                "key_file": self._key_file,
                "cert_file": self._cert_file,
                "signing_algorithm": self.signing_algorithm,
                "digest_algorithm": DIGEST_SHA256,
                "accepted_time_diff": 120,
                "metadata": {"inline": sp_metadata} if sp_metadata else {},
                "service": {
                    "idp": {
                        "name": "saml-middleware development IdP (not for production)",
                        "endpoints": {
                            "single_sign_on_service": [
                                (self.sso_redirect_url, BINDING_HTTP_REDIRECT),
                                (self.sso_post_url, BINDING_HTTP_POST),
                            ],
                            "single_logout_service": [
                                (self.slo_url, BINDING_HTTP_REDIRECT),
                                (self.slo_url, BINDING_HTTP_POST),
                            ],
                        },
                        "name_id_format": [NAMEID_EMAIL],
                        "want_authn_requests_signed": False,
                        "sign_assertion": self.sign_assertion,
                        "sign_response": self.sign_response,
                    }
                },
            }
        )
        config.attribute_converters = [_EntraAttributes()]
        return config

    def metadata_xml(self) -> str:
        """The IdP's metadata (EntityDescriptor with an IDPSSODescriptor), unsigned."""
        with self._lock:
            if self._metadata is None:
                xml = create_metadata_string(None, config=self._config([]), sign=False)
                self._metadata = xml.decode("utf-8") if isinstance(xml, bytes) else str(xml)
            return self._metadata

    # -- the protocol ----------------------------------------------------------------

    def parse_authn_request(
        self,
        saml_request: str,
        binding: str,
        *,
        relay_state: str | None = None,
        sig_alg: str | None = None,
        signature: str | None = None,
    ) -> AuthnRequestInfo:
        """Decode and check an AuthnRequest from a trusted SP ("redirect" or "post" binding).

        For HTTP-Redirect, pass `sig_alg` and `signature` (the query's SigAlg and
        Signature) to have a signed request verified; a POSTed request's
        enveloped signature is verified when present. Raises DevIdPError.
        """
        if binding not in _BINDINGS:
            raise DevIdPError("binding must be 'redirect' or 'post'")
        if not saml_request or len(saml_request) > MAX_REQUEST_CHARS:
            raise DevIdPError("SAMLRequest is missing or too large")
        if binding == "redirect" and not _inflated_size_ok(saml_request):
            raise DevIdPError("SAMLRequest is not valid deflated Base64, or inflates too large")
        if self.trust_local_sps:
            self._discover(saml_request, binding)
        server = self._current_server()
        try:
            parsed = server.parse_authn_request(saml_request, _BINDINGS[binding])
        except Exception as exc:  # noqa: BLE001 - pysaml2 raises anything on bad input
            log.info("development IdP: unreadable AuthnRequest (%s: %s)", type(exc).__name__, exc)
            raise DevIdPError("SAMLRequest is not a valid AuthnRequest for this IdP") from None
        message = getattr(parsed, "message", None)
        if message is None or not message.id:
            raise DevIdPError("SAMLRequest is not a valid AuthnRequest for this IdP")
        sp_entity_id = message.issuer.text.strip() if message.issuer and message.issuer.text else ""
        if sp_entity_id not in self._sp_metadata:
            raise DevIdPError(f"unknown service provider {sp_entity_id[:200]!r}")
        signed = message.signature is not None
        if binding == "redirect" and signature:
            signed = self._redirect_signature_ok(
                server, sp_entity_id, saml_request, relay_state, sig_alg, signature
            )
        return AuthnRequestInfo(
            request_id=message.id,
            sp_entity_id=sp_entity_id,
            acs_url=self._requested_acs(server, sp_entity_id, message),
            signed=signed,
        )

    def _redirect_signature_ok(
        self,
        server: Server,
        sp_entity_id: str,
        saml_request: str,
        relay_state: str | None,
        sig_alg: str | None,
        signature: str,
    ) -> bool:
        if not sig_alg:
            raise DevIdPError("the request has a Signature but no SigAlg")
        query = {"SAMLRequest": saml_request, "SigAlg": sig_alg, "Signature": signature}
        if relay_state is not None:
            query["RelayState"] = relay_state
        certs = server.metadata.certs(sp_entity_id, "any", "signing")
        if not certs:
            raise DevIdPError("the request is signed but the SP's metadata has no signing key")
        try:
            ok = any(
                pysaml2_verify_redirect_signature(query, server.sec.sec_backend, c)
                for _, c in certs
            )
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            raise DevIdPError("the request's signature does not verify")
        return True

    def _requested_acs(self, server: Server, sp_entity_id: str, message: Any) -> str:
        """The ACS the request names (it must be in the SP's metadata) or the default one."""
        binding = message.protocol_binding
        if binding and binding != BINDING_HTTP_POST:
            raise DevIdPError("only the HTTP-POST binding is supported for the response")
        registered = self._acs_services(server, sp_entity_id)
        if message.assertion_consumer_service_url:
            url = message.assertion_consumer_service_url
            if url not in [srv["location"] for srv in registered]:
                # What Entra calls AADSTS50011 (reply URL mismatch).
                raise DevIdPError(
                    "the AssertionConsumerServiceURL in the request is not in the SP's metadata"
                )
            return str(url)
        if message.assertion_consumer_service_index is not None:
            for srv in registered:
                if str(srv.get("index")) == str(message.assertion_consumer_service_index):
                    return str(srv["location"])
            raise DevIdPError("the AssertionConsumerServiceIndex is not in the SP's metadata")
        return self._default_acs(server, sp_entity_id)

    @staticmethod
    def _acs_services(server: Server, sp_entity_id: str) -> list[dict[str, Any]]:
        try:
            return list(server.metadata.assertion_consumer_service(sp_entity_id, BINDING_HTTP_POST))
        except Exception:  # noqa: BLE001 - UnsupportedBinding, UnknownSystemEntity
            return []

    def _default_acs(self, server: Server, sp_entity_id: str) -> str:
        services = self._acs_services(server, sp_entity_id)
        if not services:
            raise DevIdPError(f"the SP {sp_entity_id[:200]!r} has no HTTP-POST ACS in its metadata")
        for srv in services:
            if str(srv.get("is_default", "")).lower() == "true":
                return str(srv["location"])
        return str(min(services, key=lambda s: int(s.get("index") or 0))["location"])

    def create_response(
        self,
        user_key: str,
        *,
        sp_entity_id: str,
        in_response_to: str | None,
        acs_url: str | None = None,
        sign_assertion: bool | None = None,
        sign_response: bool | None = None,
        encrypt_assertion: bool = False,
        encrypt_cert: str | None = None,
    ) -> str:
        """A signed SAML Response for `user_key`, Base64-encoded for an HTTP-POST form.

        `in_response_to=None` makes an unsolicited (IdP-initiated) response.
        Destination and Recipient are `acs_url`, which is used as given (tests
        may aim it anywhere) or else the SP's default ACS from its metadata.
        `encrypt_assertion` sends an EncryptedAssertion (signed inside first, when
        the assertion is signed) for `encrypt_cert` (PEM), by default the
        encryption certificate in the SP's metadata, with RSA-OAEP and
        AES-256-CBC, as Entra does.
        """
        user = self.users.get(user_key)
        if user is None:
            raise DevIdPError(f"unknown user {user_key[:100]!r}")
        server = self._current_server()
        if sp_entity_id not in self._sp_metadata:
            raise DevIdPError(f"unknown service provider {sp_entity_id[:200]!r}")
        destination = acs_url or self._default_acs(server, sp_entity_id)
        # pysaml2 silently sends the assertion in clear when it finds no certificate.
        if encrypt_assertion and not (
            encrypt_cert or server.metadata.certs(sp_entity_id, "any", "encryption")
        ):
            raise DevIdPError(
                f"the SP {sp_entity_id[:200]!r} has no encryption certificate in its metadata"
            )
        policy = _ReleaseAll(
            restrictions={"default": {"lifetime": {"minutes": ASSERTION_LIFETIME_MINUTES}}},
            mds=server.metadata,
        )
        response = server.create_authn_response(
            identity={name: list(values) for name, values in user.claims.items()},
            in_response_to=in_response_to,
            destination=destination,
            sp_entity_id=sp_entity_id,
            name_id=saml.NameID(format=NAMEID_EMAIL, text=user.name_id),
            authn={"class_ref": saml.AUTHN_PASSWORD},
            release_policy=policy,
            sign_assertion=self.sign_assertion if sign_assertion is None else sign_assertion,
            sign_response=self.sign_response if sign_response is None else sign_response,
            sign_alg=self.signing_algorithm,
            digest_alg=DIGEST_SHA256,
            encrypt_assertion=encrypt_assertion,
            encrypt_cert_assertion=encrypt_cert,
        )
        xml = response if isinstance(response, (str, bytes)) else str(response)
        if isinstance(xml, str):
            xml = xml.encode("utf-8")
        log.info("development IdP: signed in %s for %s", user.name_id, sp_entity_id)
        return base64.b64encode(xml).decode("ascii")


def _peek_issuer(saml_request: str, binding: str) -> str | None:
    """The Issuer of an encoded AuthnRequest (size already checked), or None.

    Read before pysaml2 parses the request, which needs the SP's metadata to
    check a signature; nothing here is trusted beyond choosing what to fetch.
    """
    try:
        raw = base64.b64decode(saml_request, validate=binding == "post")
        if binding == "redirect":
            xml = zlib.decompressobj(-15).decompress(raw, MAX_INFLATED_BYTES)
        else:
            xml = raw
        message = authn_request_from_string(xml)
    except Exception:  # noqa: BLE001 - defusedxml and pysaml2 raise anything on bad input
        return None
    if message is None or message.issuer is None or not message.issuer.text:
        return None
    return str(message.issuer.text).strip()


def _sp_entity_id(metadata_xml: str) -> str:
    """The entity ID of the one SP an SP metadata document describes."""
    if not isinstance(metadata_xml, str) or not metadata_xml.strip():
        raise DevIdPError("SP metadata is empty")
    try:
        md = InMemoryMetaData(None, metadata_xml, check_validity=False)
        md.parse(metadata_xml)
    except Exception as exc:  # noqa: BLE001 - pysaml2 raises anything on bad XML
        raise DevIdPError(f"SP metadata could not be read ({type(exc).__name__})") from None
    sps = [eid for eid, entity in md.items() if entity.get("spsso_descriptor")]
    if len(sps) != 1:
        raise DevIdPError(f"SP metadata must describe exactly one SP, not {len(sps)}")
    return str(sps[0])
