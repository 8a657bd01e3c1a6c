"""The SAML protocol layer: the only part of the middleware that talks to pysaml2.

`ServiceProvider` wraps one pysaml2 client for one SP/IdP pair. It builds
AuthnRequests and SP metadata, and verifies the IdP's Response in three stages:

1. cheap structural checks on a hardened lxml parse, before any cryptography
   (size, no DOCTYPE, the right root, no duplicate IDs, a Success status,
   exactly one assertion, allowed algorithms, the expected Issuers);
2. pysaml2's own verification (signatures against the metadata keys only,
   schema, status, conditions);
3. the checks pysaml2 skips or fails open on (a `None` result, Destination,
   Recipient, Audience present and ours, bearer confirmation, SubjectConfirmation
   window, InResponseTo agreement), read from the objects pysaml2 verified.

Every refusal is a `SAMLError` with a stable code. Nothing here touches the
store: the engine decides about outstanding requests and replays.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.response import StatusError, UnsolicitedResponse
from saml2.s_utils import UnravelError
from saml2.sigver import MissingKey, SignatureError, SigverError, get_xmlsec_binary
from saml2.validate import ResponseLifetimeExceed, ToEarly

from .config import Settings
from .errors import ConfigError, SAMLError
from .metadata import IdPInfo

log = logging.getLogger("saml_middleware.protocol")

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
_RESPONSE = f"{{{NS['samlp']}}}Response"
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
_STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_SHA1_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
    "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
    "http://www.w3.org/2000/09/xmldsig#sha1",
}
SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=False,
    remove_pis=False,
)


@dataclass(frozen=True)
class Outgoing:
    """How to send the browser to the IdP: a redirect URL or an auto-posted form."""

    url: str
    form: Mapping[str, str] | None = None  # None: HTTP-Redirect binding


@dataclass(frozen=True)
class VerifiedLogin:
    """What a Response proved, read from the verified assertion."""

    issuer: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    attributes: dict[str, list[str]]
    assertion_id: str
    response_id: str
    in_response_to: str | None
    expires_at: float  # epoch seconds: the latest NotOnOrAfter in the assertion


@dataclass(frozen=True)
class ResponseEnvelope:
    """What the structural pre-check learned (before any cryptography)."""

    xml: bytes
    in_response_to: str | None
    issuer: str | None
    assertion_issuer: str | None = None  # None when encrypted (checked after decryption)


def decode_post_message(value: str, max_bytes: int) -> bytes:
    """Strict Base64 of an HTTP-POST binding message (line breaks tolerated)."""
    compact = re.sub(r"[\r\n\t ]+", "", value)
    if not compact:
        raise SAMLError("malformed", "The SAML message is empty.", 400)
    if len(compact) * 3 // 4 > max_bytes:
        raise SAMLError("too_large", "The SAML message is too large.", 413)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SAMLError("malformed", "The SAML message is not valid Base64.", 400) from None


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML: no DTD, no entities, no network, no huge trees."""
    head = data.lstrip()[:1]
    if head not in (b"<", b"\xef"):  # "<" or a UTF-8 BOM
        raise SAMLError("malformed", "The SAML message is not XML.", 400)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SAMLError("dtd_forbidden", "The SAML message contains a DTD.", 400)
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError):
        raise SAMLError("malformed", "The SAML message is not well-formed XML.", 400) from None
    if root.getroottree().docinfo.doctype:
        raise SAMLError("dtd_forbidden", "The SAML message contains a DTD.", 400)
    return root


