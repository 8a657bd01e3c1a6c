"""In-process XML signature and encryption for pysaml2, on the python `xmlsec` binding.

Why: pysaml2's default backend runs the `xmlsec1` program three times per
signature and writes the document and every certificate to temporary files
(tens of milliseconds per login, and the ACS is reachable without logging in).
This backend does the same work inside the process, and is stricter than that
path (docs/security.md, "How a SAML response is checked"):

* untrusted XML is parsed by lxml with no DTD, no entities, no network, and a
  DOCTYPE is refused outright;
* the signed element is found by its Clark name *and* its `ID`, and that value
  must be the only ID-like attribute (`ID`, `Id`, `id`, `xml:id`) in the whole
  document, so a second element can never answer the Reference;
* the `ds:Signature` must be a direct child of that element; the signature is
  checked python-side (one Reference `#ID`, allowed algorithms, no ds:Object)
  *and* the same allow-lists are enabled inside xmlsec, so a transform that
  slipped past one check is still refused by the other;
* the only key is the pinned metadata certificate (KeyInfo is never read), with
  key data limited to X.509;
* every call uses a fresh xmlsec context; keys are cached by content, so no
  temporary file is written on the hot path.

`InProcessSecurityContext` replaces pysaml2's `SecurityContext._check_signature`
for the same reasons: it keeps every check pysaml2 makes (metadata keys only,
schema validation of the signed element, the xmldsig profile of SAML core §5.4)
but hands the metadata certificates to the backend in memory instead of through
temporary files, and validates the schema with libxml2 (pysaml2's own XSDs,
compiled once per thread) instead of pure-Python `xmlschema` (3-10 ms per
message): on pysaml2's re-serialisation of the item, as upstream, and on the
element the backend verifies. The middleware's own ACS and SLS call
`verify_any` directly (sp.py, logout_messages.py); pysaml2 with this context is the
reference the native path is tested against (tests/test_native_equivalence.py).
Decryption (`decrypt`) accepts the key transport and content
encryption algorithms it is given (by default RSA-OAEP and AES-GCM; the
middleware passes `security.allowed_key_transport` / `allowed_data_encryption`).

`install(client, reject_sha1=...)` puts both on a pysaml2 client.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from lxml import etree
from saml2.sigver import (
    NODE_NAME,
    CryptoBackend,
    DecryptError,
    MissingKey,
    RSACrypto,
    SecurityContext,
    SignatureError,
    XmlsecError,
    import_rsa_key_from_file,
    pem_format,
)
from saml2.xmldsig import ALLOWED_CANONICALIZATIONS, ALLOWED_TRANSFORMS, TRANSFORM_ENVELOPED

from .algorithms import (
    AES_CBC,
    AES_GCM,
    RSA_1_5,
    RSA_OAEP,
    RSA_OAEP_MGF1P,
    SHA1,
    SHA256,
    SHA384,
    SHA512,
    TRIPLE_DES_CBC,
    digest_methods,
    signature_methods,
)
from .xml import DS, EXC_C14N, SAML, XENC, XENC11
from .xml import parse as parse_hardened

try:  # a broken binding must not break the xmlsec1 backend: report it in self_test()
    import xmlsec

    _IMPORT_ERROR: Exception | None = None
except Exception as exc:  # noqa: BLE001 - ImportError or xmlsec.Error (libxml2 mismatch)
    xmlsec = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

log = logging.getLogger("saml_middleware.crypto")

EC14N = EXC_C14N
_SIGNATURE = f"{{{DS}}}Signature"
_ENCRYPTED_DATA = f"{{{XENC}}}EncryptedData"
_ENCRYPTED_KEY = f"{{{XENC}}}EncryptedKey"
_INCLUSIVE_NAMESPACES = f"{{{EC14N}}}InclusiveNamespaces"
_SAML = SAML
_ASSERTION = f"{{{_SAML}}}Assertion"
_ISSUER = f"{{{_SAML}}}Issuer"
_ENCRYPTED_ASSERTION = f"{{{_SAML}}}EncryptedAssertion"

# Session key sizes (bytes) of the content encryption algorithms this backend can decrypt.
DATA_KEY_SIZES = {**AES_GCM, **AES_CBC, TRIPLE_DES_CBC: 24}
KEY_TRANSPORTS = frozenset({RSA_OAEP_MGF1P, RSA_OAEP, RSA_1_5})
_ENC_ELEMENT = "http://www.w3.org/2001/04/xmlenc#Element"
# OAEP's own hash and mask function: SHA-1 there is not a signature weakness.
_OAEP_DIGESTS = {SHA1, SHA256, SHA384, SHA512}
_OAEP_MGFS = {f"{XENC11}mgf1sha{bits}" for bits in ("1", "256", "384", "512")}

MAX_XML_BYTES = 1024 * 1024  # far above a real Response; the ACS caps its body lower
_KEY_CACHE_SIZE = 64

# The namespaces pysaml2's xmlschema validator knows (saml2/xml/schema), with the
# remote locations its XSDs import mapped to the same local files.
_SCHEMA_FILES = {
    "urn:oasis:names:tc:SAML:2.0:protocol": "saml-schema-protocol-2.0.xsd",
    "urn:oasis:names:tc:SAML:2.0:assertion": "saml-schema-assertion-2.0.xsd",
    "urn:oasis:names:tc:SAML:2.0:metadata": "saml-schema-metadata-2.0.xsd",
    "http://www.w3.org/2000/09/xmldsig#": "xmldsig-core-schema.xsd",
    "http://www.w3.org/2001/04/xmlenc#": "xenc-schema.xsd",
    "http://www.w3.org/2009/xmlenc11#": "xenc-schema-11.xsd",
    "http://www.w3.org/XML/1998/namespace": "xml.xsd",
    "http://schemas.xmlsoap.org/soap/envelope/": "envelope.xsd",
    "http://eidas.europa.eu/metadata/servicelist": "eidas-schema-metadata-servicelist.xsd",
    "http://eidas.europa.eu/saml-extensions": "eidas-schema-saml-extensions.xsd",
    "http://eidas.europa.eu/attributes/naturalperson": "eidas-schema-attribute-naturalperson.xsd",
    "http://eidas.europa.eu/attributes/legalperson": "eidas-schema-attribute-legalperson.xsd",
}
_REMOTE_SCHEMAS = {
    "http://www.w3.org/TR/2002/REC-xmldsig-core-20020212/xmldsig-core-schema.xsd": (
        "xmldsig-core-schema.xsd"
    ),
    "http://www.w3.org/TR/2002/REC-xmlenc-core-20021210/xenc-schema.xsd": "xenc-schema.xsd",
    "http://www.w3.org/2001/xml.xsd": "xml.xsd",
}


class CryptoBackendError(RuntimeError):
    """The in-process backend cannot work in this installation (raised at start-up)."""


# -- parsing untrusted XML ------------------------------------------------------------

_local = threading.local()


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def parse_untrusted(text: str | bytes, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """saml/xml.py's hardened parse, bounded in size; raises ValueError."""
    data = _as_bytes(text)
    if len(data) > max_bytes:
        raise ValueError("document too large")
    return parse_hardened(data)


