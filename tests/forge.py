"""Forge SAML Responses for the ACS tests: decode, mutate, re-sign, encode.

A test takes a Response minted by a `DevIdP` whose private key it holds, decodes
it, changes exactly one thing with lxml, re-signs the assertion (and, if asked,
the response) with the python `xmlsec` binding, and posts the Base64 to the ACS.
The signature is then valid for the trusted IdP key, so whatever the SP refuses,
it refuses for the one thing that was changed.

Every mutation works in place on the decoded tree and does one thing. Signing is
separate: mutate first, then `resign(root, keys)`.

    root = decode(idp.create_response(...))
    set_recipient(root, "https://evil.test/acs")
    resign(root, IDP_KEYS)
    await browser.post_acs(encode(root))
"""

from __future__ import annotations

import base64
import copy
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import xmlsec
from lxml import etree

from saml_middleware.keys import generate_key_pair

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS, "xenc": "http://www.w3.org/2001/04/xmlenc#"}

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SENDER_VOUCHES = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"

# (SignatureMethod, DigestMethod) per name.
ALGORITHMS = {
    "sha256": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256),
    "sha384": (xmlsec.constants.TransformRsaSha384, xmlsec.constants.TransformSha384),
    "sha512": (xmlsec.constants.TransformRsaSha512, xmlsec.constants.TransformSha512),
    "sha1": (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1),
    "ecdsa-sha256": (xmlsec.constants.TransformEcdsaSha256, xmlsec.constants.TransformSha256),
}
ENVELOPED = xmlsec.constants.TransformEnveloped
EXC_C14N = xmlsec.constants.TransformExclC14N
XENC = "http://www.w3.org/2001/04/xmlenc#"
# Block ciphers and key transports for `encrypt_assertion`, by name.
CIPHERS = {
    "aes128-cbc": (xmlsec.constants.TransformAes128Cbc, xmlsec.constants.KeyDataAes, 128),
    "aes256-cbc": (xmlsec.constants.TransformAes256Cbc, xmlsec.constants.KeyDataAes, 256),
    "aes256-gcm": (xmlsec.constants.TransformAes256Gcm, xmlsec.constants.KeyDataAes, 256),
    "tripledes-cbc": (xmlsec.constants.TransformDes3Cbc, xmlsec.constants.KeyDataDes, 192),
}
KEY_TRANSPORTS = {
    "rsa-oaep": xmlsec.constants.TransformRsaOaep,
    "rsa-1_5": xmlsec.constants.TransformRsaPkcs1,
}


@dataclass(frozen=True)
class KeyPair:
    """A private key and its self-signed certificate, both PEM."""

    key_pem: str
    cert_pem: str

    @classmethod
    def generate(cls, common_name: str) -> KeyPair:
        key_pem, cert_pem = generate_key_pair(common_name)
        return cls(key_pem, cert_pem)


# -- decoding and encoding -------------------------------------------------------


def decode(saml_response: str) -> etree._Element:
    """The Response element of a Base64 HTTP-POST `SAMLResponse`."""
    return etree.fromstring(base64.b64decode(saml_response))


def encode(root: etree._Element) -> str:
    """Base64 of the serialised tree, ready for the ACS form."""
    return base64.b64encode(etree.tostring(root, encoding="UTF-8")).decode("ascii")


