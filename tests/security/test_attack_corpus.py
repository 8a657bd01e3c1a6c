"""The attack corpus: every applicable catalogue row, against four signing baselines.

Each case is (name, baselines, mutation, expected). A baseline is a genuine
response of the development IdP, signed as one IdP would sign it:

* `assertion`: the assertion only (Entra's default) — SP defaults;
* `response`: the Response only — SP wants the response signed, not the assertion;
* `both`: assertion and Response — SP wants both;
* `encrypted`: a signed assertion inside an EncryptedAssertion — SP with a key.

The mutation gets a `Forgery` (the baseline's tree, the trusted IdP key, the
attacker's key) and edits it with tests/forge.py; for the encrypted baseline it
edits the decrypted assertion, which is encrypted again for the SP before
posting. It may instead return raw bytes (parser attacks). The expectation is a
refusal `(status, code)` checked by `Acs.assert_refused` (no cookie, no
redirect, still anonymous afterwards, one answer for every signature failure),
or `Login(name_id)`: accepted, as exactly that user.

Row names (S1..S28, P1..P10, C1..C17) are the rows of docs/security.md's threat
model tables, which map them to these test IDs.
"""

from __future__ import annotations

import base64
import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import xmlsec
from lxml import etree

from saml_middleware.devidp import DevIdP
from tests import forge
from tests.forge import DS, NS, SAML, SAMLP, KeyPair
from tests.helpers import Canary
from tests.security.harness import EVIL, RELAY, VICTIM, Acs

pytestmark = pytest.mark.anyio

BASELINES = ("assertion", "response", "both", "encrypted")
SIGNED_ASSERTION = ("assertion", "both", "encrypted")  # the assertion carries a signature
SIGNED_RESPONSE = ("response", "both")
PLAIN = ("assertion", "response", "both")
ALL = BASELINES
BSIMON = "B.Simon@contoso.com"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"


# -- the baselines ---------------------------------------------------------------------


def settings_for_baseline(baseline: str, sp_keys: KeyPair) -> dict[str, Any]:
    """The SP settings under which the baseline is exactly what is required."""
    if baseline == "response":
        return {"security__want_assertions_signed": False, "security__want_response_signed": True}
    if baseline == "both":
        return {"security__want_response_signed": True}
    if baseline == "encrypted":
        return {"sp__key_pem": sp_keys.key_pem, "sp__cert_pem": sp_keys.cert_pem}
    return {}


def mint_options(baseline: str) -> dict[str, Any]:
    return {
        "assertion": {"sign_assertion": True, "sign_response": False},
        "response": {"sign_assertion": False, "sign_response": True},
        "both": {"sign_assertion": True, "sign_response": True},
        "encrypted": {"sign_assertion": True, "sign_response": False, "encrypt_assertion": True},
    }[baseline]


@dataclass
class Forgery:
    """A baseline to attack: its tree and the keys at hand."""

    baseline: str
    root: etree._Element  # for `encrypted`: the decrypted, still signed, assertion in place
    keys: KeyPair  # the trusted IdP's
    attacker: KeyPair
    sp: KeyPair  # the SP's (an attacker knows its certificate, never its key)
    canary: Canary
    encrypt: bool = True  # for `encrypted`: encrypt the assertion for the SP before posting
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def assertion(self) -> etree._Element:
        return forge.assertion(self.root)

    def resign(self, keys: KeyPair | None = None, algorithm: str = "sha256") -> None:
        """Sign again as the baseline signs (by default with the trusted key)."""
        keys = keys or self.keys
        forge.strip_signatures(self.root)
        if self.baseline != "response":
            forge.sign_assertions(self.root, keys, algorithm)
        if self.baseline in SIGNED_RESPONSE:
            forge.sign_response(self.root, keys, algorithm)

    def resign_with(self, **options: Any) -> None:
        """Sign the element the baseline signs (the Response for `response`) with odd options."""
        forge.strip_signatures(self.root)
        target = self.root if self.baseline == "response" else self.assertion
        forge.sign(target, self.keys, **options)
        if self.baseline == "both":
            forge.sign_response(self.root, self.keys)

    def signed_element(self) -> etree._Element:
        """The element whose signature the attack targets."""
        return self.root if self.baseline == "response" else self.assertion

    def signature(self) -> etree._Element:
        return forge.one(self.signed_element(), "ds:Signature")

    def finish(self) -> str:
        """The Base64 SAMLResponse to post."""
        if (
            self.baseline == "encrypted"
            and self.encrypt
            and not self.root.xpath("saml:EncryptedAssertion", namespaces=NS)
        ):
            forge.encrypt_assertion(self.root, self.sp.cert_pem)
        return forge.encode(self.root)


@dataclass(frozen=True)
class Login:
    """Expected: accepted, and the session is this user's."""

    name_id: str = BSIMON


Expected = tuple[int, str] | Login
Mutation = Callable[[Forgery], bytes | None]


@dataclass(frozen=True)
class Case:
    name: str
    baselines: tuple[str, ...]
    mutate: Mutation
    expected: Expected | dict[str, Expected]

    def expectation(self, baseline: str) -> Expected:
        if isinstance(self.expected, dict):
            return self.expected[baseline]
        return self.expected


def refused(code: str, status: int = 403) -> tuple[int, str]:
    return (status, code)


# -- helpers for mutations -------------------------------------------------------------


def serialized(f: Forgery) -> bytes:
    return etree.tostring(f.root, encoding="UTF-8")


def with_declaration(f: Forgery, declaration: str) -> bytes:
    return declaration.encode() + etree.tostring(f.root)


def set_algorithm(node: etree._Element, path: str, algorithm: str) -> None:
    forge.one(node, path).set("Algorithm", algorithm)


def add_transform(f: Forgery, algorithm: str, child: etree._Element | None = None) -> None:
    transforms = forge.one(f.signature(), "ds:SignedInfo/ds:Reference/ds:Transforms")
    transform = etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=algorithm)
    if child is not None:
        transform.append(child)


def xslt_stylesheet() -> etree._Element:
    """An XSLT that would loop for long if it ever ran (it must not)."""
    return etree.fromstring(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><xsl:for-each select="//node()|//@*">'
        '<xsl:for-each select="//node()|//@*"><xsl:value-of select="."/></xsl:for-each>'
        "</xsl:for-each></xsl:template></xsl:stylesheet>"
    )


