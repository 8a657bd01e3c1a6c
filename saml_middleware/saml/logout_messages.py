"""Single Logout messages: the logout half of the protocol layer.

LogoutRequest and LogoutResponse (SAML core §3.7) over HTTP-Redirect and
HTTP-POST (bindings §3.4, §3.5), both directions. What pysaml2 gets wrong on
the SP side is done here (docs/security.md, Single Logout rows W7, W9, W10):

* pysaml2 accepts unsigned LogoutRequests at an SP, and checks a Redirect
  signature only over a query it re-encodes itself. Here the signature of a
  Redirect message is verified over the query string *exactly as received*
  (`SAMLRequest|SAMLResponse`, `RelayState`, `SigAlg`, in that order, each
  still percent-encoded the way the sender encoded it: ADFS's lowercase `%2f`
  verifies), with the IdP's metadata keys only and allow-listed algorithms;
  an enveloped (POST) signature must be the one `ds:Signature` in the
  document, a direct child of the message, verified by the strict in-process
  backend (crypto.py). Wrapped messages (a signed element smuggled inside an
  unsigned one) have a signature elsewhere and are refused.
* Redirect messages are inflated with a hard cap (sp.inflate).
* Parsing is the hardened one of sp.parse_xml (no DTD, UTF-8 only).

What a message *means* (which sessions end, whether InResponseTo is known) is
the engine's business: this module only says what a message is and whether it
is authentic. Outgoing Redirect messages are signed here too (RSA or ECDSA with
SHA-256), over the exact query that is sent.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote_plus, unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from saml2 import saml, samlp
from saml2.s_utils import sid
from saml2.sigver import SignatureError

from ..errors import SAMLError
from .algorithms import (
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SHA256,
)
from .crypto import XmlSecBackend
from .sp import Outgoing, ServiceProvider, parse_xml
from .times import saml_instant
from .xml import NS, text

_SAMLP = NS["samlp"]
_SAML = NS["saml"]
_DS = NS["ds"]
LOGOUT_REQUEST = f"{{{_SAMLP}}}LogoutRequest"
LOGOUT_RESPONSE = f"{{{_SAMLP}}}LogoutResponse"
# pysaml2's node names for the signed element (what crypto.XmlSecBackend expects).
NODE_NAMES = {
    LOGOUT_REQUEST: f"{_SAMLP}:LogoutRequest",
    LOGOUT_RESPONSE: f"{_SAMLP}:LogoutResponse",
}
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

# Redirect-binding SigAlg -> (hash, key kind). SHA-1 only when reject_sha1 is off.
SIGNATURE_ALGORITHMS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    RSA_SHA256: (hashes.SHA256, "rsa"),
    RSA_SHA384: (hashes.SHA384, "rsa"),
    RSA_SHA512: (hashes.SHA512, "rsa"),
    ECDSA_SHA256: (hashes.SHA256, "ec"),
    ECDSA_SHA384: (hashes.SHA384, "ec"),
    ECDSA_SHA512: (hashes.SHA512, "ec"),
}
SHA1_ALGORITHMS: dict[str, tuple[type[hashes.HashAlgorithm], str]] = {
    RSA_SHA1: (hashes.SHA1, "rsa"),
}
_QUERY_PARAMETERS = ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature")
MAX_RELAY_STATE = 1024  # the bindings say 80 bytes; IdPs send more, never kilobytes
_NCNAME_ID = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,255}")

NOT_VERIFIED = "The sign-out message could not be verified."


# -- HTTP-Redirect ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedirectMessage:
    """A SAML message as it arrived on a query string."""

    kind: str  # "SAMLRequest" | "SAMLResponse"
    encoded: str  # the Base64 of the DEFLATEd message (percent-decoded)
    relay_state: str | None
    sig_alg: str | None
    signature: bytes | None
    signed_octets: bytes | None  # what the sender signed: the raw query parts, in order


def read_redirect_query(raw_query: str) -> RedirectMessage:
    """The SAML parameters of a query string, keeping the bytes the signature covers (W10).

    Other parameters are ignored; a repeated SAML parameter, both or neither of
    SAMLRequest/SAMLResponse, or half a signature is 400 `malformed`.
    """
    raw: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        name = unquote_plus(name)
        if name not in _QUERY_PARAMETERS:
            continue
        if name in raw:
            raise SAMLError("malformed", f"The sign-out message repeats {name}.", 400)
        raw[name] = value
    kinds = [kind for kind in ("SAMLRequest", "SAMLResponse") if kind in raw]
    if len(kinds) != 1:
        raise SAMLError(
            "malformed", "The sign-out message needs one SAMLRequest or SAMLResponse.", 400
        )
    kind = kinds[0]
    relay_state = unquote_plus(raw["RelayState"]) if "RelayState" in raw else None
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE:
        raise SAMLError("malformed", "The sign-out message's RelayState is too long.", 400)
    if ("SigAlg" in raw) != ("Signature" in raw):
        raise SAMLError("malformed", "The sign-out message is half signed.", 400)
    sig_alg = signature = octets = None
    if "Signature" in raw:
        sig_alg = unquote_plus(raw["SigAlg"])
        try:
            signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
        except (binascii.Error, ValueError):
            raise SAMLError("malformed", "The sign-out signature is not Base64.", 400) from None
        text = f"{kind}={raw[kind]}"
        if "RelayState" in raw:
            text += f"&RelayState={raw['RelayState']}"
        text += f"&SigAlg={raw['SigAlg']}"
        try:
            octets = text.encode("latin-1")  # the adapters decoded the raw bytes as latin-1
        except UnicodeEncodeError:
            raise SAMLError("malformed", "The sign-out query is not valid.", 400) from None
    return RedirectMessage(kind, unquote_plus(raw[kind]), relay_state, sig_alg, signature, octets)


def _algorithm(sig_alg: str | None, reject_sha1: bool) -> tuple[hashes.HashAlgorithm, str]:
    allowed = SIGNATURE_ALGORITHMS if reject_sha1 else {**SIGNATURE_ALGORITHMS, **SHA1_ALGORITHMS}
    if sig_alg not in allowed:
        raise SAMLError("disallowed_algorithm", "The sign-out message's SigAlg is not allowed.")
    hash_type, kind = allowed[sig_alg]
    return hash_type(), kind


def _public_key(cert: str) -> object:
    """The key of a metadata certificate (Base64 DER body, or PEM)."""
    if "BEGIN CERTIFICATE" in cert:
        return x509.load_pem_x509_certificate(cert.encode("ascii")).public_key()
    return x509.load_der_x509_certificate(base64.b64decode(cert)).public_key()


def verify_redirect_signature(
    message: RedirectMessage, certs: Iterable[str], *, reject_sha1: bool
) -> None:
    """The query signature is valid under one of the IdP's metadata `certs`, else SAMLError."""
    if message.signature is None or message.signed_octets is None:
        raise SAMLError("signature_required", "The sign-out message is not signed.")
    hash_algorithm, kind = _algorithm(message.sig_alg, reject_sha1)
    for cert in certs:
        try:
            key = _public_key(cert)
        except (ValueError, binascii.Error):
            continue
        if _verifies(key, kind, message.signature, message.signed_octets, hash_algorithm):
            return
    raise SAMLError("invalid_signature", NOT_VERIFIED)