def saml_time(epoch: float) -> str:
    """SAML dateTime (UTC, seconds) for an epoch time."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_now(seconds: float) -> str:
    """SAML dateTime `seconds` from now (negative: in the past)."""
    return saml_time(time.time() + seconds)


# -- finding the parts -----------------------------------------------------------


def one(root: etree._Element, path: str) -> etree._Element:
    """The single element at `path` (XPath with the saml/samlp/ds prefixes)."""
    found = root.xpath(path, namespaces=NS)
    assert len(found) == 1, f"{path}: {len(found)} matches"
    return found[0]


def assertion(root: etree._Element) -> etree._Element:
    """The (first) Assertion that is a direct child of the Response."""
    return root.xpath("saml:Assertion", namespaces=NS)[0]


def name_id(root: etree._Element) -> etree._Element:
    return one(assertion(root), "saml:Subject/saml:NameID")


def subject_confirmation(root: etree._Element) -> etree._Element:
    return one(assertion(root), "saml:Subject/saml:SubjectConfirmation")


def subject_confirmation_data(root: etree._Element) -> etree._Element:
    return one(subject_confirmation(root), "saml:SubjectConfirmationData")


def conditions(root: etree._Element) -> etree._Element:
    return one(assertion(root), "saml:Conditions")


def _set_attribute(element: etree._Element, name: str, value: str | None) -> None:
    """Set `name` to `value`, or remove it when `value` is None."""
    if value is None:
        element.attrib.pop(name, None)
    else:
        element.set(name, value)


# -- mutations: the Response -------------------------------------------------------


def set_destination(root: etree._Element, value: str | None) -> None:
    """Response Destination (None removes it)."""
    _set_attribute(root, "Destination", value)


def set_response_in_response_to(root: etree._Element, value: str | None) -> None:
    """Response InResponseTo (None removes it)."""
    _set_attribute(root, "InResponseTo", value)


def set_response_issuer(root: etree._Element, value: str) -> None:
    one(root, "saml:Issuer").text = value


def set_status(root: etree._Element, code: str, second_level: str | None = None) -> None:
    """Replace the top-level StatusCode (and optionally add a second-level one)."""
    status_code = one(root, "samlp:Status/samlp:StatusCode")
    status_code.set("Value", code)
    for child in list(status_code):
        status_code.remove(child)
    if second_level:
        etree.SubElement(status_code, f"{{{SAMLP}}}StatusCode", Value=second_level)


def remove_assertions(root: etree._Element) -> None:
    """Drop every assertion (what an IdP sends with an error status)."""
    for node in root.xpath("saml:Assertion", namespaces=NS):
        root.remove(node)


def add_assertion_copy(root: etree._Element, new_id: str, name_id_text: str | None = None) -> None:
    """Append a copy of the assertion with a new ID (and NameID); sign it with `resign`."""
    clone = copy.deepcopy(assertion(root))
    clone.set("ID", new_id)
    for signature in clone.xpath("ds:Signature", namespaces=NS):
        clone.remove(signature)
    if name_id_text is not None:
        one(clone, "saml:Subject/saml:NameID").text = name_id_text
    root.append(clone)


def add_element_with_assertion_id(root: etree._Element) -> None:
    """A `samlp:Extensions` child carrying the assertion's ID (S9 duplicate-ID pollution)."""
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    etree.SubElement(extensions, "{urn:example:forge}Marker", ID=assertion(root).get("ID"))
    one(root, "samlp:Status").addprevious(extensions)


def set_response_id_to_assertion_id(root: etree._Element) -> None:
    """Give the Response the assertion's ID (a duplicated ID, no extra element)."""
    root.set("ID", assertion(root).get("ID"))


# -- mutations: the Assertion --------------------------------------------------------


def set_assertion_issuer(root: etree._Element, value: str) -> None:
    one(assertion(root), "saml:Issuer").text = value


def remove_assertion_issuer(root: etree._Element) -> None:
    node = one(assertion(root), "saml:Issuer")
    node.getparent().remove(node)


def set_name_id(root: etree._Element, value: str) -> None:
    """NameID text ("" leaves an empty element)."""
    name_id(root).text = value


def remove_name_id(root: etree._Element) -> None:
    node = name_id(root)
    node.getparent().remove(node)


def inject_comment_in_name_id(root: etree._Element, before: str, after: str) -> None:
    """NameID `before<!---->after` (CVE-2017-11427): the text is split by a comment."""
    node = name_id(root)
    node.text = before
    comment = etree.Comment("")
    comment.tail = after
    node.append(comment)