def unsigned_copy(element: etree._Element, new_id: str | None = None) -> etree._Element:
    clone = copy.deepcopy(element)
    for signature in clone.xpath("ds:Signature", namespaces=NS):
        clone.remove(signature)
    if new_id is not None:
        clone.set("ID", new_id)
    return clone


def set_name_id_of(assertion: etree._Element, value: str) -> None:
    forge.one(assertion, "saml:Subject/saml:NameID").text = value


def hmac_sign(element: etree._Element, secret: bytes) -> None:
    """A genuine HMAC-SHA256 signature with a key the attacker chose."""
    signature = xmlsec.template.create(
        element, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformHmacSha256, ns="ds"
    )
    element.find(f"{{{SAML}}}Issuer").addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri=f"#{element.get('ID')}"
    )
    xmlsec.template.add_transform(reference, forge.ENVELOPED)
    xmlsec.template.add_transform(reference, forge.EXC_C14N)
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataHmac, secret)
    context.register_id(element, "ID")
    context.sign(signature)


# -- signatures: stripped, edited, re-signed, odd keys (S10-S15) ---------------------------


def strip_signatures(f: Forgery) -> None:
    forge.strip_signatures(f.root)


def edit_without_resigning(f: Forgery) -> None:
    set_name_id_of(f.assertion, VICTIM)


def resign_with_attacker_key(f: Forgery) -> None:
    set_name_id_of(f.assertion, VICTIM)
    f.resign(f.attacker)  # the attacker's certificate goes in KeyInfo


def resign_with_attacker_raw_key(f: Forgery) -> None:
    set_name_id_of(f.assertion, VICTIM)
    forge.strip_signatures(f.root)
    target = f.root if f.baseline == "response" else f.assertion
    forge.sign(target, f.attacker, key_info="keyvalue")
    if f.baseline == "both":
        forge.sign(f.root, f.attacker, key_info="keyvalue")


def hmac_with_chosen_key(f: Forgery) -> None:
    set_name_id_of(f.assertion, VICTIM)
    forge.strip_signatures(f.root)
    hmac_sign(f.signed_element(), b"the attacker's secret")
    if f.baseline == "both":
        forge.sign_response(f.root, f.attacker)


def signed_response_unsigned_assertion(f: Forgery) -> None:
    """S11: only the Response is signed, the SP wants the assertion signed."""
    forge.strip_signatures(f.root)
    forge.sign_response(f.root, f.keys)


def signed_assertion_unsigned_response(f: Forgery) -> None:
    """S12: only the assertion is signed, the SP wants the Response signed."""
    forge.strip_signatures(f.root)
    forge.sign_assertions(f.root, f.keys)


# -- algorithms, transforms, references (S25-S28) -----------------------------------------


def sha1_signature(f: Forgery) -> None:
    f.resign(algorithm="sha1")


def sha1_digest_only(f: Forgery) -> None:
    f.resign()
    set_algorithm(f.signature(), "ds:SignedInfo/ds:Reference/ds:DigestMethod", f"{DS}sha1")


def sha512_signature(f: Forgery) -> None:
    f.resign(algorithm="sha512")


def rsa_md5_signature(f: Forgery) -> None:
    f.resign()
    set_algorithm(
        f.signature(),
        "ds:SignedInfo/ds:SignatureMethod",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
    )


def replace_c14n_transform(f: Forgery, algorithm: str, child: etree._Element) -> None:
    """The Reference's exc-c14n transform becomes `algorithm` (still two transforms)."""
    transform = forge.one(f.signature(), "ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform[2]")
    transform.set("Algorithm", algorithm)
    transform.append(child)


def xslt_transform(f: Forgery) -> None:
    f.resign()
    replace_c14n_transform(f, XSLT, xslt_stylesheet())


def xslt_as_third_transform(f: Forgery) -> None:
    f.resign()
    add_transform(f, XSLT, xslt_stylesheet())


def xpath_transform(f: Forgery) -> None:
    f.resign()
    xpath = etree.Element(f"{{{DS}}}XPath")
    xpath.text = "count(//. | //@* | //namespace::*) > 0"
    replace_c14n_transform(f, XPATH, xpath)


def three_transforms(f: Forgery) -> None:
    f.resign_with(transforms=(forge.ENVELOPED, forge.EXC_C14N, forge.EXC_C14N))


def inclusive_c14n_method(f: Forgery) -> None:
    f.resign_with(c14n=xmlsec.constants.TransformInclC14N)


def c14n_with_comments_method(f: Forgery) -> None:
    f.resign_with(c14n=xmlsec.constants.TransformExclC14NWithComments)


def inclusive_c14n_transform(f: Forgery) -> None:
    f.resign_with(transforms=(forge.ENVELOPED, xmlsec.constants.TransformInclC14N))


def remote_reference_uri(f: Forgery) -> None:
    f.resign()
    forge.one(f.signature(), "ds:SignedInfo/ds:Reference").set("URI", f.canary.url)


def file_reference_uri(f: Forgery) -> None:
    f.resign()
    forge.one(f.signature(), "ds:SignedInfo/ds:Reference").set("URI", "file:///etc/passwd")


def empty_reference_uri(f: Forgery) -> None:
    """S28: a genuine signature over the whole document (URI="")."""
    f.resign_with(uri="")


def reference_to_another_element(f: Forgery) -> None:
    """The signature on one element references another one (the Response's ID)."""
    f.resign()
    other = f.assertion.get("ID") if f.baseline == "response" else f.root.get("ID")
    forge.one(f.signature(), "ds:SignedInfo/ds:Reference").set("URI", f"#{other}")


def signature_on_subject(f: Forgery) -> None:
    """S28: the signature sits in Subject (no ID there), nothing else is signed."""
    forge.strip_signatures(f.root)
    subject = forge.one(f.assertion, "saml:Subject")
    subject.set("ID", "id-signed-subject")
    forge.sign(subject, f.keys)


def harmless_signature_object(f: Forgery) -> None:
    """S8: a ds:Object in the signature, holding nothing but an empty element."""
    obj = etree.SubElement(f.signature(), f"{{{DS}}}Object")
    etree.SubElement(obj, "{urn:example:forge}Nothing")