def _verifies(
    key: object, kind: str, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm
) -> bool:
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
            return True
        if kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:  # XML-DSig's r || s
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                signature = encode_dss_signature(r, s)
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def deflate_base64(xml: bytes) -> str:
    """The HTTP-Redirect encoding of a message: raw DEFLATE, then Base64."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml) + compressor.flush()).decode("ascii")


def redirect_url(
    destination: str, kind: str, xml: bytes, relay_state: str | None, key_pem: str | None
) -> str:
    """`destination` with the message on its query, signed (query signature) when a key is given."""
    query = f"{kind}={quote_plus(deflate_base64(xml))}"
    if relay_state is not None:
        query += f"&RelayState={quote_plus(relay_state)}"
    if key_pem:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            query += f"&SigAlg={quote_plus(ECDSA_SHA256)}"
            der = key.sign(query.encode("ascii"), ec.ECDSA(hashes.SHA256()))
            signature = _raw_ecdsa(der, key.curve.key_size)
        elif isinstance(key, rsa.RSAPrivateKey):
            query += f"&SigAlg={quote_plus(RSA_SHA256)}"
            signature = key.sign(query.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        else:
            raise ValueError("only RSA and EC keys sign SAML messages")
        query += f"&Signature={quote_plus(base64.b64encode(signature).decode('ascii'))}"
    return f"{destination}{'&' if '?' in destination else '?'}{query}"


def _raw_ecdsa(der: bytes, key_size: int) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    size = (key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# -- the messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class LogoutRequestMessage:
    """What a LogoutRequest says, read from the hardened parse (before any trust)."""

    xml: bytes
    id: str
    issuer: str | None
    destination: str | None
    issue_instant: float
    not_on_or_after: float | None
    name_id: str
    name_id_format: str | None
    session_indexes: tuple[str, ...]
    enveloped_signature: bool
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    sp_provided_id: str | None = None


@dataclass(frozen=True)
class LogoutResponseMessage:
    xml: bytes
    id: str
    issuer: str | None
    destination: str | None
    issue_instant: float
    in_response_to: str | None
    status: str  # the top-level StatusCode URI
    status_name: str  # "Success", "Responder/RequestDenied", ...: safe to show
    enveloped_signature: bool


def inspect_logout_request(data: bytes) -> LogoutRequestMessage:
    """A LogoutRequest's fields, after the structural checks (no cryptography yet)."""
    root = _message_root(data, LOGOUT_REQUEST, "LogoutRequest")
    name_ids = _children(root, _SAML, "NameID")
    if _children(root, _SAML, "EncryptedID") or _children(root, _SAML, "BaseID"):
        raise SAMLError("unsupported", "Encrypted or base identifiers are not supported.", 400)
    if len(name_ids) != 1:
        raise SAMLError("malformed", "The sign-out request must name one user (NameID).", 400)
    name_id = text(name_ids[0])
    if not name_id:
        raise SAMLError("malformed", "The sign-out request names no user.", 400)
    indexes = tuple(text(node) or "" for node in _children(root, _SAMLP, "SessionIndex"))
    if len(indexes) > 64 or any(not index for index in indexes):
        raise SAMLError("malformed", "The sign-out request has invalid session indexes.", 400)
    return LogoutRequestMessage(
        xml=data,
        id=str(root.get("ID")),
        issuer=_issuer(root),
        destination=root.get("Destination"),
        issue_instant=_instant(root.get("IssueInstant"), required=True) or 0.0,
        not_on_or_after=_instant(root.get("NotOnOrAfter")),
        name_id=name_id,
        name_id_format=name_ids[0].get("Format"),
        session_indexes=indexes,
        enveloped_signature=_has_signature(root),
        name_qualifier=name_ids[0].get("NameQualifier"),
        sp_name_qualifier=name_ids[0].get("SPNameQualifier"),
        sp_provided_id=name_ids[0].get("SPProvidedID"),
    )