def _clark(node_name: str) -> str:
    """pysaml2's `namespace:LocalName` (the namespace has colons too) -> `{ns}Local`."""
    namespace, _, local = node_name.rpartition(":")
    if not namespace or not local:
        raise ValueError(f"bad node name {node_name[:100]!r}")
    return f"{{{namespace}}}{local}"


_ID_LIKE = etree.XPath(
    "//@*[(local-name()='ID' or local-name()='Id' or local-name()='id') and . = $value]"
)


def find_target(root: etree._Element, node_name: str, node_id: str | None) -> etree._Element:
    """The one element `node_name` whose `ID` is `node_id`, that value unique in the document.

    Every ID-like attribute (ID, Id, id, xml:id, in any namespace) counts: an
    XML-signature Reference must not be able to resolve to anything else.
    """
    if not node_id:
        raise ValueError("no ID to verify")
    same = _ID_LIKE(root, value=node_id)
    if len(same) != 1:
        raise ValueError(f"the ID is not unique in the document ({len(same)} uses)")
    attribute = same[0]
    target = attribute.getparent()
    if attribute.attrname != "ID" or target is None or target.tag != _clark(node_name):
        raise ValueError("the ID does not belong to the expected element")
    return target


def _children(node: etree._Element) -> list[etree._Element]:
    """Element children only (comments and PIs do not count)."""
    return [child for child in node if isinstance(child.tag, str)]


def _only_inclusive_namespaces(node: etree._Element) -> None:
    for child in _children(node):
        if child.tag != _INCLUSIVE_NAMESPACES:
            raise ValueError(f"unexpected {child.tag} in {etree.QName(node).localname}")