def signature_object(f: Forgery) -> None:
    """S8 (XSW8): the evil assertion keeps its ID; the original hides in a ds:Object."""
    original = unsigned_copy(f.signed_element())
    set_name_id_of(f.assertion, VICTIM)
    obj = etree.SubElement(f.signature(), f"{{{DS}}}Object")
    obj.append(original)


def stray_digest_value(f: Forgery) -> None:
    """S21: a second DigestValue (an attacker's digest) before the real one."""
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    etree.SubElement(extensions, f"{{{DS}}}DigestValue").text = base64.b64encode(
        b"\0" * 32
    ).decode()
    forge.one(f.root, "samlp:Status").addprevious(extensions)


def two_signed_infos(f: Forgery) -> None:
    signed_info = forge.one(f.signature(), "ds:SignedInfo")
    signed_info.addprevious(copy.deepcopy(signed_info))


def two_references(f: Forgery) -> None:
    reference = forge.one(f.signature(), "ds:SignedInfo/ds:Reference")
    reference.addnext(copy.deepcopy(reference))


def remote_retrieval_method(f: Forgery) -> None:
    key_info = forge.one(f.signature(), "ds:KeyInfo")
    etree.SubElement(key_info, f"{{{DS}}}RetrievalMethod", URI=f.canary.url)


# -- wrapping (S1-S9, S17, S22, S23) ---------------------------------------------------------


def xsw1(f: Forgery) -> None:
    """The signed Response, copied unsigned into its own Signature; the outer one is evil."""
    clone = unsigned_copy(f.root)
    f.root.set("ID", "_evil_response_ID")
    set_name_id_of(f.assertion, VICTIM)
    forge.one(f.root, "ds:Signature").append(clone)


def xsw2(f: Forgery) -> None:
    """As XSW1, the copy placed before the Signature (a detached signature)."""
    clone = unsigned_copy(f.root)
    f.root.set("ID", "_evil_response_ID")
    set_name_id_of(f.assertion, VICTIM)
    forge.one(f.root, "ds:Signature").addprevious(clone)