def inspect_logout_response(data: bytes) -> LogoutResponseMessage:
    """A LogoutResponse's fields, after the structural checks (no cryptography yet)."""
    root = _message_root(data, LOGOUT_RESPONSE, "LogoutResponse")
    codes = root.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    if len(codes) != 1:
        raise SAMLError("malformed", "The sign-out response has no status.", 400)
    names = []
    for node in codes[0].iter(f"{{{_SAMLP}}}StatusCode"):
        name = (node.get("Value") or "").rsplit(":", 1)[-1]
        names.append(name if re.fullmatch(r"[A-Za-z]{1,40}", name) else "unknown")
    return LogoutResponseMessage(
        xml=data,
        id=str(root.get("ID")),
        issuer=_issuer(root),
        destination=root.get("Destination"),
        issue_instant=_instant(root.get("IssueInstant"), required=True) or 0.0,
        in_response_to=root.get("InResponseTo") or None,
        status=codes[0].get("Value") or "",
        status_name="/".join(names[:3]),
        enveloped_signature=_has_signature(root),
    )


def _message_root(data: bytes, tag: str, what: str) -> etree._Element:
    root = parse_xml(data)
    if root.tag != tag:
        raise SAMLError("malformed", f"The sign-out message is not a {what}.", 400)
    if root.get("Version") != "2.0" or not _NCNAME_ID.fullmatch(root.get("ID") or ""):
        raise SAMLError("malformed", f"The {what} has no valid ID or version.", 400)
    ids = [str(value) for value in root.xpath("//@ID | //@Id | //@id")]
    if len(ids) != len(set(ids)):
        raise SAMLError("duplicate_id", f"The {what} repeats an element ID.")
    # One signature at most, on the message itself: a signed element anywhere else
    # (a captured assertion wrapped into a forged message) is a wrapping attempt.
    signatures = root.xpath("//ds:Signature", namespaces=NS)
    if signatures and (len(signatures) > 1 or signatures[0].getparent() is not root):
        raise SAMLError("invalid_signed_element", f"The {what} carries a misplaced signature.")
    for part in ("SignedInfo", "Reference", "SignatureValue", "Object"):
        if len(root.xpath(f"//ds:{part}", namespaces=NS)) > (0 if part == "Object" else 1):
            raise SAMLError("invalid_signed_element", f"The {what} carries a stray {part}.")
    return root