class _Policy:
    """The algorithms one backend accepts, as URIs (python-side) and xmlsec transforms."""

    def __init__(self, *, reject_sha1: bool) -> None:
        digests = sorted(digest_methods(reject_sha1))
        signatures = sorted(signature_methods(reject_sha1))
        self.c14n = frozenset(ALLOWED_CANONICALIZATIONS)  # exclusive c14n, +/- comments
        self.ref_transforms = frozenset(ALLOWED_TRANSFORMS)
        self.digests = frozenset(digests)
        self.signatures = frozenset(signatures)
        c = xmlsec.constants
        by_href = {
            t.href: t
            for t in (
                c.TransformExclC14N,
                c.TransformExclC14NWithComments,
                c.TransformEnveloped,
                c.TransformSha1,
                c.TransformSha256,
                c.TransformSha384,
                c.TransformSha512,
                c.TransformRsaSha1,
                c.TransformRsaSha256,
                c.TransformRsaSha384,
                c.TransformRsaSha512,
                c.TransformEcdsaSha256,
                c.TransformEcdsaSha384,
                c.TransformEcdsaSha512,
            )
        }
        # Inside xmlsec the digest method is a reference transform, and the c14n and
        # signature methods are signature transforms: both lists must name them.
        self.xmlsec_reference = [by_href[h] for h in sorted(self.ref_transforms | self.digests)]
        self.xmlsec_signature = [by_href[h] for h in sorted(self.c14n | self.signatures)]

    def check_signature_shape(self, signature: etree._Element, node_id: str) -> None:
        """SAML core §5.4 and this policy, on the Signature element xmlsec will verify."""
        parts = _children(signature)
        names = _ds_names(parts)
        if names[:2] != ["SignedInfo", "SignatureValue"] or names[2:] not in ([], ["KeyInfo"]):
            raise ValueError(f"unexpected Signature content {names[:6]}")  # ds:Object included
        info = _children(parts[0])
        if _ds_names(info) != ["CanonicalizationMethod", "SignatureMethod", "Reference"]:
            raise ValueError("SignedInfo must hold a c14n method, a signature method, a Reference")
        c14n, method, reference = info
        if c14n.get("Algorithm") not in self.c14n:
            raise ValueError(f"canonicalization {c14n.get('Algorithm')!r} not allowed")
        _only_inclusive_namespaces(c14n)
        if method.get("Algorithm") not in self.signatures:
            raise ValueError(f"signature method {method.get('Algorithm')!r} not allowed")
        if _children(method):
            raise ValueError("SignatureMethod parameters are not allowed")
        if reference.get("URI") != f"#{node_id}":
            raise ValueError("the Reference does not point at the signed element")
        ref_parts = _children(reference)
        if _ds_names(ref_parts) != ["Transforms", "DigestMethod", "DigestValue"]:
            raise ValueError("a Reference must hold Transforms, DigestMethod, DigestValue")
        transforms = _children(ref_parts[0])
        algorithms = [t.get("Algorithm") for t in transforms]
        if not 1 <= len(transforms) <= 2 or set(_ds_names(transforms)) != {"Transform"}:
            raise ValueError("one or two Transforms are allowed")
        if TRANSFORM_ENVELOPED not in algorithms or not set(algorithms) <= self.ref_transforms:
            raise ValueError(f"transforms {algorithms} not allowed")
        for transform in transforms:
            _only_inclusive_namespaces(transform)
        if ref_parts[1].get("Algorithm") not in self.digests:
            raise ValueError(f"digest {ref_parts[1].get('Algorithm')!r} not allowed")


def in_schema_order(element: etree._Element) -> etree._Element:
    """`element` as the schema judges it: each enveloped Signature moved to its schema place.

    Auth0 puts the Response's enveloped Signature after the Assertion, where the
    SAML schema (Issuer, Signature, Extensions, Status, Assertion) has no room for
    it; pysaml2's xmlsec1 path accepts that, for a Response or an Assertion, as
    it validates its own re-serialisation, in schema order. The place changes
    nothing that is signed: the enveloped-signature transform removes the
    Signature wherever it sits among the element's children, and it is still the
    one Signature, a direct child, whose one Reference is `#` + the element's ID
    (checked elsewhere, on the tree as received). So only the schema check sees a
    copy with the Signature of the element, and of its direct-child Assertions,
    right after their Issuer; signatures are verified on, and values read from,
    the tree as received. Returns `element` itself when everything is in place.
    """
    view = element
    nodes = [element, *element.iterchildren(_ASSERTION)]
    for number, node in enumerate(nodes):
        children = _children(node)
        signatures = [child for child in children if child.tag == _SIGNATURE]
        if len(signatures) != 1:
            continue  # none to move, or refused by the signature checks
        others = [child for child in children if child is not signatures[0]]
        leader = others[0] if others and others[0].tag == _ISSUER else None
        if children.index(signatures[0]) == (0 if leader is None else 1):
            continue
        if view is element:
            view = copy.deepcopy(element)  # the same nodes at the same positions
        target = view if number == 0 else list(view.iterchildren(_ASSERTION))[number - 1]
        moved = target[node.index(signatures[0])]
        issuer = None if leader is None else target[node.index(leader)]
        target.remove(moved)
        target.insert(0 if issuer is None else target.index(issuer) + 1, moved)
    return view


def _ds_names(nodes: list[etree._Element]) -> list[str]:
    """Local names of xmldsig elements; anything from another namespace shows as '?'."""
    return [n.tag[len(DS) + 2 :] if n.tag.startswith(f"{{{DS}}}") else "?" for n in nodes]


class _KeyCache:
    """xmlsec keys by content hash: each certificate or key file is parsed once."""

    def __init__(self, size: int = _KEY_CACHE_SIZE) -> None:
        self._keys: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, data: bytes, key_format: Any, kind: str) -> Any:
        ident = (kind, hashlib.sha256(data).digest())
        with self._lock:
            key = self._keys.get(ident)
            if key is not None:
                self._keys.move_to_end(ident)
                return key
        key = xmlsec.Key.from_memory(data, key_format, None)  # raises xmlsec.Error
        with self._lock:
            self._keys[ident] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key