def inspect_response(data: bytes, *, reject_sha1: bool) -> ResponseEnvelope:
    """Structural checks that need no key: refuse early and cheaply."""
    root = parse_xml(data)
    if root.tag != _RESPONSE:
        raise SAMLError("malformed", "The SAML message is not a Response.", 400)
    ids = [value for value in root.xpath("//@ID")]
    if len(ids) != len(set(ids)):
        raise SAMLError("duplicate_id", "The SAML response repeats an element ID.")
    # An IdP that refuses sends its status and no assertion: say so, not "no assertion".
    status = root.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    if status and status[0].get("Value") != _STATUS_SUCCESS:
        raise SAMLError(
            "status_not_success",
            f"The IdP did not sign you in (status: {_status_name(status[0])}).",
        )
    # Exactly one assertion, as a child of the Response; any other one (hidden in
    # Extensions, a Signature's Object, ...) is a wrapping attempt. Assertions
    # inside Advice are allowed but never read.
    direct = root.xpath("saml:Assertion | saml:EncryptedAssertion", namespaces=NS)
    anywhere = root.xpath("//saml:Assertion | //saml:EncryptedAssertion", namespaces=NS)
    advised = root.xpath(
        "//saml:Advice//saml:Assertion | //saml:Advice//saml:EncryptedAssertion", namespaces=NS
    )
    if len(direct) != 1 or len(anywhere) - len(advised) != 1:
        raise SAMLError(
            "wrong_number_of_assertions", "The SAML response must hold exactly one assertion."
        )
    if reject_sha1:
        for node in root.xpath(
            "//ds:SignatureMethod/@Algorithm | //ds:DigestMethod/@Algorithm", namespaces=NS
        ):
            if str(node) in _SHA1_ALGORITHMS:
                raise SAMLError(
                    "disallowed_algorithm",
                    "The SAML response is signed with SHA-1, which is not allowed.",
                )
    plain = root.find("saml:Assertion", namespaces=NS)  # None: an EncryptedAssertion
    assertion_issuer = None if plain is None else _text(plain.find("saml:Issuer", NS)) or ""
    issuer = _text(root.find("saml:Issuer", namespaces=NS))
    return ResponseEnvelope(
        data,
        root.get("InResponseTo") or None,
        issuer if issuer is not None else assertion_issuer,
        assertion_issuer,
    )


def _text(node: etree._Element | None) -> str | None:
    """All the text of an element: never lxml's `.text`, which stops at a comment."""
    return None if node is None else str(node.xpath("string()")).strip()


def _status_name(status_code: etree._Element) -> str:
    """`Responder/AuthnFailed` from the (nested) StatusCode URIs, safe to show."""
    names = []
    for node in status_code.iter(f"{{{NS['samlp']}}}StatusCode"):
        name = (node.get("Value") or "").rsplit(":", 1)[-1]
        names.append(name if re.fullmatch(r"[A-Za-z]{1,40}", name) else "unknown")
    return "/".join(names[:3])


def _epoch(value: str | None) -> float | None:
    """SAML dateTime (UTC, optional fraction) -> epoch seconds."""
    if not value:
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:00)?", value.strip())
    if not m:
        raise SAMLError("malformed", "The SAML response has an invalid timestamp.", 400)
    stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return stamp.timestamp() + float(m.group(2) or 0)


class _NoPopulation:
    """Replaces pysaml2's in-memory identity cache, which grows with every login."""

    def add_information_about_person(self, session_info: Any) -> None:
        pass