def set_issuer_with_comment(root: etree._Element, before: str, after: str) -> None:
    """Assertion and Response Issuer `before<!---->after`."""
    for issuer in (one(root, "saml:Issuer"), one(assertion(root), "saml:Issuer")):
        issuer.text = before
        for child in list(issuer):
            issuer.remove(child)
        comment = etree.Comment("")
        comment.tail = after
        issuer.append(comment)


def set_confirmation_method(root: etree._Element, method: str) -> None:
    subject_confirmation(root).set("Method", method)


def set_recipient(root: etree._Element, value: str | None) -> None:
    """SubjectConfirmationData Recipient (None removes it)."""
    _set_attribute(subject_confirmation_data(root), "Recipient", value)


def set_scd_not_on_or_after(root: etree._Element, value: str | None) -> None:
    """SubjectConfirmationData NotOnOrAfter (None removes it)."""
    _set_attribute(subject_confirmation_data(root), "NotOnOrAfter", value)


def set_scd_not_before(root: etree._Element, value: str | None) -> None:
    """SubjectConfirmationData NotBefore (the bearer profile forbids it)."""
    _set_attribute(subject_confirmation_data(root), "NotBefore", value)


def set_scd_in_response_to(root: etree._Element, value: str | None) -> None:
    """SubjectConfirmationData InResponseTo (None removes it)."""
    _set_attribute(subject_confirmation_data(root), "InResponseTo", value)


def set_conditions_not_before(root: etree._Element, value: str | None) -> None:
    _set_attribute(conditions(root), "NotBefore", value)


def set_conditions_not_on_or_after(root: etree._Element, value: str | None) -> None:
    _set_attribute(conditions(root), "NotOnOrAfter", value)


def remove_conditions(root: etree._Element) -> None:
    """No Conditions at all (no times, no audience)."""
    node = conditions(root)
    node.getparent().remove(node)


def remove_audience_restrictions(root: etree._Element) -> None:
    """Conditions stay (with their times); every AudienceRestriction goes."""
    for node in conditions(root).xpath("saml:AudienceRestriction", namespaces=NS):
        conditions(root).remove(node)


def set_audience(root: etree._Element, value: str) -> None:
    """The one Audience of the one AudienceRestriction."""
    one(conditions(root), "saml:AudienceRestriction/saml:Audience").text = value


def add_audience_restriction(root: etree._Element, *audiences: str) -> None:
    """A further AudienceRestriction naming `audiences` (AND semantics across them)."""
    restriction = etree.SubElement(conditions(root), f"{{{SAML}}}AudienceRestriction")
    for audience in audiences:
        etree.SubElement(restriction, f"{{{SAML}}}Audience").text = audience


# -- signatures ------------------------------------------------------------------------


def strip_signatures(root: etree._Element) -> None:
    """Remove every ds:Signature in the document."""
    for signature in root.xpath("//ds:Signature", namespaces=NS):
        signature.getparent().remove(signature)