def _read_file(path: str) -> bytes:
    """A key or certificate file pysaml2 names (small; read, never written)."""
    with open(path, "rb") as fh:
        return fh.read(256 * 1024)


class XmlSecBackend(CryptoBackend):
    """pysaml2's `CryptoBackend` on the python `xmlsec` binding, strict (module docstring).

    `reject_sha1` drops RSA-SHA1 and SHA-1 digests from the allow-lists.
    Encrypted assertions: `key_transport` and `data_encryption` are the
    algorithm URIs accepted (of `KEY_TRANSPORTS` and `DATA_KEY_SIZES`); by
    default RSA-OAEP and AES-GCM. CBC has no integrity: failures are made
    indistinguishable, and the assertion inside must still carry a valid signature.
    """

    def __init__(
        self,
        *,
        reject_sha1: bool = True,
        key_transport: Iterable[str] = (RSA_OAEP_MGF1P, RSA_OAEP),
        data_encryption: Iterable[str] = tuple(AES_GCM),
        max_bytes: int = MAX_XML_BYTES,
    ) -> None:
        self_test()
        self.reject_sha1 = reject_sha1
        self.max_bytes = max_bytes
        self.policy = _Policy(reject_sha1=reject_sha1)
        self._keys = _KeyCache()
        self.key_transport = frozenset(key_transport)
        unsupported = (self.key_transport - KEY_TRANSPORTS) | (
            set(data_encryption) - set(DATA_KEY_SIZES)
        )
        if unsupported:
            raise ValueError(f"unsupported encryption algorithms {sorted(unsupported)}")
        self._data_algorithms = {uri: DATA_KEY_SIZES[uri] for uri in data_encryption}

    @property
    def version(self) -> str:
        return _dotted(self.version_nums)

    @property
    def version_nums(self) -> tuple[int, ...]:
        return tuple(xmlsec.get_libxmlsec_version())  # type: ignore[attr-defined]

    # -- verification ---------------------------------------------------------------

    def validate_signature(
        self,
        signedtext: str | bytes,
        cert_file: str,
        cert_type: str,
        node_name: str,
        node_id: str | None,
    ) -> bool:
        """pysaml2's interface: `cert_file` is a path to a PEM certificate."""
        if cert_type != "pem":
            raise SignatureError(f"unsupported certificate type {cert_type!r}")
        try:
            cert_pem = _read_file(cert_file)
        except OSError:
            raise SignatureError("the certificate file cannot be read") from None
        return self.verify(signedtext, cert_pem, node_name, node_id)

    def verify(
        self,
        signedtext: str | bytes,
        cert_pem: str | bytes,
        node_name: str,
        node_id: str | None,
    ) -> bool:
        """Verify the signature of element `node_name`/`node_id` with `cert_pem` only.

        Returns True, or raises `SignatureError` (an `XmlsecError`, so pysaml2
        tries its next metadata certificate).
        """
        return self.verify_any(signedtext, [cert_pem], node_name, node_id)

    def verify_any(
        self,
        signedtext: str | bytes,
        certs: Iterable[str | bytes],
        node_name: str,
        node_id: str | None,
        *,
        schema: bool = False,
        root: etree._Element | None = None,
    ) -> bool:
        """As `verify`, True when any of `certs` verifies; parsed and checked once.

        With `schema`, the signed element itself (the very subtree xmlsec
        verifies) must also be valid against the SAML schemas. `root` is the
        hardened parse of `signedtext` (sp.parse_xml) when the caller
        already has it: it is only read, and spares a second parse.
        """
        try:
            if root is None:
                root = parse_untrusted(signedtext, self.max_bytes)
            target = find_target(root, node_name, node_id)
            signatures = [child for child in target if child.tag == _SIGNATURE]
            if len(signatures) != 1:
                raise ValueError(f"{len(signatures)} Signature children on the signed element")
            signature = signatures[0]
            assert node_id is not None  # find_target refused None
            self.policy.check_signature_shape(signature, node_id)
            if schema:
                validate_schema(in_schema_order(target))
        except ValueError as exc:
            log.info("signature refused before verification: %s", exc)
            raise SignatureError(f"signature refused: {exc}") from None
        problem: Exception | None = None
        for cert_pem in certs:
            try:
                self._xmlsec_verify(target, signature, cert_pem)
                return True
            except xmlsec.Error as exc:  # VerificationError included
                problem = exc
        log.info("signature not valid: %s", problem)
        raise SignatureError(f"signature not valid: {problem}")

    def _xmlsec_verify(self, target: Any, signature: Any, cert_pem: str | bytes) -> None:
        key = self._keys.get(_as_bytes(cert_pem), xmlsec.constants.KeyDataFormatCertPem, "cert")
        ctx = xmlsec.SignatureContext()  # fresh per call: contexts are not shareable
        ctx.set_enabled_key_data([xmlsec.constants.KeyDataX509])
        for transform in self.policy.xmlsec_reference:
            ctx.enable_reference_transform(transform)
        for transform in self.policy.xmlsec_signature:
            ctx.enable_signature_transform(transform)
        ctx.register_id(target, "ID")
        ctx.key = key  # copied into the context; KeyInfo is never consulted
        ctx.verify(signature)

    # -- decryption -----------------------------------------------------------------

    def decrypt(self, enctext: str | bytes, key_file: str) -> str:
        """pysaml2's interface: decrypt the first EncryptedData with the key in `key_file`."""
        try:
            key_pem = _read_file(key_file)
        except OSError:
            raise DecryptError("decryption failed") from None
        return self.decrypt_with_key(enctext, key_pem)

    def decrypt_with_key(self, enctext: str | bytes, key_pem: str | bytes) -> str:
        """The whole document with its first EncryptedData replaced by the plaintext element.

        The allowed key transport and content encryption only. Every
        failure raises the same `DecryptError` (no padding or format oracle);
        the reason goes to the debug log.
        """
        try:
            root = parse_untrusted(enctext, self.max_bytes)
            encrypted = next(root.iter(_ENCRYPTED_DATA), None)
            if encrypted is None:
                raise ValueError("no EncryptedData")
            key_size = self._check_encrypted_data(encrypted)
            encrypted_key = _encrypted_key_for(encrypted)
            _check_key_transport(encrypted_key, self.key_transport)
            private = self._keys.get(_as_bytes(key_pem), xmlsec.constants.KeyDataFormatPem, "key")
            transport = xmlsec.EncryptionContext()
            transport.key = private
            session_key = transport.decrypt(encrypted_key)
            if not isinstance(session_key, bytes) or len(session_key) != key_size:
                raise ValueError("the session key has the wrong size")
            content = xmlsec.EncryptionContext()
            key_data = (
                xmlsec.constants.KeyDataDes
                if _method(encrypted) == TRIPLE_DES_CBC
                else xmlsec.constants.KeyDataAes
            )
            content.key = xmlsec.Key.from_binary_data(key_data, session_key)
            parent = encrypted.getparent()
            before = None if parent is None else (parent.index(encrypted), len(_children(parent)))
            decrypted = content.decrypt(encrypted)
            _check_plaintext(parent, before, decrypted)
            return etree.tostring(root if parent is not None else decrypted, encoding="unicode")
        except (ValueError, xmlsec.Error) as exc:
            log.debug("decryption refused: %s", exc)
            raise DecryptError("decryption failed") from None

    def _check_encrypted_data(self, encrypted: etree._Element) -> int:
        if encrypted.get("Type") != _ENC_ELEMENT:
            raise ValueError("only encrypted elements are accepted")
        algorithm = _method(encrypted)
        if algorithm is None or algorithm not in self._data_algorithms:
            log.warning(
                "encrypted assertion refused: data encryption %r is not allowed "
                "(security.allowed_data_encryption)",
                algorithm,
            )
            raise ValueError("data encryption algorithm not allowed")
        return self._data_algorithms[algorithm]

    # -- signing (our own AuthnRequests, logout messages, metadata) --------------------

    def sign_statement(
        self, statement: str | bytes, node_name: str, key_file: str, node_id: str | None
    ) -> str:
        """Sign the template pysaml2 put in element `node_name`/`node_id`; returns the document."""
        try:
            root = parse_untrusted(statement, self.max_bytes)
            target = root if node_id is None else find_target(root, node_name, node_id)
            if target.tag != _clark(node_name):
                raise ValueError("the document root is not the element to sign")
            templates = [child for child in target if child.tag == _SIGNATURE]
            if len(templates) != 1:
                raise ValueError(f"{len(templates)} Signature templates on the element")
            key = self._keys.get(_read_file(key_file), xmlsec.constants.KeyDataFormatPem, "key")
            ctx = xmlsec.SignatureContext()
            if target.get("ID"):
                ctx.register_id(target, "ID")
            ctx.key = key
            ctx.sign(templates[0])
        except (OSError, ValueError, xmlsec.Error) as exc:
            raise SignatureError(f"signing failed: {exc}") from None
        return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True).decode(
            "utf-8"
        )

    # -- IdP-side operations: not needed by a service provider ------------------------

    def encrypt(self, text: Any, recv_key: Any, template: Any, key_type: Any) -> str:
        raise NotImplementedError("the in-process backend does not encrypt (IdP-only)")

    def encrypt_assertion(
        self, statement: Any, enc_key: Any, template: Any, key_type: Any, node_xpath: Any
    ) -> str:
        raise NotImplementedError("the in-process backend does not encrypt (IdP-only)")