def _has_signature(root: etree._Element) -> bool:
    return bool(_children(root, _DS, "Signature"))


def _children(node: etree._Element, namespace: str, local: str) -> list[etree._Element]:
    return [child for child in node if child.tag == f"{{{namespace}}}{local}"]


def _issuer(root: etree._Element) -> str | None:
    issuers = _children(root, _SAML, "Issuer")
    if len(issuers) > 1:
        raise SAMLError("malformed", "The sign-out message has two issuers.", 400)
    if not issuers:
        return None
    if issuers[0].get("Format") not in (None, "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"):
        raise SAMLError("wrong_issuer", "The sign-out message comes from an unexpected issuer.")
    return text(issuers[0])


def _instant(value: str | None, *, required: bool = False) -> float | None:
    """`saml_instant`, refusing a missing value when the message must carry one."""
    if not value and required:
        raise SAMLError("malformed", "The sign-out message has no IssueInstant.", 400)
    return saml_instant(value)


def pem_certificates(bodies: Sequence[str]) -> list[str]:
    """Metadata certificate bodies (one-line Base64 DER) as PEM, for the XML verifier."""
    pems = []
    for body in bodies:
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        body_lines = "\n".join(lines)
        pems.append(f"-----BEGIN CERTIFICATE-----\n{body_lines}\n-----END CERTIFICATE-----\n")
    return pems


# -- outgoing messages (the SP's) -----------------------------------------------------------