def sign(
    element: etree._Element,
    keys: KeyPair,
    algorithm: str = "sha256",
    *,
    c14n: object = EXC_C14N,
    transforms: tuple[object, ...] = (ENVELOPED, EXC_C14N),
    uri: str | None = None,
    key_info: str = "x509",
) -> etree._Element:
    """Enveloped signature of `element` (by its ID), placed right after its Issuer.

    By default: exc-c14n, `algorithm` (a key of ALGORITHMS) for both the
    signature and the digest, and the signer's certificate in KeyInfo (which the
    SP must ignore). The keywords make the odd signatures attacks need: another
    `c14n` method or `transforms` (xmlsec constants), another Reference `uri`
    ("" signs the whole document), or `key_info` "keyvalue" (the raw public key)
    or "none". Returns the ds:Signature.
    """
    signature_method, digest_method = ALGORITHMS[algorithm]
    signature = xmlsec.template.create(element, c14n, signature_method, ns="ds")
    issuer = element.find(f"{{{SAML}}}Issuer")
    if issuer is not None:
        issuer.addnext(signature)
    else:
        element.insert(0, signature)
    target = f"#{element.get('ID')}" if uri is None else uri
    reference = xmlsec.template.add_reference(signature, digest_method, uri=target)
    for transform in transforms:
        xmlsec.template.add_transform(reference, transform)
    if key_info != "none":
        info = xmlsec.template.ensure_key_info(signature)
        if key_info == "keyvalue":
            xmlsec.template.add_key_value(info)
        else:
            xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(info))
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(keys.key_pem.encode(), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(keys.cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    context.key = key
    if element.get("ID"):
        context.register_id(element, "ID")
    context.sign(signature)
    return signature


def sign_assertions(root: etree._Element, keys: KeyPair, algorithm: str = "sha256") -> None:
    """Sign every assertion that is a direct child of the Response."""
    for node in root.xpath("saml:Assertion", namespaces=NS):
        sign(node, keys, algorithm)


def sign_response(root: etree._Element, keys: KeyPair, algorithm: str = "sha256") -> None:
    """Sign the Response itself (do it after the assertions: it covers them)."""
    sign(root, keys, algorithm)


def resign(
    root: etree._Element,
    keys: KeyPair,
    *,
    response: bool = False,
    algorithm: str = "sha256",
) -> None:
    """Drop every signature, sign the assertion(s), and the Response when `response`."""
    strip_signatures(root)
    sign_assertions(root, keys, algorithm)
    if response:
        sign_response(root, keys, algorithm)


# -- encryption --------------------------------------------------------------------------


def encrypt_assertion(
    root: etree._Element,
    recipient_cert_pem: str,
    *,
    cipher: str = "aes256-cbc",
    key_transport: str = "rsa-oaep",
) -> etree._Element:
    """Replace the (first direct) Assertion by an EncryptedAssertion for the recipient.

    The assertion keeps its signature (sign first): it is encrypted as its exact
    serialization, in a document of its own (moving it with lxml could rename its
    namespace prefixes, which breaks exclusive c14n). Returns the EncryptedAssertion.
    """
    plain = assertion(root)
    wrapper = etree.fromstring(
        f'<saml:EncryptedAssertion xmlns:saml="{SAML}">'.encode()
        + etree.tostring(plain)
        + b"</saml:EncryptedAssertion>"
    )
    method, key_kind, bits = CIPHERS[cipher]
    template = xmlsec.template.encrypted_data_create(
        wrapper, method, type=xmlsec.constants.TypeEncElement, ns="xenc"
    )
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, KEY_TRANSPORTS[key_transport])
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(
        xmlsec.Key.from_memory(recipient_cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    )
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(key_kind, bits, xmlsec.constants.KeyDataTypeSession)
    context.encrypt_xml(template, wrapper[0])
    plain.addprevious(wrapper)  # the ciphertext is opaque: prefixes may change now
    root.remove(plain)
    return wrapper


def decrypt_assertion(root: etree._Element, key_pem: str) -> etree._Element:
    """The Response with its EncryptedAssertion replaced by the Assertion inside.

    Returns a new tree: the wrapper is taken off as text, because moving the
    decrypted element with lxml would rename its namespace prefixes to those of
    the new parent, which changes its exclusive c14n and breaks its signature.
    """
    wrapper = one(root, "saml:EncryptedAssertion")
    data = wrapper.find(f"{{{XENC}}}EncryptedData")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(key_pem.encode(), xmlsec.constants.KeyDataFormatPem))
    xmlsec.EncryptionContext(manager).decrypt(data)  # in place, inside the wrapper
    text = etree.tostring(root)
    text = re.sub(rb"<([\w.-]+:)?EncryptedAssertion\b[^>]*>", b"", text, count=1)
    text = re.sub(rb"</([\w.-]+:)?EncryptedAssertion>", b"", text, count=1)
    return etree.fromstring(text)


def cipher_value(root: etree._Element) -> etree._Element:
    """The CipherValue of the encrypted assertion's data (not of its key)."""
    return one(root, "saml:EncryptedAssertion/xenc:EncryptedData/xenc:CipherData/xenc:CipherValue")