def _method(node: etree._Element) -> str | None:
    method = node.find(f"{{{XENC}}}EncryptionMethod")
    return None if method is None else method.get("Algorithm")


def _encrypted_key_for(encrypted: etree._Element) -> etree._Element:
    """The EncryptedKey in the EncryptedData's KeyInfo, else its one sibling EncryptedKey."""
    key_info = encrypted.find(f"{{{DS}}}KeyInfo")
    inside = [] if key_info is None else key_info.findall(_ENCRYPTED_KEY)
    if inside:
        if len(inside) != 1:
            raise ValueError("several EncryptedKeys")
        return inside[0]
    parent = encrypted.getparent()
    siblings = [] if parent is None else parent.findall(_ENCRYPTED_KEY)
    if len(siblings) != 1:
        raise ValueError(f"{len(siblings)} EncryptedKeys beside the EncryptedData")
    return siblings[0]


def _check_key_transport(encrypted_key: etree._Element, allowed: frozenset[str]) -> None:
    method = encrypted_key.find(f"{{{XENC}}}EncryptionMethod")
    if method is None or method.get("Algorithm") not in allowed:
        algorithm = None if method is None else method.get("Algorithm")
        log.warning(
            "encrypted assertion refused: key transport %r is not allowed "
            "(security.allowed_key_transport)",
            algorithm,
        )
        raise ValueError("key transport algorithm not allowed")
    for parameter in _children(method):
        if parameter.tag == f"{{{DS}}}DigestMethod":
            if parameter.get("Algorithm") not in _OAEP_DIGESTS:
                raise ValueError("OAEP digest not allowed")
        elif parameter.tag == f"{{{XENC11}}}MGF":
            if parameter.get("Algorithm") not in _OAEP_MGFS:
                raise ValueError("OAEP mask function not allowed")
        elif parameter.tag != f"{{{XENC}}}OAEPparams":
            raise ValueError("unexpected key transport parameter")