def xsw3(f: Forgery) -> None:
    """An evil unsigned assertion before the signed one."""
    evil = unsigned_copy(f.assertion, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    f.assertion.addprevious(evil)


def xsw4(f: Forgery) -> None:
    """An evil assertion wrapping the signed one."""
    original = f.assertion
    evil = unsigned_copy(original, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    original.addprevious(evil)
    f.root.remove(original)
    evil.append(original)


def xsw5(f: Forgery) -> None:
    """The signed assertion edited (new ID, evil NameID); an unsigned original copy at the end."""
    original = unsigned_copy(f.assertion)
    f.assertion.set("ID", "_evil_assertion_ID")
    set_name_id_of(f.assertion, VICTIM)
    f.root.append(original)


def xsw6(f: Forgery) -> None:
    """As XSW5, the original copy inside the signature."""
    original = unsigned_copy(f.assertion)
    f.assertion.set("ID", "_evil_assertion_ID")
    set_name_id_of(f.assertion, VICTIM)
    forge.one(f.assertion, "ds:Signature").append(original)


def xsw7(f: Forgery) -> None:
    """An Extensions element holding an evil unsigned copy (same ID) before the assertion."""
    evil = unsigned_copy(f.assertion)
    set_name_id_of(evil, VICTIM)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    extensions.append(evil)
    forge.one(f.root, "samlp:Status").addprevious(extensions)


def duplicate_id_marker(f: Forgery) -> None:
    """S9: an empty element carrying the signed element's ID, before it."""
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    etree.SubElement(extensions, "{urn:example:forge}Marker", ID=f.signed_element().get("ID"))
    forge.one(f.root, "samlp:Status").addprevious(extensions)


def evil_assertion_in_extensions(f: Forgery) -> None:
    """S22: a second, unsigned assertion with its own ID where a naive lookup finds it first."""
    evil = unsigned_copy(f.assertion, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    extensions.append(evil)
    forge.one(f.root, "samlp:Status").addprevious(extensions)


def foreign_namespace_lookalike(f: Forgery) -> None:
    """S23: an `Assertion` in another namespace (fresh ID) before the real one: never read."""
    evil = unsigned_copy(f.assertion, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    text = etree.tostring(evil).replace(SAML.encode(), b"urn:example:not-saml")
    forge.one(f.root, "samlp:Status").addnext(etree.fromstring(text))


def foreign_namespace_same_id(f: Forgery) -> None:
    """S23: a look-alike in another namespace carrying the signed assertion's ID."""
    evil = unsigned_copy(f.assertion)
    text = etree.tostring(evil).replace(SAML.encode(), b"urn:example:not-saml")
    forge.one(f.root, "samlp:Status").addnext(etree.fromstring(text))


def second_signed_assertion(f: Forgery) -> None:
    """S17: two assertions, both genuinely signed."""
    forge.add_assertion_copy(f.root, "_second_assertion_ID", VICTIM)
    f.resign()


def signed_plus_unsigned_assertion(f: Forgery) -> None:
    """S17: the signed assertion plus an unsigned one after it."""
    evil = unsigned_copy(f.assertion, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    f.root.append(evil)


def assertion_plus_encrypted_assertion(f: Forgery) -> None:
    """S17 / C14f: an EncryptedAssertion and a plain evil one."""
    evil = unsigned_copy(f.assertion, "_evil_assertion_ID")
    set_name_id_of(evil, VICTIM)
    forge.encrypt_assertion(f.root, f.sp.cert_pem)
    f.root.append(evil)


def two_encrypted_assertions(f: Forgery) -> None:
    second = copy.deepcopy(f.assertion)
    second.set("ID", "_second_assertion_ID")
    forge.strip_signatures(second)
    set_name_id_of(second, VICTIM)
    forge.sign(second, f.keys)
    forge.encrypt_assertion(f.root, f.sp.cert_pem)
    f.root.append(second)
    forge.encrypt_assertion(f.root, f.sp.cert_pem)


def assertion_in_advice(f: Forgery) -> None:
    """S18: a separately signed assertion for the victim, inside the assertion's Advice."""
    advised = unsigned_copy(f.assertion, "_advised_assertion_ID")
    set_name_id_of(advised, VICTIM)
    for value in advised.xpath(".//saml:AttributeValue", namespaces=NS):
        value.text = "superadmins"
    forge.sign(advised, f.keys)
    advice = etree.Element(f"{{{SAML}}}Advice")
    advice.append(advised)
    forge.one(f.assertion, "saml:Conditions").addnext(advice)
    f.resign()


# -- comments and parser differentials (S19, S20, S23, P1-P10) -------------------------------


def comment_in_name_id(f: Forgery) -> None:
    """S19 (CVE-2017-11427): the signed NameID is split by a comment."""
    node = forge.one(f.assertion, "saml:Subject/saml:NameID")
    node.text = "user@evil.test"
    comment = etree.Comment("")
    comment.tail = ".victim.test"
    node.append(comment)
    f.resign()


def doctype_comment_differential(f: Forgery) -> bytes:
    """S20 (ruby-saml CVE-2025-25291): DOCTYPE/comment/CDATA hiding the signed document."""
    original = serialized(f)
    set_name_id_of(f.assertion, VICTIM)
    evil = etree.tostring(f.root)
    return (
        b"<!DOCTYPE Response SYSTEM 'x\"><!--'>"
        + evil[: evil.rindex(b"</")]
        + b"<![CDATA[-->"
        + original
        + b"<!--]]>-->"
        + evil[evil.rindex(b"</") :]
    )


def internal_entity(f: Forgery) -> bytes:
    """S23: an internal entity in the NameID."""
    set_name_id_of(f.assertion, "&who;")
    body = etree.tostring(f.root).replace(b"&amp;who;", b"&who;")
    return b'<!DOCTYPE r [<!ENTITY who "admin@contoso.com">]>' + body


def xxe_file(f: Forgery) -> bytes:
    """P1: an external entity reading a local file."""
    set_name_id_of(f.assertion, "&xxe;")
    body = etree.tostring(f.root).replace(b"&amp;xxe;", b"&xxe;")
    return b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + body


def xxe_parameter_entity(f: Forgery) -> bytes:
    """P1: a parameter entity fetching from the network (the canary)."""
    return (
        f'<!DOCTYPE r [<!ENTITY % remote SYSTEM "{f.canary.url}"> %remote;]>'.encode()
        + serialized(f)
    )


def doctype_public_url(f: Forgery) -> bytes:
    """P1: a DOCTYPE naming an external DTD (xmlsec1 < 1.2.23 fetched it)."""
    return f'<!DOCTYPE r PUBLIC "-//x//y" "{f.canary.url}">'.encode() + serialized(f)


def billion_laughs(f: Forgery) -> bytes:
    """P2: ten levels of ten entities each."""
    entities = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    return f"<!DOCTYPE r [{''.join(entities)}]><r>&l9;</r>".encode()


def quadratic_blowup(f: Forgery) -> bytes:
    """P2: one 100 kB entity referenced many times."""
    return b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 100_000 + b'">]><r>' + b"&a;" * 1_000 + b"</r>"


def utf16_document(f: Forgery) -> bytes:
    """P8: the same response in UTF-16."""
    return etree.tostring(f.root, encoding="UTF-16")


def utf7_declaration(f: Forgery) -> bytes:
    """P8: a UTF-7 declaration (libxml2 would decode `+ADw-` as `<`; expat would refuse)."""
    return with_declaration(f, '<?xml version="1.0" encoding="UTF-7"?>')


def latin1_declaration(f: Forgery) -> bytes:
    """P8: a declaration that does not match the UTF-8 bytes that follow."""
    set_name_id_of(f.assertion, "B.Sïmon@contoso.com")
    f.resign()
    return with_declaration(f, '<?xml version="1.0" encoding="ISO-8859-1"?>')


def utf8_bom(f: Forgery) -> bytes:
    """P8 control: a UTF-8 BOM and declaration are fine."""
    return b"\xef\xbb\xbf" + with_declaration(f, '<?xml version="1.0" encoding="UTF-8"?>')


def invalid_utf8(f: Forgery) -> bytes:
    return serialized(f).replace(BSIMON.encode(), b"B.Simon\xff@contoso.com")


def nul_byte(f: Forgery) -> bytes:
    return serialized(f).replace(BSIMON.encode(), b"B.Simon\x00@contoso.com")


def deep_nesting(f: Forgery) -> bytes:
    """P9: 20,000 nested elements (under the size limit)."""
    return b"<a>" * 20_000 + b"</a>" * 20_000


def extensions(f: Forgery) -> etree._Element:
    """A samlp:Extensions element (any content allowed) before the Status."""
    node = etree.Element(f"{{{SAMLP}}}Extensions")
    forge.one(f.root, "samlp:Status").addprevious(node)
    return node


def deep_nesting_in_extensions(f: Forgery) -> None:
    """P9: 250 nested elements (within libxml2's limit) where the schema allows anything."""
    node = extensions(f)
    for _ in range(250):
        node = etree.SubElement(node, "{urn:example:deep}n")
    if f.baseline in SIGNED_RESPONSE:
        f.resign()


def deep_nesting_in_attribute(f: Forgery) -> None:
    """P9: nested elements inside a signed AttributeValue (simple content only)."""
    node = f.assertion.xpath(".//saml:AttributeValue", namespaces=NS)[0]
    for _ in range(250):
        node = etree.SubElement(node, "{urn:example:deep}n")
    f.resign()


def xinclude_in_extensions(f: Forgery) -> None:
    """P10: an XInclude of the canary URL: never processed, never fetched."""
    etree.SubElement(extensions(f), "{http://www.w3.org/2001/XInclude}include", href=f.canary.url)
    if f.baseline in SIGNED_RESPONSE:
        f.resign()


def schema_location(f: Forgery) -> None:
    """P10: xsi:schemaLocation pointing at the canary: never fetched."""
    f.root.set(
        "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation",
        f"urn:oasis:names:tc:SAML:2.0:protocol {f.canary.url}",
    )
    f.resign()


def processing_instruction(f: Forgery) -> None:
    """P10: a processing instruction in the signed assertion."""
    forge.one(f.assertion, "saml:Subject").addprevious(etree.PI("xml-stylesheet", "href='x'"))
    f.resign()


def not_xml(f: Forgery) -> bytes:
    return b"hello, this is not XML"


def authn_request_root(f: Forgery) -> bytes:
    return f'<samlp:AuthnRequest xmlns:samlp="{SAMLP}" ID="x" Version="2.0"/>'.encode()


def logout_response_root(f: Forgery) -> bytes:
    return f'<samlp:LogoutResponse xmlns:samlp="{SAMLP}" ID="x" Version="2.0"/>'.encode()


def trailing_second_document(f: Forgery) -> bytes:
    return serialized(f) + serialized(f)


def deflated_response(f: Forgery) -> bytes:
    """P5: the response raw-DEFLATEd, as the Redirect binding would (never inflated here)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(serialized(f)) + deflater.flush()


def deflate_bomb(f: Forgery) -> bytes:
    """P5: ~100 kB of DEFLATE that would inflate to 100 MB."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(b"\0" * 100_000_000) + deflater.flush()


# -- protocol checks not covered by tests/test_acs_checks.py (C1-C17) ---------------------------


def resigned_after(edit: Callable[[Forgery], None]) -> Mutation:
    """A mutation: `edit`, then sign again with the trusted key as the baseline signs."""

    def mutation(f: Forgery) -> None:
        edit(f)
        f.resign()

    mutation.__doc__ = edit.__doc__
    return mutation


def issuer_not_entity_format(f: Forgery) -> None:
    """C1: the right Issuer text with another NameID Format."""
    forge.one(f.assertion, "saml:Issuer").set(
        "Format", "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    )


def wrong_response_issuer(f: Forgery) -> None:
    forge.set_response_issuer(f.root, EVIL)


def wrong_assertion_issuer(f: Forgery) -> None:
    forge.set_assertion_issuer(f.root, EVIL)


def wrong_audience(f: Forgery) -> None:
    forge.set_audience(f.root, "https://other-app.example.test/saml/metadata/")


def wrong_destination(f: Forgery) -> None:
    forge.set_destination(f.root, f"{EVIL}/saml/acs/")


def wrong_recipient(f: Forgery) -> None:
    forge.set_recipient(f.root, f"{EVIL}/saml/acs/")


def inverted_time_window(f: Forgery) -> None:
    """C7: NotBefore after NotOnOrAfter, each within the skew on its own."""
    forge.set_conditions_not_before(f.root, forge.from_now(60))
    forge.set_conditions_not_on_or_after(f.root, forge.from_now(-60))


def no_confirmation_method(f: Forgery) -> None:
    """C9: a SubjectConfirmation without Method."""
    forge.subject_confirmation(f.root).attrib.pop("Method")


def session_not_on_or_after_past(f: Forgery) -> None:
    """C10: the IdP session already ended."""
    statement = forge.one(f.assertion, "saml:AuthnStatement")
    statement.set("SessionNotOnOrAfter", forge.from_now(-3600))


def response_issued_long_ago(f: Forgery) -> None:
    """C11: Response IssueInstant two days ago."""
    f.root.set("IssueInstant", forge.from_now(-2 * 86400))


def response_issued_in_the_future(f: Forgery) -> None:
    """C11: Response IssueInstant two days ahead."""
    f.root.set("IssueInstant", forge.from_now(2 * 86400))


def assertion_issued_in_the_future(f: Forgery) -> None:
    """C11: Assertion IssueInstant ten minutes ahead (beyond the skew)."""
    f.assertion.set("IssueInstant", forge.from_now(600))


def no_status(f: Forgery) -> None:
    """C13: no Status at all."""
    status = forge.one(f.root, "samlp:Status")
    f.root.remove(status)


def success_with_failed_sub_status(f: Forgery) -> None:
    """C13: Success at the top, a failure as second-level code."""
    forge.set_status(f.root, forge.STATUS_SUCCESS, forge.STATUS_AUTHN_FAILED)


def sp_name_qualifier_of_another_sp(f: Forgery) -> None:
    """C15: a NameID qualified for another SP."""
    forge.one(f.assertion, "saml:Subject/saml:NameID").set(
        "SPNameQualifier", "https://other-app.example.test/saml/metadata/"
    )


def garbage_encrypted_id(f: Forgery) -> None:
    """C15: the NameID replaced by an EncryptedID this SP cannot read."""
    name_id = forge.one(f.assertion, "saml:Subject/saml:NameID")
    encrypted = etree.Element(f"{{{SAML}}}EncryptedID")
    data = etree.SubElement(encrypted, f"{{{forge.XENC}}}EncryptedData")
    cipher = etree.SubElement(data, f"{{{forge.XENC}}}CipherData")
    etree.SubElement(cipher, f"{{{forge.XENC}}}CipherValue").text = "AAAA"
    name_id.addprevious(encrypted)
    name_id.getparent().remove(name_id)


def no_response_id(f: Forgery) -> None:
    """C16: the Response has no ID."""
    f.root.attrib.pop("ID")


def no_assertion_id(f: Forgery) -> None:
    """C16: the Assertion has no ID (its signature can then reference nothing)."""
    f.resign()
    f.assertion.attrib.pop("ID")


def saml_version_1_1(f: Forgery) -> None:
    """C16: Version 1.1."""
    f.root.set("Version", "1.1")


def duplicate_attribute(f: Forgery) -> None:
    """C17: one Attribute Name twice: its values are merged."""
    attribute = f.assertion.xpath(".//saml:Attribute", namespaces=NS)[0]
    attribute.addnext(copy.deepcopy(attribute))


# -- encryption (C14) ---------------------------------------------------------------------------


def encrypted_inner_unsigned(f: Forgery) -> None:
    """C14b: the assertion inside is not signed, nor is the Response."""
    forge.strip_signatures(f.root)


def encrypted_for_another_key(f: Forgery) -> None:
    """C14d: encrypted for a key that is not the SP's (an attacker's)."""
    forge.encrypt_assertion(f.root, f.attacker.cert_pem)


def encrypted_with_rsa_1_5(f: Forgery) -> None:
    """C14c: RSA PKCS#1 v1.5 key transport (the Bleichenbacher oracle)."""
    forge.encrypt_assertion(f.root, f.sp.cert_pem, key_transport="rsa-1_5")


def encrypted_with_aes_gcm(f: Forgery) -> None:
    """C14 control: AES-256-GCM with RSA-OAEP is accepted."""
    forge.encrypt_assertion(f.root, f.sp.cert_pem, cipher="aes256-gcm")


def garbage_ciphertext(f: Forgery) -> None:
    """C14e: the ciphertext replaced by random bytes."""
    forge.encrypt_assertion(f.root, f.sp.cert_pem)
    forge.cipher_value(f.root).text = base64.b64encode(b"\x5a" * 512).decode()


def flipped_ciphertext_byte(f: Forgery) -> None:
    """C14e: one byte of the (CBC) ciphertext flipped: a padding-oracle probe."""
    forge.encrypt_assertion(f.root, f.sp.cert_pem)
    node = forge.cipher_value(f.root)
    raw = bytearray(base64.b64decode(node.text))
    raw[-20] ^= 0x01
    node.text = base64.b64encode(bytes(raw)).decode()


def truncated_ciphertext(f: Forgery) -> None:
    forge.encrypt_assertion(f.root, f.sp.cert_pem)
    node = forge.cipher_value(f.root)
    node.text = base64.b64encode(base64.b64decode(node.text)[:-16]).decode()


def encrypted_inner_resigned_by_attacker(f: Forgery) -> None:
    """The decrypted assertion is signed by the attacker (anyone can encrypt to the SP)."""
    set_name_id_of(f.assertion, VICTIM)
    f.resign(f.attacker)


def encrypted_inner_sha1(f: Forgery) -> None:
    """SHA-1 inside the encrypted assertion: checked after decryption."""
    f.resign(algorithm="sha1")


def encrypted_inner_wrong_reference(f: Forgery) -> None:
    """A genuine inner signature over the whole document (URI=""): seen after decryption."""
    f.resign_with(uri="")


# -- the table -----------------------------------------------------------------------------

SIG = "signature_required"
BAD = "invalid_signature"
ALG = "disallowed_algorithm"
ELEMENT = "invalid_signed_element"
DUP = "duplicate_id"
COUNT = "wrong_number_of_assertions"
DTD = refused("dtd_forbidden", 400)
MALFORMED = refused("malformed", 400)

# Expected codes are the first check that refuses; "pysaml2" marks the few where
# pysaml2's own check runs before ours (the outcome is a refusal all the same).
# fmt: off
CASES = [
    # S10-S15: signatures stripped, edited, re-signed, other keys
    Case("S10-strip-every-signature", ALL, strip_signatures, refused(SIG)),
    Case("S11-only-response-signed", ("assertion", "both"), signed_response_unsigned_assertion,
         refused(SIG)),
    Case("S12-only-assertion-signed", SIGNED_RESPONSE, signed_assertion_unsigned_response,
         refused(SIG)),
    Case("S13-edited-not-resigned", ALL, edit_without_resigning, refused(BAD)),
    Case("S13-resigned-by-attacker-cert-in-keyinfo", ALL, resign_with_attacker_key, refused(BAD)),
    Case("S14-resigned-by-attacker-raw-keyvalue", ALL, resign_with_attacker_raw_key, refused(BAD)),
    Case("S14-hmac-with-chosen-key", PLAIN, hmac_with_chosen_key, refused(ALG)),
    # S25-S28: algorithms, transforms, references
    Case("S27-rsa-sha1", PLAIN, sha1_signature, refused(ALG)),
    Case("S27-sha1-digest", PLAIN, sha1_digest_only, refused(ALG)),
    Case("S27-rsa-md5", PLAIN, rsa_md5_signature, refused(ALG)),
    Case("S27-control-rsa-sha512", ALL, sha512_signature, Login()),
    Case("S25-xslt-transform", PLAIN, xslt_transform, refused(ALG)),
    Case("S25-xslt-as-third-transform", PLAIN, xslt_as_third_transform, refused(ALG)),
    Case("S25-xpath-transform", PLAIN, xpath_transform, refused(ALG)),
    Case("S25-three-transforms", PLAIN, three_transforms, refused(ALG)),
    Case("S25-inclusive-c14n-method", PLAIN, inclusive_c14n_method, refused(ALG)),
    Case("S25-c14n-with-comments-method", PLAIN, c14n_with_comments_method, refused(ALG)),
    Case("S25-inclusive-c14n-transform", PLAIN, inclusive_c14n_transform, refused(ALG)),
    Case("S26-remote-reference-uri", PLAIN, remote_reference_uri, refused(ELEMENT)),
    Case("S26-file-reference-uri", PLAIN, file_reference_uri, refused(ELEMENT)),
    Case("S26-remote-retrieval-method", PLAIN, remote_retrieval_method, refused(ALG)),
    Case("S28-empty-reference-uri", PLAIN, empty_reference_uri, refused(ELEMENT)),
    Case("S28-reference-to-another-element", PLAIN, reference_to_another_element,
         refused(ELEMENT)),
    Case("S28-signature-on-subject", ("assertion",), signature_on_subject, refused(ELEMENT)),
    Case("S21-stray-digest-value", PLAIN, stray_digest_value, refused(ELEMENT)),
    Case("S21-two-signed-info", PLAIN, two_signed_infos, refused(ELEMENT)),
    Case("S21-two-references", PLAIN, two_references, refused(ELEMENT)),
    # S1-S9, S17, S18, S22, S23: wrapping and smuggling
    Case("S1-xsw1", SIGNED_RESPONSE, xsw1, refused(DUP)),
    Case("S2-xsw2", SIGNED_RESPONSE, xsw2, refused(DUP)),
    Case("S3-xsw3", ("assertion", "both"), xsw3, refused(COUNT)),
    Case("S4-xsw4", ("assertion", "both"), xsw4, refused(COUNT)),
    Case("S5-xsw5", ("assertion", "both"), xsw5, refused(COUNT)),
    Case("S6-xsw6", ("assertion", "both"), xsw6, refused(COUNT)),
    Case("S7-xsw7", ("assertion", "both"), xsw7, refused(DUP)),
    Case("S8-xsw8-ds-object", PLAIN, signature_object, refused(DUP)),
    Case("S8-ds-object", PLAIN, harmless_signature_object, refused(ELEMENT)),
    Case("S9-duplicate-id-marker", PLAIN, duplicate_id_marker, refused(DUP)),
    Case("S17-two-signed-assertions", PLAIN, second_signed_assertion, refused(COUNT)),
    Case("S17-signed-plus-unsigned-assertion", PLAIN, signed_plus_unsigned_assertion,
         refused(COUNT)),
    Case("S17-assertion-plus-encrypted-assertion", ("encrypted",),
         assertion_plus_encrypted_assertion, refused(COUNT)),
    Case("S17-two-encrypted-assertions", ("encrypted",), two_encrypted_assertions, refused(COUNT)),
    Case("S18-signed-assertion-in-advice", SIGNED_ASSERTION, assertion_in_advice, Login()),
    Case("S22-evil-assertion-in-extensions", PLAIN, evil_assertion_in_extensions, refused(COUNT)),
    Case("S23-foreign-namespace-lookalike", ("assertion", "encrypted"),
         foreign_namespace_lookalike, Login()),
    Case("S23-foreign-namespace-same-id", PLAIN, foreign_namespace_same_id, refused(DUP)),
    # S19, S20, S23, P1-P10: parsers
    Case("S19-comment-in-name-id", ALL, comment_in_name_id, Login("user@evil.test.victim.test")),
    Case("S20-doctype-comment-cdata-differential", PLAIN, doctype_comment_differential, DTD),
    Case("S23-internal-entity", ("assertion",), internal_entity, DTD),
    Case("P1-xxe-file", ("assertion",), xxe_file, DTD),
    Case("P1-xxe-parameter-entity-canary", ("assertion",), xxe_parameter_entity, DTD),
    Case("P1-doctype-public-url-canary", ("assertion",), doctype_public_url, DTD),
    Case("P2-billion-laughs", ("assertion",), billion_laughs, DTD),
    Case("P2-quadratic-blowup", ("assertion",), quadratic_blowup, DTD),
    Case("P5-deflated-post", ("assertion",), deflated_response, MALFORMED),
    Case("P5-deflate-bomb-post", ("assertion",), deflate_bomb, MALFORMED),
    Case("P7-not-xml", ("assertion",), not_xml, MALFORMED),
    Case("P7-authn-request-root", ("assertion",), authn_request_root, MALFORMED),
    Case("P7-logout-response-root", ("assertion",), logout_response_root, MALFORMED),
    Case("P7-trailing-second-document", ("assertion",), trailing_second_document, MALFORMED),
    Case("P8-utf16", ("assertion",), utf16_document, MALFORMED),
    Case("P8-utf7-declaration", ("assertion",), utf7_declaration, MALFORMED),
    Case("P8-latin1-declaration", ("assertion",), latin1_declaration, MALFORMED),
    Case("P8-invalid-utf8", ("assertion",), invalid_utf8, MALFORMED),
    Case("P8-nul-byte", ("assertion",), nul_byte, MALFORMED),
    Case("P8-control-utf8-bom", ("assertion",), utf8_bom, Login()),
    Case("P9-deep-nesting", ("assertion",), deep_nesting, MALFORMED),
    # Refused by the depth limit in saml.sp.parse_xml, the same way on every backend.
    Case("P9-deep-nesting-in-extensions", PLAIN, deep_nesting_in_extensions, MALFORMED),
    Case("P9-deep-nesting-in-signed-attribute", ("assertion",), deep_nesting_in_attribute,
         MALFORMED),
    Case("P10-xinclude-canary", PLAIN, xinclude_in_extensions, Login()),
    Case("P10-schema-location-canary", ("assertion",), schema_location, Login()),
    Case("P10-processing-instruction", ("assertion",), processing_instruction, Login()),
    # C1-C17 on every baseline (test_acs_checks.py has them on `assertion` only)
    Case("C1-issuer-not-entity-format", ALL, resigned_after(issuer_not_entity_format),
         refused("wrong_issuer")),
    Case("C1-wrong-response-issuer", ALL, resigned_after(wrong_response_issuer),
         refused("wrong_issuer")),
    Case("C1-wrong-assertion-issuer", ALL, resigned_after(wrong_assertion_issuer),
         {**dict.fromkeys(PLAIN, refused("wrong_issuer")),
          # pysaml2: hidden until decrypted, then it finds no key for that issuer
          "encrypted": refused("untrusted_key")}),
    Case("C2-wrong-audience", ALL, resigned_after(wrong_audience), refused("wrong_audience")),
    Case("C3-wrong-destination", ALL, resigned_after(wrong_destination),
         refused("wrong_destination")),
    Case("C4-wrong-recipient", ALL, resigned_after(wrong_recipient), refused("wrong_recipient")),
    Case("C7-inverted-time-window", ALL, resigned_after(inverted_time_window), refused("expired")),
    Case("C9-no-confirmation-method", ("assertion",), resigned_after(no_confirmation_method),
         refused("invalid_response")),
    Case("C10-session-not-on-or-after-past", ALL, resigned_after(session_not_on_or_after_past),
         refused("expired")),
    Case("C11-response-issued-long-ago", ALL, resigned_after(response_issued_long_ago),
         refused("expired")),
    Case("C11-response-issued-in-the-future", ALL, resigned_after(response_issued_in_the_future),
         refused("not_yet_valid")),
    Case("C11-assertion-issued-in-the-future", ALL,
         resigned_after(assertion_issued_in_the_future), refused("not_yet_valid")),
    Case("C13-no-status", PLAIN, resigned_after(no_status), refused("status_not_success")),
    Case("C13-success-with-failed-sub-status", PLAIN,
         resigned_after(success_with_failed_sub_status), refused("status_not_success")),
    Case("C15-sp-name-qualifier-of-another-sp", ALL,
         resigned_after(sp_name_qualifier_of_another_sp), refused("wrong_audience")),
    Case("C15-unreadable-encrypted-id", ("assertion",), resigned_after(garbage_encrypted_id),
         refused("decryption_failed")),
    Case("C16-no-response-id", ("assertion",), resigned_after(no_response_id),
         refused("invalid_response")),
    Case("C16-no-assertion-id", ("assertion",), no_assertion_id, refused(ELEMENT)),
    Case("C16-version-1.1", PLAIN, resigned_after(saml_version_1_1), refused("invalid_response")),
    Case("C17-duplicate-attribute", ALL, resigned_after(duplicate_attribute), Login()),
    # C14: encryption
    Case("C14b-inner-unsigned-response-unsigned", ("encrypted",), encrypted_inner_unsigned,
         refused(SIG)),
    Case("C14c-rsa-1_5-key-transport", ("encrypted",), encrypted_with_rsa_1_5, refused(ALG)),
    Case("C14d-encrypted-for-another-key", ("encrypted",), encrypted_for_another_key,
         refused("decryption_failed")),
    Case("C14e-garbage-ciphertext", ("encrypted",), garbage_ciphertext,
         refused("decryption_failed")),
    Case("C14e-flipped-ciphertext-byte", ("encrypted",), flipped_ciphertext_byte,
         refused("decryption_failed")),
    Case("C14e-truncated-ciphertext", ("encrypted",), truncated_ciphertext,
         refused("decryption_failed")),
    Case("C14-inner-resigned-by-attacker", ("encrypted",), encrypted_inner_resigned_by_attacker,
         refused(BAD)),
    Case("C14-inner-rsa-sha1", ("encrypted",), encrypted_inner_sha1, refused(ALG)),
    Case("C14-inner-empty-reference-uri", ("encrypted",), encrypted_inner_wrong_reference,
         refused(BAD)),  # pysaml2: its own URI check runs before ours (after decryption)
    Case("C14-control-aes256-gcm", ("encrypted",), encrypted_with_aes_gcm, Login()),
]
# fmt: on

PARAMS = [
    pytest.param(case, baseline, id=f"{case.name}[{baseline}]")
    for case in CASES
    for baseline in case.baselines
]


# -- running a case ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baselines(
    make_acs: Callable[..., Acs], idp: DevIdP, sp_keys: KeyPair
) -> dict[str, tuple[str, etree._Element]]:
    """Per baseline: the genuine IdP response (Base64) and its tree (decrypted if encrypted).

    Minted once: each case posts it to a fresh engine (a fresh replay cache).
    """
    minted = {}
    for baseline in BASELINES:
        acs = make_acs(**settings_for_baseline(baseline, sp_keys))
        encoded = acs.mint_encoded(**mint_options(baseline))
        root = forge.decode(encoded)
        if baseline == "encrypted":
            root = forge.decrypt_assertion(root, sp_keys.key_pem)
        minted[baseline] = (encoded, root)
    return minted


async def check(acs: Acs, reply: Any, expected: Expected) -> None:
    if isinstance(expected, Login):
        await acs.assert_logged_in(reply, expected.name_id)
    else:
        status, code = expected
        await acs.assert_refused(reply, code, status)


@pytest.mark.parametrize("baseline", BASELINES)
async def test_control_genuine_baseline_logs_in(baseline, baselines, make_acs, sp_keys):
    acs = make_acs(**settings_for_baseline(baseline, sp_keys))
    await acs.assert_logged_in(await acs.post_encoded(baselines[baseline][0]))


@pytest.mark.parametrize("baseline", BASELINES)
async def test_control_forged_baseline_logs_in(
    baseline, baselines, make_acs, sp_keys, idp_keys, attacker_keys, canary
):
    """Decoding, re-signing and re-encrypting alone change nothing: every refusal is earned."""
    acs = make_acs(**settings_for_baseline(baseline, sp_keys))
    f = Forgery(
        baseline, copy.deepcopy(baselines[baseline][1]), idp_keys, attacker_keys, sp_keys, canary
    )
    f.resign()
    await acs.assert_logged_in(await acs.post_encoded(f.finish()))


@pytest.mark.parametrize(("case", "baseline"), PARAMS)
async def test_attack(
    case, baseline, baselines, make_acs, sp_keys, idp_keys, attacker_keys, canary
):
    acs = make_acs(**settings_for_baseline(baseline, sp_keys))
    f = Forgery(
        baseline, copy.deepcopy(baselines[baseline][1]), idp_keys, attacker_keys, sp_keys, canary
    )
    connections = canary.connections
    raw = case.mutate(f)
    encoded = base64.b64encode(raw).decode() if raw is not None else f.finish()
    reply = await acs.post_encoded(encoded)
    await check(acs, reply, case.expectation(baseline))
    assert canary.connections == connections, "the SP fetched something from the network"


# -- rows that need more than a status and a code -------------------------------------------------


async def test_identity_never_comes_from_advice(
    baselines, make_acs, sp_keys, idp_keys, attacker_keys, canary
):
    """S18: an IdP-signed assertion for another user inside Advice changes nothing."""
    acs = make_acs()
    f = Forgery(
        "assertion",
        copy.deepcopy(baselines["assertion"][1]),
        idp_keys,
        attacker_keys,
        sp_keys,
        canary,
    )
    assertion_in_advice(f)
    reply = await acs.post_encoded(f.finish())
    await acs.assert_logged_in(reply)
    user = (await acs.last_browser.get(RELAY)).user
    assert user.name_id == BSIMON and user.roles == ("Admin",)
    assert "superadmins" not in str(user.attributes)


async def test_genuine_response_padded_over_the_limit_is_413(baselines, make_acs):
    """P3: the size limit holds before Base64 decoding, whatever the content."""
    acs = make_acs()
    limit = acs.engine.settings.security.max_request_bytes
    root = copy.deepcopy(baselines["assertion"][1])
    issuer = root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    issuer.tail = (issuer.tail or "") + " " * limit  # whatever prefix the IdP chose
    padded = etree.tostring(root)
    assert len(padded) > limit
    reply = await acs.post_encoded(base64.b64encode(padded).decode())
    await acs.assert_refused(reply, "too_large", 413)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:100] + "*" + v[100:],  # a character outside Base64
        lambda v: v.rstrip("=")[:-1],  # padding gone
        lambda v: v.replace("+", "-").replace("/", "_"),  # the URL-safe alphabet
        lambda v: "",
        lambda v: "====",
    ],
    ids=["bad-character", "no-padding", "url-safe-alphabet", "empty", "only-padding"],
)
async def test_malformed_base64_is_400(baselines, make_acs, mangle):
    """P6: strict Base64."""
    acs = make_acs()
    encoded = baselines["assertion"][0]
    if "+" not in encoded and "/" not in encoded:
        encoded = encoded + "+/"  # make sure the alphabet case changes something
    await acs.assert_refused(await acs.post_encoded(mangle(encoded)), "malformed", 400)


async def test_base64_wrapped_at_76_columns_is_accepted(baselines, make_acs):
    """P6 control: line breaks in the Base64, as real IdPs send them, are fine."""
    acs = make_acs()
    encoded = baselines["assertion"][0]
    wrapped = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    await acs.assert_logged_in(await acs.post_encoded(wrapped))