class ServiceProvider:
    """One pysaml2 client for one SP and one IdP description; built once, reused."""

    def __init__(self, settings: Settings, idp: IdPInfo) -> None:
        self.settings = settings
        self.idp = idp
        self.acs_url = settings.acs_url
        self._keydir: str | None = None
        config = SPConfig()
        try:
            config.load(self._pysaml2_config())
        except Exception as exc:  # pysaml2 raises bare exceptions for bad metadata
            raise ConfigError("idp", f"pysaml2 could not load the IdP metadata ({exc})") from None
        self.client = Saml2Client(config=config)
        self.client.users = _NoPopulation()

    def __del__(self) -> None:
        if self._keydir:
            shutil.rmtree(self._keydir, ignore_errors=True)

    def _key_files(self) -> dict[str, Any]:
        sp = self.settings.sp
        if not (sp.key_pem and sp.cert_pem):
            return {}
        self._keydir = tempfile.mkdtemp(prefix="saml-sp-")
        key_file = os.path.join(self._keydir, "sp.key")
        cert_file = os.path.join(self._keydir, "sp.crt")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(sp.key_pem)
        with open(cert_file, "w") as fh:
            fh.write(sp.cert_pem)
        return {
            "key_file": key_file,
            "cert_file": cert_file,
            "encryption_keypairs": [{"key_file": key_file, "cert_file": cert_file}],
        }

    def _pysaml2_config(self) -> dict[str, Any]:
        s = self.settings
        try:
            xmlsec = get_xmlsec_binary()
        except SigverError:
            raise ConfigError(
                "security", "the xmlsec1 program is required (Debian: apt-get install xmlsec1)"
            ) from None
        return {
            "entityid": s.sp.entity_id,
            "xmlsec_binary": xmlsec,
            "metadata": {"inline": [self.idp.xml]},
            "allow_unknown_attributes": True,
            "accepted_time_diff": s.security.clock_skew_seconds,
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(self.acs_url, BINDING_HTTP_POST)],
                    },
                    "want_assertions_signed": s.security.want_assertions_signed,
                    "want_response_signed": s.security.want_response_signed,
                    "allow_unsolicited": s.security.allow_idp_initiated,
                    "authn_requests_signed": s.sp.sign_authn_requests,
                    "name_id_format": s.sp.name_id_format,
                    "name_id_format_allow_create": True,
                    "only_use_keys_in_metadata": True,
                },
            },
            **self._key_files(),
        }

    # -- outgoing ---------------------------------------------------------------

    def metadata_xml(self) -> str:
        """The SP's metadata document (entity ID, ACS, NameID format, certificates)."""
        return str(entity_descriptor(self.client.config))

    def authn_request(self, relay_state: str) -> tuple[str, Outgoing]:
        """A new AuthnRequest: its ID (to remember) and how to send it."""
        idp = self.idp
        sign = self.settings.sp.sign_authn_requests
        if idp.sso_redirect_url:
            binding, destination = BINDING_HTTP_REDIRECT, idp.sso_redirect_url
        elif idp.sso_post_url:
            binding, destination = BINDING_HTTP_POST, idp.sso_post_url
        else:  # metadata.py guarantees one of them
            raise SAMLError("idp_unavailable", "The IdP has no single sign-on endpoint.", 503)
        request_id, request = self.client.create_authn_request(
            destination,
            binding=BINDING_HTTP_POST,
            sign=sign and binding == BINDING_HTTP_POST,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        if binding == BINDING_HTTP_POST:
            encoded = base64.b64encode(str(request).encode("utf-8")).decode("ascii")
            return request_id, Outgoing(
                destination, {"SAMLRequest": encoded, "RelayState": relay_state}
            )
        info = self.client.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(request),
            destination,
            relay_state=relay_state,
            sign=sign,
            sigalg=SIG_RSA_SHA256 if sign else None,
        )
        location = dict(info["headers"])["Location"]
        return request_id, Outgoing(location)

    # -- incoming ---------------------------------------------------------------

    def verify_response(
        self,
        envelope: ResponseEnvelope,
        *,
        outstanding_id: str | None,
        now: float | None = None,
    ) -> VerifiedLogin:
        """Full verification of a Response whose structure already passed `inspect_response`.

        `outstanding_id` is the request it answers (the engine has found it in
        the store) or None for an IdP-initiated response.
        """
        if envelope.issuer != self.idp.entity_id:
            raise SAMLError("wrong_issuer", "The SAML response comes from an unexpected issuer.")
        if envelope.assertion_issuer not in (None, self.idp.entity_id):
            raise SAMLError("wrong_issuer", "The SAML assertion comes from an unexpected issuer.")
        if envelope.in_response_to and envelope.in_response_to != outstanding_id:
            raise SAMLError(
                "wrong_in_response_to",
                "The SAML response answers a request this site did not make.",
            )
        if not envelope.in_response_to and not self.settings.security.allow_idp_initiated:
            raise SAMLError("unsolicited", "Sign-in started at the IdP is not allowed here.")
        outstanding = {outstanding_id: "login"} if outstanding_id else {}
        encoded = base64.b64encode(envelope.xml).decode("ascii")
        result = self._pysaml2_parse(encoded, outstanding)
        return self._check_verified(result, envelope, now if now is not None else time.time())

    def _pysaml2_parse(self, encoded: str, outstanding: dict[str, str]) -> Any:
        try:
            result = self.client.parse_authn_request_response(
                encoded, BINDING_HTTP_POST, outstanding=outstanding
            )
        except StatusError as exc:
            status = type(exc).__name__.removeprefix("Status") or "Error"
            raise SAMLError(
                "status_not_success", f"The IdP did not sign you in (status: {status})."
            ) from None
        except UnsolicitedResponse:
            if outstanding:  # a SubjectConfirmation answers another request than the Response
                raise SAMLError(
                    "wrong_in_response_to", "The SAML response is inconsistent."
                ) from None
            raise SAMLError(
                "unsolicited", "Sign-in started at the IdP is not allowed here."
            ) from None
        except ResponseLifetimeExceed:
            raise SAMLError("expired", "The SAML assertion has expired.") from None
        except ToEarly:
            raise SAMLError("not_yet_valid", "The SAML assertion is not valid yet.") from None
        except MissingKey:
            raise SAMLError(
                "untrusted_key", "The SAML response is not signed by the IdP."
            ) from None
        except (SignatureError, SigverError) as exc:
            if "signature missing" in str(exc).lower():
                raise SAMLError(
                    "signature_required", "The SAML response is not signed as required."
                ) from None
            raise SAMLError(
                "invalid_signature", "The SAML response signature is not valid."
            ) from None
        except UnravelError:
            raise SAMLError("malformed", "The SAML message could not be decoded.", 400) from None
        except Exception as exc:  # pysaml2 raises many bare exception types
            log.info("pysaml2 refused the response: %s: %.200s", type(exc).__name__, exc)
            for phrase, code, reason in _PYSAML2_REFUSALS:
                if phrase in str(exc):
                    raise SAMLError(code, reason) from None
            if "signature" in str(exc).lower() or "signed" in str(exc).lower():
                raise SAMLError(
                    "signature_required", "The SAML response is not signed as required."
                ) from None
            raise SAMLError("invalid_response", "The SAML response is not valid.") from None
        return result

    def _check_verified(self, result: Any, envelope: ResponseEnvelope, now: float) -> VerifiedLogin:
        """The checks pysaml2 skips or fails open on, on the objects it verified."""
        if result is None or result.response is None:
            raise SAMLError("invalid_response", "The SAML response is not valid.")
        response: samlp.Response = result.response
        # Before the assertion test: a wrong Destination is why pysaml2 left it out.
        if response.destination != self.acs_url:
            raise SAMLError(
                "wrong_destination",
                "The SAML response was sent to another address than this site's.",
            )
        if result.assertion is None:
            raise SAMLError("invalid_response", "The SAML response is not valid.")
        assertion: saml.Assertion = result.assertion
        skew = self.settings.security.clock_skew_seconds
        if (
            response.issuer is not None
            and (response.issuer.text or "").strip() != self.idp.entity_id
        ):
            raise SAMLError("wrong_issuer", "The SAML response comes from an unexpected issuer.")
        if assertion.issuer is None or (assertion.issuer.text or "").strip() != self.idp.entity_id:
            raise SAMLError("wrong_issuer", "The SAML assertion comes from an unexpected issuer.")
        if response.in_response_to != envelope.in_response_to:
            raise SAMLError("wrong_in_response_to", "The SAML response is inconsistent.")
        conditions = assertion.conditions
        restrictions = conditions.audience_restriction if conditions is not None else []
        if not restrictions:
            raise SAMLError("wrong_audience", "The SAML assertion names no audience.")
        for restriction in restrictions:
            audiences = {(a.text or "").strip() for a in restriction.audience}
            if self.settings.sp.entity_id not in audiences:
                raise SAMLError("wrong_audience", "The SAML assertion is meant for another site.")
        not_before = _epoch(conditions.not_before)
        not_on_or_after = _epoch(conditions.not_on_or_after)
        if not_before is not None and now + skew < not_before:
            raise SAMLError("not_yet_valid", "The SAML assertion is not valid yet.")
        if not_on_or_after is not None and now - skew >= not_on_or_after:
            raise SAMLError("expired", "The SAML assertion has expired.")
        subject = assertion.subject
        name_id = subject.name_id if subject is not None else None
        if name_id is None or not (name_id.text or "").strip():
            raise SAMLError("no_nameid", "The SAML assertion does not name a user.")
        scd_expiry = self._check_confirmation(subject, envelope.in_response_to, now, skew)
        session_index = None
        if assertion.authn_statement:
            statement = assertion.authn_statement[0]
            session_index = statement.session_index
            session_end = _epoch(statement.session_not_on_or_after)
            if session_end is not None and now - skew >= session_end:
                raise SAMLError("expired", "The IdP session has already ended.")
        else:
            raise SAMLError(
                "invalid_response", "The SAML assertion has no authentication statement."
            )
        expiries = [t for t in (not_on_or_after, scd_expiry) if t is not None]
        return VerifiedLogin(
            issuer=self.idp.entity_id,
            name_id=name_id.text.strip(),
            name_id_format=name_id.format,
            session_index=session_index,
            attributes=_attributes(assertion),
            assertion_id=assertion.id,
            response_id=response.id,
            in_response_to=envelope.in_response_to,
            expires_at=max(expiries) + skew,
        )

    def _check_confirmation(
        self, subject: Any, in_response_to: str | None, now: float, skew: int
    ) -> float:
        """A bearer SubjectConfirmation for this ACS, in its window; returns its expiry."""
        problem = "The SAML assertion has no valid bearer confirmation for this site."
        code = "wrong_recipient"
        for confirmation in subject.subject_confirmation or []:
            if confirmation.method != _BEARER:
                code = "wrong_confirmation"
                continue
            data = confirmation.subject_confirmation_data
            if data is None or data.recipient != self.acs_url:
                continue
            expiry = _epoch(data.not_on_or_after)
            if expiry is None or now - skew >= expiry:
                code = "expired"
                problem = "The SAML assertion has expired."
                continue
            if data.not_before is not None:  # forbidden on a bearer confirmation
                code = "wrong_confirmation"
                continue
            if (data.in_response_to or None) != in_response_to:
                code = "wrong_in_response_to"
                problem = "The SAML response is inconsistent."
                continue
            return expiry
        raise SAMLError(code, problem)


# pysaml2 refuses these with bare exceptions; the phrase tells which check failed.
_PYSAML2_REFUSALS = (
    (
        "AudienceRestrictions conditions not satisfied",
        "wrong_audience",
        "The SAML assertion is meant for another site.",
    ),
    (
        "No valid recipient",
        "wrong_recipient",
        "The SAML assertion has no valid bearer confirmation for this site.",
    ),
    (
        "No valid subject confirmation",
        "wrong_confirmation",
        "The SAML assertion has no valid bearer confirmation for this site.",
    ),
)


def _attributes(assertion: saml.Assertion) -> dict[str, list[str]]:
    """Every attribute as sent (claim name -> values): nothing mapped, nothing dropped."""
    found: dict[str, list[str]] = {}
    for statement in assertion.attribute_statement or []:
        for attribute in statement.attribute or []:
            values = found.setdefault(attribute.name, [])
            for value in attribute.attribute_value or []:
                if value.text is not None:
                    values.append(value.text.strip())
    return found


def redirect_with(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` appended to its query string."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