def _check_plaintext(
    parent: etree._Element | None, before: tuple[int, int] | None, decrypted: Any
) -> None:
    """The plaintext took the EncryptedData's place as exactly one element.

    Anyone can encrypt to our public key, so the plaintext is as untrusted as
    the rest: it is re-checked by signature verification afterwards, but must
    not smuggle in further elements beside the one that will be verified.
    """
    if not isinstance(decrypted, etree._Element) or not isinstance(decrypted.tag, str):
        raise ValueError("the plaintext is not an element")
    if parent is None or before is None:
        return
    position, count = before
    if decrypted.getparent() is not parent or parent.index(decrypted) != position:
        raise ValueError("the plaintext did not replace the EncryptedData")
    if len(_children(parent)) != count:
        raise ValueError("the plaintext holds more than one element")
    if parent.tag == _ENCRYPTED_ASSERTION and decrypted.tag != _ASSERTION:
        raise ValueError("an EncryptedAssertion must hold an Assertion")


# -- schema validation: libxml2, compiled once per thread -------------------------------


class _SchemaResolver(etree.Resolver):
    """Serves pysaml2's bundled XSDs for their remote locations; nothing else."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def resolve(self, url: str | None, pubid: str | None, context: Any) -> Any:
        if url is None:
            return None
        name = _REMOTE_SCHEMAS.get(url)
        if name is None and url.startswith(self.directory + os.sep):
            name = os.path.basename(url)
        if name is None:
            raise ValueError(f"schema location {url[:200]!r} is not bundled")
        return self.resolve_filename(os.path.join(self.directory, name), context)


def _compile_schema() -> etree.XMLSchema:
    import saml2.data.schemas as schemas

    directory = str(files(schemas))
    imports = "".join(
        f'<xs:import namespace="{ns}" schemaLocation="{os.path.join(directory, name)}"/>'
        for ns, name in _SCHEMA_FILES.items()
    )
    wrapper = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'targetNamespace="urn:saml-middleware:schema-bundle">{imports}</xs:schema>'
    )
    # Trusted local files: their internal DTD subsets define entities the XSDs use.
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=True)
    parser.resolvers.add(_SchemaResolver(directory))
    document = etree.fromstring(wrapper.encode(), parser, base_url=os.path.join(directory, "_"))
    return etree.XMLSchema(document)


def _schema() -> etree.XMLSchema:
    schema = getattr(_local, "schema", None)
    if schema is None:
        schema = _local.schema = _compile_schema()
    return schema


def validate_schema(xml: str | bytes | etree._Element) -> None:
    """The SAML/xmldsig/xmlenc XSDs pysaml2 validates with; raises ValueError.

    `xml` is untrusted text, or an element (its subtree is validated as a document).
    """
    document = xml if isinstance(xml, etree._Element) else parse_untrusted(xml)
    schema = _schema()
    if not schema.validate(document):
        error = schema.error_log.last_error
        raise ValueError(f"schema: {error.message if error else 'invalid'}")


# -- the security context ----------------------------------------------------------------


class InProcessSecurityContext(SecurityContext):
    """pysaml2's SecurityContext with `_check_signature` done in memory (module docstring)."""

    crypto: XmlSecBackend

    @classmethod
    def adopt(cls, context: SecurityContext, crypto: XmlSecBackend) -> InProcessSecurityContext:
        """A copy of `context` (keys, metadata, settings) using `crypto`."""
        new = cls.__new__(cls)
        new.__dict__.update(vars(context))
        new.crypto = crypto
        if getattr(new.cert_handler, "_security_context", None) is context:
            new.cert_handler._security_context = new
        return new

    def _check_signature(
        self,
        decoded_xml: Any,
        item: Any,
        node_name: str = NODE_NAME,
        origdoc: Any = None,
        must: bool = False,
        only_valid_cert: bool = False,
        issuer: Any = None,
    ) -> Any:
        """pysaml2 7.5's checks, in order, without temporary files.

        Stricter than upstream: the key is always from metadata (never KeyInfo,
        whatever `only_use_keys_in_metadata` says) and an unverified signature
        is refused even with `only_valid_cert`.
        """
        _issuer = _text(getattr(item, "issuer", None)) or _text(issuer)
        certs: list[str] = []
        if self.metadata:
            try:
                found = self.metadata.certs(_issuer, "any", "signing")
            except KeyError:
                found = []
            certs = [pem_format(cert) for _name, cert in found if isinstance(cert, str)]
        if not certs:
            raise MissingKey(_issuer)
        if decoded_xml is None or item.signature is None:
            raise SignatureError("nothing to verify")
        problems = _xmldsig_profile_problems(item)
        if problems:
            raise SignatureError(
                {
                    "message": "Signature failed to meet constraints on xmldsig",
                    "validators": problems,
                    "item ID": item.id,
                    "issuer": _issuer,
                    "node name": node_name,
                }
            )
        # The schema, twice: on pysaml2's re-serialisation of the item, as upstream
        # does (it catches what pysaml2's object model makes of the element, e.g. an
        # AttributeValue with element content that pysaml2 types as xs:string), and
        # inside the backend on the very element xmlsec verifies.
        try:
            validate_schema(str(item))
        except ValueError as exc:
            raise SignatureError(
                {
                    "message": "Signature verification failed. Invalid document format.",
                    "reason": str(exc),
                    "ID": item.id,
                    "issuer": _issuer,
                    "type": node_name,
                }
            ) from None
        try:
            self.crypto.verify_any(decoded_xml, certs, node_name, item.id, schema=True)
        except XmlsecError as exc:
            log.debug("check_sig: %s", exc)
            raise SignatureError(f"Failed to verify signature ({exc})") from None
        return item