def _key_algorithm(key_pem: str | None) -> str:
    """The XML-signature algorithm for the SP's key (pysaml2 signs POST messages with it)."""
    if key_pem:
        key = serialization.load_pem_private_key(key_pem.encode("ascii"), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return ECDSA_SHA256
    return RSA_SHA256


def _idp_endpoint(sp: ServiceProvider) -> tuple[str, str] | None:
    """("redirect" | "post", URL) of the IdP's Single Logout Service; Redirect preferred."""
    if sp.idp.slo_redirect_url:
        return "redirect", sp.idp.slo_redirect_url
    if sp.idp.slo_post_url:
        return "post", sp.idp.slo_post_url
    return None


def _send(
    kind: str,
    xml: str,
    binding: str,
    destination: str,
    relay_state: str | None,
    key_pem: str | None,
) -> Outgoing:
    if binding == "redirect":
        return Outgoing(redirect_url(destination, kind, xml.encode("utf-8"), relay_state, key_pem))
    form = {kind: base64.b64encode(xml.encode("utf-8")).decode("ascii")}
    if relay_state is not None:
        form["RelayState"] = relay_state
    return Outgoing(destination, form)


def build_logout_request(
    sp: ServiceProvider,
    *,
    name_id: str,
    name_id_format: str | None,
    session_index: str | None,
    lifetime_seconds: int,
    relay_state: str | None = None,
    name_qualifier: str | None = None,
    sp_name_qualifier: str | None = None,
    sp_provided_id: str | None = None,
) -> tuple[str, Outgoing] | None:
    """The SP's LogoutRequest for a user (its ID, how to send it); None without an IdP SLO URL.

    The NameID is the assertion's, qualifiers included (SAML core 3.7.1: the
    principal as the IdP and the SP know it; an IdP may compare every field).
    Signed when the SP has a key: a query signature over HTTP-Redirect, an
    enveloped one over HTTP-POST.
    """
    endpoint = _idp_endpoint(sp)
    if endpoint is None:
        return None
    binding, destination = endpoint
    key_pem = sp.settings.sp.key_pem
    expires = datetime.now(timezone.utc).timestamp() + lifetime_seconds
    request_id, request = sp.client.create_logout_request(
        destination,
        sp.idp.entity_id,
        name_id=saml.NameID(
            format=name_id_format,
            name_qualifier=name_qualifier,
            sp_name_qualifier=sp_name_qualifier,
            sp_provided_id=sp_provided_id,
            text=name_id,
        ),
        session_indexes=[session_index] if session_index else None,
        expire=datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        sign=bool(key_pem) and binding == "post",
        sign_alg=_key_algorithm(key_pem),
        digest_alg=SHA256,
    )
    return str(request_id), _send(
        "SAMLRequest", str(request), binding, destination, relay_state, key_pem
    )


def build_logout_response(
    sp: ServiceProvider, *, in_response_to: str, binding: str, relay_state: str | None
) -> Outgoing | None:
    """A Success LogoutResponse to the IdP's request, in `binding` when the IdP offers it.

    None when the IdP has no Single Logout Service to answer to.
    """
    urls = {"redirect": sp.idp.slo_redirect_url, "post": sp.idp.slo_post_url}
    if not urls.get(binding):
        endpoint = _idp_endpoint(sp)
        if endpoint is None:
            return None
        binding = endpoint[0]
    destination = str(urls[binding])
    key_pem = sp.settings.sp.key_pem
    response = samlp.LogoutResponse(
        id=sid(),
        version="2.0",
        issue_instant=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        destination=destination,
        in_response_to=in_response_to,
        issuer=saml.Issuer(text=sp.settings.sp.entity_id, format=saml.NAMEID_FORMAT_ENTITY),
        status=samlp.Status(status_code=samlp.StatusCode(value=STATUS_SUCCESS)),
    )
    if key_pem and binding == "post":
        xml = str(sp.client.sign(response, sign_alg=_key_algorithm(key_pem), digest_alg=SHA256))
    else:
        xml = str(response)
    return _send("SAMLResponse", xml, binding, destination, relay_state, key_pem)


def verify_enveloped_signature(
    verifier: XmlSecBackend,
    message: LogoutRequestMessage | LogoutResponseMessage,
    certs: Sequence[str],
) -> None:
    """An HTTP-POST message's own signature, by the strict in-process backend; else SAMLError."""
    tag = LOGOUT_REQUEST if isinstance(message, LogoutRequestMessage) else LOGOUT_RESPONSE
    try:
        verifier.verify_any(message.xml, pem_certificates(certs), NODE_NAMES[tag], message.id)
    except SignatureError:
        raise SAMLError("invalid_signature", NOT_VERIFIED) from None
