"""The service provider: the part of the protocol layer (saml/) that talks to pysaml2.

`ServiceProvider` wraps one pysaml2 client for one SP/IdP pair. It builds
AuthnRequests and SP metadata, and verifies the IdP's Response in three stages:

1. cheap structural checks on a hardened lxml parse, before any cryptography
   (size, UTF-8 only, no DOCTYPE, the right root, no duplicate IDs, a Success
   status, exactly one assertion, every signature where it belongs and made
   with allow-listed algorithms and transforms, the expected Issuers);
2. the signatures (metadata keys only), decryption and schema: by pysaml2 with
   the `xmlsec1` backend; with the in-process backend natively, on the same
   lxml tree, without pysaml2 (`_verify_native`);
3. one set of semantic checks (`rules.check_facts`: Destination, Issuers,
   InResponseTo, Audience, times, bearer confirmation, AuthnStatement, and what
   pysaml2 enforced implicitly) on the facts read from what was verified.

Every refusal is a `SAMLError` with a stable code. Nothing here touches the
store: the engine decides about outstanding requests and replays. The codes of
`UNVERIFIABLE` (signature, key, algorithm, decryption) are told apart only in
the operator's log: `public_error` gives them one face for the browser, so the
SP is no oracle for forged signatures or ciphertexts.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.response import AuthnResponse, StatusError, UnsolicitedResponse
from saml2.s_utils import UnravelError
from saml2.sigver import (
    DecryptError,
    MissingKey,
    SignatureError,
    SigverError,
    get_xmlsec_binary,
    pem_format,
)
from saml2.validate import ResponseLifetimeExceed, ToEarly

from ..config import Settings
from ..errors import ConfigError, SAMLError
from ..metadata import IdPInfo
from ..routing import url_in
from .algorithms import (
    BLOCK_CIPHERS,
    C14N_METHODS,
    ENVELOPED,
    KEY_TRANSPORT_METHODS,
    MAX_TRANSFORMS,
    RSA_SHA256,
    SHA256,
    TRANSFORMS,
    digest_methods,
    signature_methods,
)
from .crypto import (
    CryptoBackendError,
    XmlSecBackend,
    in_schema_order,
    validate_schema,
)
from .crypto import install as install_crypto
from .rules import (
    Confirmation,
    EntityName,
    Expectations,
    Facts,
    VerifiedLogin,
    check_destination,
    check_facts,
    check_issue_instant,
    facts_from_tree,
    joined_text,
    name_id_value,
)
from .xml import NS, XENC, UnsafeXML, text
from .xml import parse as parse_hardened

log = logging.getLogger("saml_middleware.protocol")

_RESPONSE = f"{{{NS['samlp']}}}Response"
_ASSERTION = f"{{{NS['saml']}}}Assertion"
_STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
# Refusals about signatures, keys, algorithms and decryption. Telling them apart
# from outside would make the SP an oracle (which forged signature got further,
# which ciphertext decrypted: the XML Encryption padding attacks), so the
# browser gets one status, one code and one text for all of them; the log keeps
# the real code.
UNVERIFIABLE = frozenset(
    {
        "signature_required",
        "invalid_signature",
        "untrusted_key",
        "disallowed_algorithm",
        "invalid_signed_element",
        "decryption_failed",
    }
)
UNVERIFIABLE_CODE = "invalid_signature"
UNVERIFIABLE_REASON = (
    "The sign-in answer could not be verified. Please sign in again; "
    "if this keeps happening, contact your administrator."
)


@dataclass(frozen=True)
class Outgoing:
    """How to send the browser to the IdP: a redirect URL or an auto-posted form."""

    url: str
    form: Mapping[str, str] | None = None  # None: HTTP-Redirect binding


@dataclass(frozen=True)
class ResponseEnvelope:
    """What the structural pre-check learned (before any cryptography)."""

    xml: bytes
    in_response_to: str | None
    issuer: str | None
    assertion_issuer: str | None = None  # None when encrypted (checked after decryption)
    encrypted: bool = False  # the assertion is an EncryptedAssertion
    # The checked lxml tree of `xml`: the in-process backend verifies signatures on
    # it instead of parsing the same bytes again (read-only: never changed).
    root: etree._Element | None = field(default=None, compare=False, repr=False)


# What a POSTed Base64 message may carry besides Base64 (dropped before decoding).
_LINE_BREAKS = str.maketrans("", "", "\r\n\t ")


def decode_post_message(value: str, max_bytes: int) -> bytes:
    """Strict Base64 of an HTTP-POST binding message (line breaks tolerated).

    Never inflated: a POSTed message is plain Base64 (pysaml2 would try DEFLATE
    first, unbounded).
    """
    compact = value.translate(_LINE_BREAKS)
    if not compact:
        raise SAMLError("malformed", "The SAML message is empty.", 400)
    if len(compact) * 3 // 4 > max_bytes:
        raise SAMLError("too_large", "The SAML message is too large.", 413)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SAMLError("malformed", "The SAML message is not valid Base64.", 400) from None


def decode_redirect_message(value: str, max_bytes: int) -> bytes:
    """An HTTP-Redirect binding message: Base64, then raw DEFLATE inflated to <= `max_bytes`."""
    if len(value) > max_bytes:
        raise SAMLError("too_large", "The SAML message is too large.", 413)
    if not value:
        raise SAMLError("malformed", "The SAML message is empty.", 400)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SAMLError("malformed", "The SAML message is not valid Base64.", 400) from None
    return inflate(raw, max_bytes)


def inflate(data: bytes, max_bytes: int) -> bytes:
    """Raw DEFLATE (RFC 1951) with a hard cap on the output: no decompression bombs.

    At most `max_bytes + 1` bytes are ever produced, whatever the input claims;
    more is 413 `too_large`, and a truncated or trailing-garbage stream is 400.
    """
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        raise SAMLError("malformed", "The SAML message is not valid DEFLATE data.", 400) from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SAMLError("too_large", "The SAML message inflates too large.", 413)
    if not inflater.eof or inflater.unused_data:
        raise SAMLError("malformed", "The SAML message is not valid DEFLATE data.", 400)
    return out


def parse_xml(data: bytes) -> etree._Element:
    """Parse an untrusted SAML message (saml/xml.py: UTF-8 only, no DTD, bounded depth)."""
    try:
        return parse_hardened(data)
    except UnsafeXML as err:
        raise SAMLError(err.code, err.reason, 400) from None


def _xpath(expression: str) -> etree.XPath:
    """Compiled once (lxml's XPath objects are safe to share between threads)."""
    return etree.XPath(expression, namespaces={**NS, "xenc": XENC})


_DIRECT_ASSERTIONS = _xpath("saml:Assertion | saml:EncryptedAssertion")
_ALL_ASSERTIONS = _xpath("//saml:Assertion | //saml:EncryptedAssertion")
_ADVISED_ASSERTIONS = _xpath(
    "//saml:Advice//saml:Assertion | //saml:Advice//saml:EncryptedAssertion"
)
_ALL_IDS = _xpath("//@ID | //@Id | //@id | //@xml:id")
_STATUS_CODE = _xpath("samlp:Status/samlp:StatusCode")
_NESTED_STATUS_CODES = _xpath(".//samlp:StatusCode")
_SIGNATURES = _xpath("//ds:Signature")
_SIGNATURE_PARTS = {
    part: _xpath(f"count(//ds:{part})")
    for part in ("SignedInfo", "Reference", "DigestValue", "SignatureValue")
}
_ANY_OBJECT = _xpath("boolean(//ds:Object)")
_RETRIEVAL_URIS = _xpath("//ds:RetrievalMethod/@URI")
_SIGNED_INFO = _xpath("ds:SignedInfo")
_SIGNATURE_VALUE = _xpath("ds:SignatureValue")
_C14N_METHOD = _xpath("ds:CanonicalizationMethod/@Algorithm")
_SIGNATURE_METHOD = _xpath("ds:SignatureMethod/@Algorithm")
_REFERENCES = _xpath("ds:Reference")
_TRANSFORM_ALGORITHMS = _xpath("ds:Transforms/ds:Transform/@Algorithm")
_TRANSFORMS = _xpath("ds:Transforms/ds:Transform")
_DIGEST_METHOD = _xpath("ds:DigestMethod/@Algorithm")


def inspect_response(
    data: bytes,
    *,
    reject_sha1: bool,
    key_transport: Collection[str] = KEY_TRANSPORT_METHODS,
    data_encryption: Collection[str] = BLOCK_CIPHERS,
) -> ResponseEnvelope:
    """Structural checks that need no key: refuse early and cheaply.

    `key_transport` and `data_encryption` are the algorithms an encrypted
    assertion may use (`security.allowed_key_transport` / `allowed_data_encryption`).
    """
    root = parse_xml(data)
    if root.tag != _RESPONSE:
        raise SAMLError("malformed", "The SAML message is not a Response.", 400)
    _check_unique_ids(root)
    _check_status(root)
    # Exactly one assertion, as a child of the Response; any other one (hidden in
    # Extensions, a Signature's Object, ...) is a wrapping attempt. Assertions
    # inside Advice are allowed but never read.
    direct = _DIRECT_ASSERTIONS(root)
    anywhere = _ALL_ASSERTIONS(root)
    advised = _ADVISED_ASSERTIONS(root)
    if len(direct) != 1 or len(anywhere) - len(advised) != 1:
        raise SAMLError(
            "wrong_number_of_assertions", "The SAML response must hold exactly one assertion."
        )
    check_signatures(root, reject_sha1=reject_sha1)
    encrypted = direct[0].tag != _ASSERTION
    if encrypted:
        _check_encryption(direct[0], key_transport, data_encryption)
    assertion_issuer = None if encrypted else text(direct[0].find("saml:Issuer", NS)) or ""
    issuer = text(root.find("saml:Issuer", namespaces=NS))
    return ResponseEnvelope(
        data,
        root.get("InResponseTo") or None,
        issuer if issuer is not None else assertion_issuer,
        assertion_issuer,
        encrypted,
        root,
    )


def _check_unique_ids(root: etree._Element) -> None:
    """No ID twice, on any element, under any ID-like name (xmlsec keeps the first)."""
    ids = [str(value) for value in _ALL_IDS(root)]
    if len(ids) != len(set(ids)):
        raise SAMLError("duplicate_id", "The SAML response repeats an element ID.")


def _check_status(root: etree._Element) -> None:
    """A Status, and Success with no second-level code; else name the IdP's status."""
    # An IdP that refuses sends its status and no assertion: say so, not "no assertion".
    status = _STATUS_CODE(root)
    if not status:
        raise SAMLError("status_not_success", "The IdP did not sign you in (no status).")
    nested = _NESTED_STATUS_CODES(status[0])
    if status[0].get("Value") != _STATUS_SUCCESS or nested:
        raise SAMLError(
            "status_not_success",
            f"The IdP did not sign you in (status: {_status_name(status[0])}).",
        )


def _refuse_algorithm(kind: str, algorithm: str | None) -> SAMLError:
    shown = re.sub(r"[^A-Za-z0-9:/#._-]", "?", algorithm or "none")[:120]
    return SAMLError(
        "disallowed_algorithm", f"The SAML response uses a {kind} that is not allowed ({shown})."
    )


def _wrong_signed_element(problem: str) -> SAMLError:
    return SAMLError("invalid_signed_element", f"The SAML response signature {problem}.")


def check_signatures(root: etree._Element, *, reject_sha1: bool) -> None:
    """Every ds:Signature: where it may be, what it may reference, which algorithms.

    A signature must be the direct child of a Response or an Assertion, carry
    one SignedInfo with one Reference whose URI is `#` + that parent's ID, no
    ds:Object, at most two allow-listed transforms (the enveloped one among
    them), and allow-listed c14n, signature and digest methods. No SignedInfo,
    Reference, DigestValue or SignatureValue may sit outside such a signature
    (smuggled copies for a parser that takes the first match).
    """
    signatures = _SIGNATURES(root)
    for part, count in _SIGNATURE_PARTS.items():
        if int(count(root)) != len(signatures):
            raise _wrong_signed_element(f"has a stray or repeated {part}")
    if _ANY_OBJECT(root):
        raise _wrong_signed_element("carries a ds:Object")
    for node in _RETRIEVAL_URIS(root):
        if not str(node).startswith("#"):
            raise _refuse_algorithm("remote key reference", str(node))
    allowed_signatures = signature_methods(reject_sha1)
    allowed_digests = digest_methods(reject_sha1)
    for signature in signatures:
        parent = signature.getparent()
        if parent is None or parent.tag not in (_RESPONSE, _ASSERTION) or not parent.get("ID"):
            raise _wrong_signed_element("is on an element that may not be signed")
        signed_info = _SIGNED_INFO(signature)
        if len(signed_info) != 1 or len(_SIGNATURE_VALUE(signature)) != 1:
            raise _wrong_signed_element("is incomplete")
        c14n = _C14N_METHOD(signed_info[0])
        if len(c14n) != 1 or str(c14n[0]) not in C14N_METHODS:
            raise _refuse_algorithm("canonicalization method", str(c14n[0]) if c14n else None)
        method = _SIGNATURE_METHOD(signed_info[0])
        if len(method) != 1 or str(method[0]) not in allowed_signatures:
            raise _refuse_algorithm("signature algorithm", str(method[0]) if method else None)
        references = _REFERENCES(signed_info[0])
        if len(references) != 1:
            raise _wrong_signed_element("must have exactly one reference")
        reference = references[0]
        transforms = [str(a) for a in _TRANSFORM_ALGORITHMS(reference)]
        if len(_TRANSFORMS(reference)) != len(transforms):
            raise _refuse_algorithm("transform", None)
        for transform in transforms:
            if transform not in TRANSFORMS:
                raise _refuse_algorithm("transform", transform)
        if len(transforms) > MAX_TRANSFORMS or ENVELOPED not in transforms:
            raise _refuse_algorithm("transform list", " ".join(transforms))
        digest = _DIGEST_METHOD(reference)
        if len(digest) != 1 or str(digest[0]) not in allowed_digests:
            raise _refuse_algorithm("digest algorithm", str(digest[0]) if digest else None)
        if reference.get("URI") != f"#{parent.get('ID')}":
            raise _wrong_signed_element("does not reference the element it is on")


def _check_encryption(
    encrypted_assertion: etree._Element,
    key_transport: Collection[str],
    data_encryption: Collection[str],
) -> None:
    """One EncryptedData, allow-listed key transport and block cipher (both backends)."""
    data = encrypted_assertion.xpath("xenc:EncryptedData", namespaces={"xenc": XENC})
    if len(data) != 1:
        raise SAMLError("decryption_failed", "The encrypted assertion is malformed.")
    ciphers = data[0].xpath("xenc:EncryptionMethod/@Algorithm", namespaces={"xenc": XENC})
    if len(ciphers) != 1 or str(ciphers[0]) not in data_encryption:
        raise _refuse_algorithm(
            "encryption algorithm (security.allowed_data_encryption)",
            str(ciphers[0]) if ciphers else None,
        )
    keys = encrypted_assertion.xpath(
        ".//xenc:EncryptedKey/xenc:EncryptionMethod/@Algorithm", namespaces={"xenc": XENC}
    )
    if not keys:
        raise SAMLError("decryption_failed", "The encrypted assertion carries no key.")
    for key in keys:
        if str(key) not in key_transport:
            raise _refuse_algorithm(
                "key transport algorithm (security.allowed_key_transport)", str(key)
            )


def public_error(err: SAMLError) -> SAMLError:
    """What the browser may learn of a refusal: `UNVERIFIABLE` codes all look alike."""
    if err.code in UNVERIFIABLE:
        return SAMLError(UNVERIFIABLE_CODE, UNVERIFIABLE_REASON, 403)
    return err


def _decryption_failed() -> SAMLError:
    return SAMLError("decryption_failed", "The encrypted assertion could not be decrypted.")


def _status_name(status_code: etree._Element) -> str:
    """`Responder/AuthnFailed` from the (nested) StatusCode URIs, safe to show."""
    names = []
    for node in status_code.iter(f"{{{NS['samlp']}}}StatusCode"):
        name = (node.get("Value") or "").rsplit(":", 1)[-1]
        names.append(name if re.fullmatch(r"[A-Za-z]{1,40}", name) else "unknown")
    return "/".join(names[:3])


class _NoPopulation:
    """Replaces pysaml2's in-memory identity cache, which grows with every login."""

    def add_information_about_person(self, session_info: Any) -> None:
        pass


class _AuthnResponse(AuthnResponse):  # type: ignore[misc]
    """pysaml2's AuthnResponse without its one eager debug message.

    Upstream's `get_identity` logs every attribute statement with an f-string,
    so the statement is serialised to XML (about a tenth of a login's time)
    whether or not debug logging is on. This is the same method, pysaml2 7.5,
    with that message made lazy.
    """

    def get_identity(self) -> dict[str, Any]:
        ava: dict[str, Any] = {}
        for _assertion in self.assertions:
            if _assertion.advice and _assertion.advice.assertion:
                for tmp_assertion in _assertion.advice.assertion:
                    if tmp_assertion.attribute_statement:
                        n_attr_statements = len(tmp_assertion.attribute_statement)
                        if n_attr_statements != 1:
                            raise ValueError(
                                "Invalid number of AuthnStatement found in Response: "
                                f"{n_attr_statements}"
                            )
                        ava.update(
                            self.read_attribute_statement(tmp_assertion.attribute_statement[0])
                        )
            if _assertion.attribute_statement:
                for _attr_statem in _assertion.attribute_statement:
                    _pysaml2_log.debug("Attribute Statement: %s", _attr_statem)
                    ava.update(self.read_attribute_statement(_attr_statem))
        return ava


_pysaml2_log = logging.getLogger("saml2.response")


class _Client(Saml2Client):  # type: ignore[misc]
    """A Saml2Client whose AuthnResponses are `_AuthnResponse`s (nothing else differs)."""

    def _parse_response(
        self, xmlstr: Any, response_cls: Any, service: Any, binding: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if response_cls is AuthnResponse:
            response_cls = _AuthnResponse
            # pysaml2's own Destination test compares as ours does (routing.url_in).
            kwargs["return_addrs"] = _AcsURLs(kwargs.get("return_addrs") or ())
        return super()._parse_response(xmlstr, response_cls, service, binding, *args, **kwargs)


class _AcsURLs(list[str]):
    """pysaml2's `return_addrs` with `in` meaning `routing.url_in`."""

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and url_in(url, self)


class ServiceProvider:
    """One pysaml2 client for one SP and one IdP description; built once, reused."""

    def __init__(self, settings: Settings, idp: IdPInfo) -> None:
        self.settings = settings
        self.idp = idp
        self.acs_url = settings.acs_url  # sent in AuthnRequests; any of acs_urls is accepted
        self._keydir: str | None = None
        config = SPConfig()
        try:
            config.load(self._pysaml2_config())
        except Exception as exc:  # pysaml2 raises bare exceptions for bad metadata
            raise ConfigError("idp", f"pysaml2 could not load the IdP metadata ({exc})") from None
        self.client = _Client(config=config)
        self.client.users = _NoPopulation()
        security = settings.security
        self._expect = Expectations(
            acs_urls=settings.acs_urls,
            sp_entity_id=settings.sp.entity_id,
            idp_entity_id=idp.entity_id,
            clock_skew=security.clock_skew_seconds,
            want_assertions_signed=security.want_assertions_signed,
            want_response_signed=security.want_response_signed,
        )
        # The native path (no pysaml2 on the ACS): in-process backend only.
        self._native: XmlSecBackend | None = None
        if security.crypto_backend == "inprocess":
            try:
                backend = install_crypto(
                    self.client,
                    reject_sha1=security.reject_sha1,
                    key_transport=security.allowed_key_transport,
                    data_encryption=security.allowed_data_encryption,
                )
            except CryptoBackendError as exc:
                raise ConfigError("security.crypto_backend", str(exc)) from None
            self._native = backend
        # The keys pysaml2 would pick for the IdP's entity ID (metadata only).
        try:
            found = self.client.metadata.certs(idp.entity_id, "any", "signing")
        except KeyError:
            found = []
        self._signing_certs = [pem_format(cert) for _n, cert in found if isinstance(cert, str)]

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
        backend: dict[str, Any]
        if s.security.crypto_backend == "xmlsec1":
            try:
                backend = {"xmlsec_binary": get_xmlsec_binary()}
            except SigverError:
                raise ConfigError(
                    "security.crypto_backend",
                    "the xmlsec1 program is required (Debian: apt-get install xmlsec1), "
                    "or choose 'inprocess'",
                ) from None
        else:  # pysaml2's own backend object is replaced by crypto.install()
            backend = {"crypto_backend": "XMLSecurity"}
        return {
            "entityid": s.sp.entity_id,
            **backend,
            "metadata": {"inline": [self.idp.xml]},
            "allow_unknown_attributes": True,
            "accepted_time_diff": s.security.clock_skew_seconds,
            "signing_algorithm": RSA_SHA256,
            "digest_algorithm": SHA256,
            "service": {
                "sp": {
                    "endpoints": {
                        # Indexed from 1 in this order: the first is sent, and the default.
                        "assertion_consumer_service": [
                            (url, BINDING_HTTP_POST) for url in s.acs_urls
                        ],
                        # Single Logout (logout_messages.py, engine.sls): both bindings, one URL.
                        "single_logout_service": [
                            (s.endpoint_url("sls"), BINDING_HTTP_REDIRECT),
                            (s.endpoint_url("sls"), BINDING_HTTP_POST),
                        ],
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
        """The SP's metadata document (entity ID, ACS URLs, NameID format, certificates)."""
        descriptor = entity_descriptor(self.client.config)
        descriptor.spsso_descriptor.assertion_consumer_service[0].is_default = "true"
        return str(descriptor)

    def authn_request(self, relay_state: str, request_id: str) -> Outgoing:
        """A new AuthnRequest with the ID the engine chose, and how to send it."""
        idp = self.idp
        sign = self.settings.sp.sign_authn_requests
        if idp.sso_redirect_url:
            binding, destination = BINDING_HTTP_REDIRECT, idp.sso_redirect_url
        elif idp.sso_post_url:
            binding, destination = BINDING_HTTP_POST, idp.sso_post_url
        else:  # metadata.py guarantees one of them
            raise SAMLError("idp_unavailable", "The IdP has no single sign-on endpoint.", 503)
        _, request = self.client.create_authn_request(
            destination,
            binding=BINDING_HTTP_POST,
            message_id=request_id,
            name_id_policy=_name_id_policy(self.settings.sp.name_id_format),
            sign=sign and binding == BINDING_HTTP_POST,
            sign_alg=RSA_SHA256,
            digest_alg=SHA256,
        )
        if binding == BINDING_HTTP_POST:
            encoded = base64.b64encode(str(request).encode("utf-8")).decode("ascii")
            return Outgoing(destination, {"SAMLRequest": encoded, "RelayState": relay_state})
        info = self.client.apply_binding(
            BINDING_HTTP_REDIRECT,
            str(request),
            destination,
            relay_state=relay_state,
            sign=sign,
            sigalg=RSA_SHA256 if sign else None,
        )
        location = dict(info["headers"])["Location"]
        return Outgoing(location)

    # -- incoming ---------------------------------------------------------------

    def inspect(self, xml: bytes) -> ResponseEnvelope:
        """`inspect_response` under this SP's security settings."""
        security = self.settings.security
        return inspect_response(
            xml,
            reject_sha1=security.reject_sha1,
            key_transport=security.allowed_key_transport,
            data_encryption=security.allowed_data_encryption,
        )

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
        if self._native is not None:
            return self._verify_native(
                self._native, envelope, now if now is not None else time.time()
            )
        outstanding = {outstanding_id: "login"} if outstanding_id else {}
        encoded = base64.b64encode(envelope.xml).decode("ascii")
        try:
            result = self._pysaml2_parse(encoded, outstanding)
        except SAMLError as err:
            # An encrypted assertion that cannot be read, for whatever reason, is one
            # failure: "decrypted to garbage" must not differ from "did not decrypt".
            if envelope.encrypted and err.code in ("malformed", "invalid_response"):
                log.info("encrypted assertion unreadable: %s (%s)", err.code, err.reason)
                raise _decryption_failed() from None
            raise
        if envelope.encrypted:
            self._check_decrypted(result)
        return self._check_verified(result, envelope, now if now is not None else time.time())

    def _check_decrypted(self, result: Any) -> None:
        """The decrypted document passes the checks the encrypted one could not get.

        Its signature algorithms, references and IDs are checked after pysaml2
        ran: before decryption they are not visible. (pysaml2 itself refuses
        transforms other than enveloped/exc-c14n before xmlsec runs.)
        """
        if result is None or getattr(result, "assertion", None) is None:
            return  # nothing was decrypted: _check_verified says why
        decrypted = getattr(result, "xmlstr", None)
        if not decrypted:
            raise _decryption_failed()
        text = decrypted.encode("utf-8") if isinstance(decrypted, str) else bytes(decrypted)
        try:
            root = parse_xml(text)
        except SAMLError:
            raise _decryption_failed() from None
        _check_unique_ids(root)
        assertions = root.xpath("//saml:Assertion", namespaces=NS)
        advised = root.xpath("//saml:Advice//saml:Assertion", namespaces=NS)
        if len(assertions) - len(advised) != 1:
            raise SAMLError(
                "wrong_number_of_assertions", "The SAML response must hold exactly one assertion."
            )
        check_signatures(root, reject_sha1=self.settings.security.reject_sha1)

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
        except DecryptError:  # an EncryptedID or EncryptedAssertion no key of ours opens
            raise _decryption_failed() from None
        except (SignatureError, SigverError) as exc:
            if "signature missing" in str(exc).lower():
                raise SAMLError(
                    "signature_required", "The SAML response is not signed as required."
                ) from None
            raise _signature_refusal(exc) from None
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
        """The pysaml2 path's end: the shared checks on what pysaml2 verified."""
        if result is None or result.response is None:
            raise SAMLError("invalid_response", "The SAML response is not valid.")
        response: samlp.Response = result.response
        # Before the assertion test: a wrong Destination is why pysaml2 left it out.
        check_destination(self._expect, response.destination, response.signature is not None)
        if result.assertion is None:
            # pysaml2 drops the assertion, silently, for an IssueInstant a day off.
            check_issue_instant(response.issue_instant, now, self._expect.clock_skew, "response")
            if envelope.encrypted:
                raise _decryption_failed()
            raise SAMLError("invalid_response", "The SAML response is not valid.")
        return check_facts(
            facts_from_pysaml2(response, result.assertion),
            self._expect,
            envelope.in_response_to,
            now,
        )

    # -- the native path (in-process backend) ----------------------------------------

    def _verify_native(
        self, backend: XmlSecBackend, envelope: ResponseEnvelope, now: float
    ) -> VerifiedLogin:
        """Verify with lxml and the xmlsec binding only, in pysaml2's order of refusals.

        1. The Response's own signature, if any (metadata keys for its Issuer; the
           signed element's schema), else `signature_required` if wanted; an
           unsigned Response is schema-validated as a whole.
        2. The assertion: decrypted if encrypted (every failure one
           `decryption_failed`); its signature verified on the very tree it is
           read from, its schema validated; the decrypted document's IDs,
           assertion count and signatures checked as the encrypted one's were.
        3. `rules.check_facts` on what was verified.
        """
        root = envelope.root if envelope.root is not None else parse_xml(envelope.xml)
        response_signed = root.find(_SIGNATURE_CHILD) is not None
        if response_signed:
            self._native_signature(
                backend, envelope.xml, root, root, text(root.find(_ISSUER_CHILD)), schema=True
            )
        else:
            if self.settings.security.want_response_signed:
                raise SAMLError(
                    "signature_required", "The SAML response is not signed as required."
                )
            _native_response_schema(root)
        if envelope.encrypted:
            try:
                document, doc_root, assertion = self._native_decrypt(backend, envelope.xml)
            except SAMLError as err:
                if err.code in ("malformed", "invalid_response"):
                    log.info("encrypted assertion unreadable: %s (%s)", err.code, err.reason)
                    raise _decryption_failed() from None
                raise
        else:
            document, doc_root = envelope.xml, root
            assertion = root.find(_ASSERTION_CHILD)
            if assertion is None:  # inspect_response guarantees one
                raise SAMLError("invalid_response", "The SAML response is not valid.")
        assertion_signed = assertion.find(_SIGNATURE_CHILD) is not None
        if assertion_signed:
            # An unencrypted assertion was schema-checked with its Response.
            self._native_signature(
                backend,
                document,
                doc_root,
                assertion,
                text(assertion.find(_ISSUER_CHILD)),
                schema=envelope.encrypted,
            )
        elif self.settings.security.want_assertions_signed:
            raise SAMLError("signature_required", "The SAML response is not signed as required.")
        elif envelope.encrypted:
            _native_schema(assertion)
        if envelope.encrypted:
            _check_decrypted_tree(doc_root, reject_sha1=self.settings.security.reject_sha1)
        facts = facts_from_tree(
            root, assertion, response_signed=response_signed, assertion_signed=assertion_signed
        )
        if facts.encrypted_id and facts.name_id is None:
            self._native_encrypted_id(backend, assertion)
        return check_facts(facts, self._expect, envelope.in_response_to, now)

    def _native_signature(
        self,
        backend: XmlSecBackend,
        document: bytes,
        doc_root: etree._Element,
        target: etree._Element,
        issuer: str | None,
        *,
        schema: bool,
    ) -> None:
        """`target`'s signature, with the metadata keys of `issuer` (pysaml2's key lookup)."""
        if issuer != self.idp.entity_id or not self._signing_certs:
            raise SAMLError("untrusted_key", "The SAML response is not signed by the IdP.")
        node_name = etree.QName(target).namespace + ":" + etree.QName(target).localname
        try:
            backend.verify_any(
                document,
                self._signing_certs,
                node_name,
                target.get("ID"),
                schema=schema,
                root=doc_root,
            )
        except SignatureError as exc:
            raise _signature_refusal(exc) from None

    def _native_decrypt(
        self, backend: XmlSecBackend, xml: bytes
    ) -> tuple[bytes, etree._Element, etree._Element]:
        """The decrypted document, its tree, and the Assertion inside the EncryptedAssertion."""
        key_pem = self.settings.sp.key_pem
        if not key_pem:
            raise _decryption_failed()
        try:
            text = backend.decrypt_with_key(xml, key_pem)
        except DecryptError:
            raise _decryption_failed() from None
        document = text.encode("utf-8")
        doc_root = parse_xml(document)  # malformed -> decryption_failed (the caller)
        holder = doc_root.find(_ENCRYPTED_ASSERTION_CHILD)
        assertion = None if holder is None else holder.find(_ASSERTION_CHILD)
        if assertion is None:
            raise _decryption_failed()
        return document, doc_root, assertion

    def _native_encrypted_id(self, backend: XmlSecBackend, assertion: etree._Element) -> None:
        """pysaml2 decrypts an EncryptedID (failing: `decryption_failed`), yet reads no NameID."""
        node = assertion.find(f"{{{NS['saml']}}}Subject/{{{NS['saml']}}}EncryptedID")
        key_pem = self.settings.sp.key_pem
        if node is None or not key_pem:
            raise _decryption_failed()
        try:
            backend.decrypt_with_key(etree.tostring(node), key_pem)
        except DecryptError:
            raise _decryption_failed() from None


_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"


def _name_id_policy(name_id_format: str | None) -> samlp.NameIDPolicy | None:
    """The NameIDPolicy of `sp.name_id_format`: that format, AllowCreate="true".

    None (no policy) leaves the format to the IdP (Entra then sends its
    configured one, "unspecified"). AllowCreate is left out for transient IDs,
    as pysaml2 does (the SAML 2.0 errata: it must not be used with them).
    """
    if name_id_format is None:
        return None
    allow_create = None if name_id_format == _TRANSIENT else "true"
    return samlp.NameIDPolicy(format=name_id_format, allow_create=allow_create)


_SIGNATURE_CHILD = f"{{{NS['ds']}}}Signature"
_ISSUER_CHILD = f"{{{NS['saml']}}}Issuer"
_ASSERTION_CHILD = f"{{{NS['saml']}}}Assertion"
_ENCRYPTED_ASSERTION_CHILD = f"{{{NS['saml']}}}EncryptedAssertion"


def _native_schema(element: etree._Element) -> None:
    """The compiled SAML XSDs over what is read (pysaml2: its valid_instance checks)."""
    try:
        validate_schema(element)
    except ValueError as exc:
        log.info("schema refused the response: %.200s", exc)
        raise SAMLError("invalid_response", "The SAML response is not valid.") from None


_KNOWN_NAMESPACES = frozenset({NS["samlp"], NS["saml"], NS["ds"]})


def _native_response_schema(root: etree._Element) -> None:
    """An unsigned Response, schema-validated as a whole, as pysaml2 would judge it.

    pysaml2 never validates an unsigned Response with the XSDs: its object model
    keeps elements of other namespaces beside the known ones (the look-alike
    `Assertion` of docs/security.md row S23), and it validates a *signed*
    assertion with the XSDs, refusing it as a signature failure. So, on failure
    only: the Response without its foreign-namespace children is tried again,
    and a signed assertion that is itself invalid is `invalid_signature`, as on the pysaml2 path.
    """
    root = in_schema_order(root)  # a copy when a Signature is out of place (crypto.py)
    try:
        validate_schema(root)
        return
    except ValueError as exc:
        problem = exc
    foreign = [
        child
        for child in root
        if isinstance(child.tag, str) and etree.QName(child).namespace not in _KNOWN_NAMESPACES
    ]
    if foreign:
        clone = copy.deepcopy(root)
        for child in list(clone):
            if isinstance(child.tag, str) and etree.QName(child).namespace not in _KNOWN_NAMESPACES:
                clone.remove(child)
        try:
            validate_schema(clone)
            return
        except ValueError as exc:
            problem = exc
    log.info("schema refused the response: %.200s", problem)
    assertion = root.find(_ASSERTION_CHILD)
    # pysaml2's own instance check (before any signature) refuses a missing
    # required attribute; any other defect it finds only with the XSDs, on the
    # signed element, as a signature failure.
    required = "is required but missing" in str(problem)
    if not required and assertion is not None and assertion.find(_SIGNATURE_CHILD) is not None:
        try:
            validate_schema(assertion)
        except ValueError:
            raise SAMLError(
                "invalid_signature", "The SAML response signature is not valid."
            ) from None
    raise SAMLError("invalid_response", "The SAML response is not valid.")


def _signature_refusal(exc: Exception) -> SAMLError:
    """A failed signature check: refused by crypto.py's allow-lists, or simply not valid."""
    text = str(exc)
    if "signature refused:" in text and "not allowed" in text:
        return SAMLError("disallowed_algorithm", "The SAML response uses an algorithm not allowed.")
    return SAMLError("invalid_signature", "The SAML response signature is not valid.")


def _check_decrypted_tree(root: etree._Element, *, reject_sha1: bool) -> None:
    """The decrypted document passes the checks the encrypted one could not get."""
    _check_unique_ids(root)
    assertions = root.xpath("//saml:Assertion", namespaces=NS)
    advised = root.xpath("//saml:Advice//saml:Assertion", namespaces=NS)
    if len(assertions) - len(advised) != 1:
        raise SAMLError(
            "wrong_number_of_assertions", "The SAML response must hold exactly one assertion."
        )
    check_signatures(root, reject_sha1=reject_sha1)


def facts_from_pysaml2(response: Any, assertion: Any) -> Facts:
    """The facts of pysaml2's verified objects (`saml2.samlp.Response`, `saml2.saml.Assertion`).

    The pysaml2 path's adapter into the one `Facts` type, not a second reader of
    the XML: that path reads pysaml2's objects by design, because they are what
    pysaml2 verified (and decrypted); `check_facts` then applies the same rules.
    """
    subject = assertion.subject
    name_id = subject.name_id if subject is not None else None
    conditions = assertion.conditions
    confirmations = []
    for confirmation in (subject.subject_confirmation or []) if subject is not None else []:
        data = confirmation.subject_confirmation_data
        confirmations.append(
            Confirmation(confirmation.method, False)
            if data is None
            else Confirmation(
                confirmation.method,
                True,
                data.recipient,
                data.not_before,
                data.not_on_or_after,
                data.in_response_to,
                data.address,
            )
        )
    return Facts(
        response_id=response.id,
        response_version=response.version,
        destination=response.destination,
        response_issue_instant=response.issue_instant,
        response_in_response_to=response.in_response_to,
        response_issuer=_pysaml2_name(response.issuer),
        response_signed=response.signature is not None,
        assertion_id=assertion.id,
        assertion_issue_instant=assertion.issue_instant,
        assertion_issuer=_pysaml2_name(assertion.issuer),
        assertion_signed=assertion.signature is not None,
        has_subject=subject is not None,
        name_id=_pysaml2_name(name_id),
        encrypted_id=subject is not None and subject.encrypted_id is not None,
        confirmations=tuple(confirmations),
        has_conditions=conditions is not None,
        not_before=None if conditions is None else conditions.not_before,
        not_on_or_after=None if conditions is None else conditions.not_on_or_after,
        audience_restrictions=tuple(
            tuple((a.text or "").strip() for a in restriction.audience)
            for restriction in (conditions.audience_restriction if conditions is not None else [])
        ),
        other_conditions=0 if conditions is None else len(conditions.condition or []),
        authn_statements=tuple(
            (statement.session_index, statement.session_not_on_or_after)
            for statement in assertion.authn_statement or []
        ),
        attributes=tuple((name, tuple(values)) for name, values in _attributes(assertion).items()),
    )


def _pysaml2_name(node: Any) -> EntityName | None:
    if node is None:
        return None
    return EntityName(
        (node.text or "").strip(),
        node.format,
        getattr(node, "sp_name_qualifier", None),
        getattr(node, "name_qualifier", None),
        getattr(node, "sp_provided_id", None),
    )


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
        "Condition not OK",  # pysaml2's one `return False`: NotBefore >= NotOnOrAfter
        "expired",
        "The SAML assertion is never valid (empty time window).",
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
                if value.extension_elements:
                    values.append(_pysaml2_structured_value(value))
                elif value.text is not None:
                    values.append(value.text.strip())
    return found


def _pysaml2_structured_value(value: Any) -> str:
    """An AttributeValue with element content, as `rules.attribute_value_text` reads it."""
    children = value.extension_elements
    first = children[0]
    if len(children) == 1 and (first.namespace, first.tag) == (NS["saml"], "NameID"):
        return name_id_value(
            (first.text or "").strip(),
            first.attributes.get("NameQualifier"),
            first.attributes.get("SPNameQualifier"),
        )

    def texts(node: Any) -> Iterator[str | None]:
        yield node.text
        for child in node.children:
            yield from texts(child)

    return joined_text(t for child in children for t in texts(child))