def _text(node: Any) -> str | None:
    try:
        return str(node.text).strip()
    except AttributeError:
        return None


def _xmldsig_profile_problems(item: Any) -> list[str]:
    """pysaml2's SAML core §5.4 checks on the parsed item (the names it reports)."""
    signed_info = item.signature.signed_info
    references = signed_info.reference
    problems = []
    if len(references) != 1:
        return ["signatures must have a single reference element"]
    reference = references[0]
    uri = getattr(reference, "uri", None) or ""
    if not (uri.startswith("#") and len(uri) > 1):
        problems.append("the URI attribute contains an anchor")
    elif uri != f"#{item.id}":
        problems.append("the anchor points to the enclosing element ID attribute")
    c14n = signed_info.canonicalization_method
    if c14n is None or c14n.algorithm not in ALLOWED_CANONICALIZATIONS:
        problems.append("canonicalization method is c14n")
    transforms = reference.transforms.transform if reference.transforms else []
    algorithms = [transform.algorithm for transform in transforms]
    if not 1 <= len(algorithms) <= 2:
        problems.append("the number of transforms is one or two")
    elif not set(algorithms) <= ALLOWED_TRANSFORMS:
        problems.append("all transform algs are allowed")
    elif TRANSFORM_ENVELOPED not in algorithms:
        problems.append("the enveloped signature transform is defined")
    if item.signature.object:
        problems.append("object element is not present")
    return problems


# -- installation and the start-up self-test -------------------------------------------


def install(
    client: Any,
    *,
    reject_sha1: bool,
    key_transport: Iterable[str] = (RSA_OAEP_MGF1P, RSA_OAEP),
    data_encryption: Iterable[str] = tuple(AES_GCM),
) -> XmlSecBackend:
    """Put the in-process backend on a pysaml2 `Entity` (e.g. `Saml2Client`); returns it.

    Replaces `client.sec` by an `InProcessSecurityContext` carrying the same
    keys and metadata, gives it the redirect-binding signer pysaml2 builds only
    for its xmlsec1 backend, and points the metadata store's own context at it.
    The client may have been built with `crypto_backend="XMLSecurity"` so that
    no `xmlsec1` program is needed: that backend is replaced here, unused.
    """
    if getattr(client.config, "validate_certificate", None):
        raise CryptoBackendError("validate_certificate is not supported by the in-process backend")
    backend = XmlSecBackend(
        reject_sha1=reject_sha1, key_transport=key_transport, data_encryption=data_encryption
    )
    sec = InProcessSecurityContext.adopt(client.sec, backend)
    if sec.sec_backend is None and sec.key_file:
        sec.sec_backend = RSACrypto(import_rsa_key_from_file(sec.key_file))
    client.sec = sec
    metadata = getattr(client, "metadata", None)
    if metadata is not None and hasattr(metadata, "security"):
        metadata.security = sec
    return backend


_self_test_lock = threading.Lock()
_self_test_passed = False


def self_test() -> None:
    """Sign and verify once in this process; raise `CryptoBackendError` if that cannot work.

    Catches a python `xmlsec` that cannot load, an lxml and xmlsec linked
    against different libxml2 versions (which corrupts trees silently or
    crashes), and an xmlsec library missing the algorithms the policy needs.
    """
    global _self_test_passed
    if _self_test_passed:
        return
    with _self_test_lock:
        if _self_test_passed:
            return
        if xmlsec is None:
            raise CryptoBackendError(
                f"the python xmlsec binding cannot be loaded ({_IMPORT_ERROR}); install "
                "matching lxml and xmlsec wheels, or set security.crypto_backend to 'xmlsec1'"
            )
        lxml_version = etree.LIBXML_VERSION
        xmlsec_version = xmlsec.get_libxml_version()
        if tuple(lxml_version) != tuple(xmlsec_version):
            raise CryptoBackendError(
                f"lxml uses libxml2 {_dotted(lxml_version)} but xmlsec uses libxml2 "
                f"{_dotted(xmlsec_version)}: install wheels built against the same libxml2 "
                "(e.g. `pip install --force-reinstall --no-binary lxml,xmlsec lxml xmlsec`), "
                "or set security.crypto_backend to 'xmlsec1'"
            )
        try:
            _sign_and_verify_once()
        except Exception as exc:  # noqa: BLE001 - any failure means "do not use"
            raise CryptoBackendError(
                f"the in-process XML signature self-test failed ({type(exc).__name__}: {exc}); "
                "set security.crypto_backend to 'xmlsec1' to use the xmlsec1 program instead"
            ) from exc
        _self_test_passed = True


def _dotted(version: Iterable[int]) -> str:
    return ".".join(str(n) for n in version)


def _sign_and_verify_once() -> None:
    """An EC key (fast to make), an enveloped signature, a verify, a tampered verify."""
    from ..keys import generate_key_pair

    key_pem, cert_pem = generate_key_pair("saml-middleware self-test", days=1, kind="ec")
    saml = "urn:oasis:names:tc:SAML:2.0:assertion"
    document = etree.Element(f"{{{saml}}}Assertion", ID="_selftest", nsmap={"saml": saml})
    etree.SubElement(document, f"{{{saml}}}Issuer").text = "self-test"
    c = xmlsec.constants
    signature = xmlsec.template.create(document, c.TransformExclC14N, c.TransformEcdsaSha256)
    document.insert(1, signature)
    reference = xmlsec.template.add_reference(signature, c.TransformSha256, uri="#_selftest")
    xmlsec.template.add_transform(reference, c.TransformEnveloped)
    xmlsec.template.add_transform(reference, c.TransformExclC14N)
    ctx = xmlsec.SignatureContext()
    ctx.register_id(document, "ID")
    ctx.key = xmlsec.Key.from_memory(key_pem.encode(), c.KeyDataFormatPem, None)
    ctx.sign(signature)
    signed = etree.tostring(document)
    checker = _SelfTestBackend()
    checker.verify(signed, cert_pem, f"{saml}:Assertion", "_selftest")  # the whole path
    tampered = parse_untrusted(signed.replace(b">self-test<", b">self-tesT<"))
    target = find_target(tampered, f"{saml}:Assertion", "_selftest")
    try:
        checker._xmlsec_verify(target, target.find(_SIGNATURE), cert_pem)
    except xmlsec.Error:
        pass
    else:
        raise CryptoBackendError("a tampered document verified")
    validate_schema(b'<saml:Issuer xmlns:saml="' + saml.encode() + b'">x</saml:Issuer>')


class _SelfTestBackend(XmlSecBackend):
    """The real verification path, without recursing into self_test()."""

    def __init__(self) -> None:
        self.reject_sha1 = True
        self.key_transport = frozenset({RSA_OAEP_MGF1P, RSA_OAEP})
        self.max_bytes = MAX_XML_BYTES
        self.policy = _Policy(reject_sha1=True)
        self._keys = _KeyCache(size=2)
        self._data_algorithms = dict(AES_GCM)


__all__ = [
    "CryptoBackendError",
    "in_schema_order",
    "InProcessSecurityContext",
    "XmlSecBackend",
    "install",
    "self_test",
]
