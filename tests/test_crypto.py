"""The in-process crypto backend (saml_middleware/saml/crypto.py), item by item of its checklist.

Responses come from a development IdP whose key the tests hold; each attack
changes one thing (tests/forge.py) and, where it matters, re-signs with the
trusted key so that the one change is all that can be refused. Most tests call
the backend directly (`XmlSecBackend.verify`), so the refusal is provably the
backend's and not one of saml/sp.py's earlier checks; the pysaml2-level tests
parse through a `Saml2Client` built by saml/sp.py with the backend installed.
"""

from __future__ import annotations

import base64
import copy
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import xmlsec
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.sigver import DecryptError, MissingKey, SignatureError
from saml2.xml.schema import XMLSchemaError
from saml2.xml.schema import validate as xmlschema_validate

from saml_middleware.config import load_settings
from saml_middleware.devidp import DevIdP, DevIdPError
from saml_middleware.keys import generate_key_pair
from saml_middleware.metadata import IdPMetadata
from saml_middleware.saml import algorithms, crypto
from saml_middleware.saml.crypto import (
    AES_CBC,
    CryptoBackendError,
    InProcessSecurityContext,
    XmlSecBackend,
    install,
    self_test,
    validate_schema,
)
from saml_middleware.saml.sp import ServiceProvider, inspect_response
from tests import forge
from tests.forge import DS, SAML, SAMLP, KeyPair
from tests.helpers import settings_for

ASSERTION = f"{SAML}:Assertion"
RESPONSE = f"{SAMLP}:Response"
XENC = "http://www.w3.org/2001/04/xmlenc#"
C = xmlsec.constants


# -- fixtures ---------------------------------------------------------------------------


def make_sp(idp: DevIdP, **overrides: Any) -> ServiceProvider:
    """saml/sp.py's ServiceProvider (its Saml2Client), trusted by `idp`, backend installed."""
    settings = load_settings(settings_for(idp, **overrides))
    assert settings.idp is not None
    sp = ServiceProvider(settings, IdPMetadata(settings.idp).load())
    idp.add_service_provider(sp.metadata_xml())
    install(sp.client, reject_sha1=settings.security.reject_sha1)
    return sp


@pytest.fixture(scope="module")
def sp(idp: DevIdP, sp_keys: KeyPair) -> ServiceProvider:
    return make_sp(idp, sp={"key_pem": sp_keys.key_pem, "cert_pem": sp_keys.cert_pem})


@pytest.fixture(scope="module")
def backend() -> XmlSecBackend:
    return XmlSecBackend(reject_sha1=True)


@pytest.fixture
def mint(idp: DevIdP, sp: ServiceProvider) -> Callable[..., etree._Element]:
    """A fresh, genuine Response for bsimon (assertion signed by the IdP), decoded."""

    def make(**kwargs: Any) -> etree._Element:
        return forge.decode(
            idp.create_response(
                "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to=None, **kwargs
            )
        )

    return make


def xml(root: etree._Element) -> bytes:
    return etree.tostring(root)


def assertion_id(root: etree._Element) -> str:
    return str(forge.assertion(root).get("ID"))


def pysaml2_parse(sp: ServiceProvider, data: bytes) -> Any:
    """pysaml2's own parse (no saml/sp.py pre-checks): what the backend alone lets through."""
    encoded = base64.b64encode(data).decode("ascii")
    return sp.client.parse_authn_request_response(encoded, BINDING_HTTP_POST)


def sign(
    element: etree._Element,
    keys: KeyPair,
    *,
    transforms: tuple[Any, ...] = (C.TransformEnveloped, C.TransformExclC14N),
    digest: Any = C.TransformSha256,
    method: Any = C.TransformRsaSha256,
    c14n: Any = C.TransformExclC14N,
) -> etree._Element:
    """forge.sign with every algorithm chosen by the test (XSLT and XPath get a body)."""
    for old in element.findall(f"{{{DS}}}Signature"):
        element.remove(old)
    signature = xmlsec.template.create(element, c14n, method, ns="ds")
    issuer = element.find(f"{{{SAML}}}Issuer")
    if issuer is not None:
        issuer.addnext(signature)
    else:
        element.insert(0, signature)
    reference = xmlsec.template.add_reference(signature, digest, uri=f"#{element.get('ID')}")
    for transform in transforms:
        node = xmlsec.template.add_transform(reference, transform)
        if transform == C.TransformXslt:
            node.append(
                etree.fromstring(
                    b'<xsl:stylesheet version="1.0" '
                    b'xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
                    b'<xsl:template match="/">constant</xsl:template></xsl:stylesheet>'
                )
            )
        elif transform == C.TransformXPath:
            etree.SubElement(node, f"{{{DS}}}XPath").text = "true()"
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    ctx = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(keys.key_pem.encode(), C.KeyDataFormatPem)
    key.load_cert_from_memory(keys.cert_pem.encode(), C.KeyDataFormatCertPem)
    ctx.key = key
    ctx.register_id(element, "ID")
    ctx.sign(signature)
    return signature


def permissive_verify(data: bytes, node_id: str, cert_pem: str) -> bool:
    """A plain xmlsec verify with everything enabled: proves a forged document is genuine."""
    root = etree.fromstring(data)
    target = root.xpath("//*[@ID=$id]", id=node_id)[0]
    ctx = xmlsec.SignatureContext()
    ctx.register_id(target, "ID")
    ctx.key = xmlsec.Key.from_memory(cert_pem.encode(), C.KeyDataFormatCertPem)
    ctx.verify(target.find(f"{{{DS}}}Signature"))
    return True


# -- the genuine path ------------------------------------------------------------------------


def test_backend_verifies_a_dev_idp_response(backend, mint, idp_keys):
    root = mint()
    assert backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root)) is True


def test_installed_client_parses_a_dev_idp_response(sp, mint):
    assert isinstance(sp.client.sec, InProcessSecurityContext)
    result = pysaml2_parse(sp, xml(mint()))
    assert result.assertion is not None
    assert result.name_id.text == "B.Simon@contoso.com"


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion", "assertion+response"])
def test_protocol_verifies_through_the_backend(sp, mint, sign_response):
    root = mint(sign_response=sign_response)
    login = sp.verify_response(inspect_response(xml(root), reject_sha1=True), outstanding_id=None)
    assert login.name_id == "B.Simon@contoso.com"
    assert login.attributes  # the Entra-shaped claims came through


def test_validate_signature_reads_the_certificate_file(backend, mint, idp_keys, tmp_path):
    """pysaml2's own interface (a PEM path) works too; only the hot path avoids files."""
    cert_file = tmp_path / "idp.pem"
    cert_file.write_text(idp_keys.cert_pem)
    root = mint()
    assert backend.validate_signature(
        xml(root), str(cert_file), "pem", ASSERTION, assertion_id(root)
    )
    with pytest.raises(SignatureError):
        backend.validate_signature(xml(root), str(cert_file), "der", ASSERTION, assertion_id(root))


def test_verification_runs_no_program_and_writes_no_file(sp, mint, monkeypatch):
    """No xmlsec1 process, no temporary file: the metadata certificate stays in memory."""
    import tempfile

    import saml2.sigver

    root = mint(sign_response=True)  # the dev IdP itself signs with xmlsec1: before patching

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a subprocess or temporary file on the verification path")

    for name in ("Popen", "make_temp", "NamedTemporaryFile"):
        monkeypatch.setattr(saml2.sigver, name, forbidden)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", forbidden)
    monkeypatch.setattr(tempfile, "mkstemp", forbidden)
    result = pysaml2_parse(sp, xml(root))
    assert result.name_id.text == "B.Simon@contoso.com"


# -- parsing: no DOCTYPE, UTF-8 only, bounded ---------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        b"<!DOCTYPE samlp:Response>",
        b'<!DOCTYPE r [<!ENTITY e "x">]>',
        b'<!DOCTYPE r SYSTEM "http://evil.test/x.dtd">',
    ],
    ids=["doctype", "internal-entity", "external-dtd"],
)
def test_doctype_is_refused(backend, mint, idp_keys, prefix):
    root = mint()
    data = prefix + xml(root)
    assert permissive_verify(data, assertion_id(root), idp_keys.cert_pem)  # genuine otherwise
    with pytest.raises(SignatureError, match="DTD"):
        backend.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_doctype_is_refused_inside_pysaml2(sp, mint):
    with pytest.raises(SignatureError):  # pysaml2's own parser lets a bare DOCTYPE through
        pysaml2_parse(sp, b"<!DOCTYPE samlp:Response>" + xml(mint()))


def test_non_utf8_declaration_is_refused(backend, mint, idp_keys):
    root = mint()
    data = b'<?xml version="1.0" encoding="ISO-8859-1"?>' + xml(root)
    with pytest.raises(SignatureError, match="UTF-8"):
        backend.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_oversized_input_is_refused_before_parsing(mint, idp_keys):
    small = XmlSecBackend(reject_sha1=True, max_bytes=1024)
    root = mint()
    with pytest.raises(SignatureError, match="too large"):
        small.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_two_roots_are_refused(backend, mint, idp_keys):
    root = mint()
    with pytest.raises(SignatureError, match="well-formed"):
        backend.verify(xml(root) + xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


# -- the target: Clark name AND ID, the ID unique in the whole document ------------------


def _extensions_marker(root: etree._Element, attribute: str) -> None:
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    marker = etree.SubElement(extensions, "{urn:example:forge}Marker")
    marker.set(attribute, assertion_id(root))
    forge.one(root, "samlp:Status").addprevious(extensions)


@pytest.mark.parametrize(
    "duplicate",
    [
        forge.add_element_with_assertion_id,
        forge.set_response_id_to_assertion_id,
        lambda root: _extensions_marker(root, "Id"),
        lambda root: _extensions_marker(root, "id"),
        lambda root: _extensions_marker(root, "{http://www.w3.org/XML/1998/namespace}id"),
        lambda root: _extensions_marker(root, "{urn:example:forge}ID"),
    ],
    ids=["extensions-ID", "response-ID", "Id", "id", "xml:id", "namespaced-ID"],
)
def test_duplicated_id_is_refused(backend, mint, idp_keys, duplicate):
    root = mint()
    duplicate(root)
    forge.resign(root, idp_keys)  # the assertion's signature is valid again
    data = xml(root)
    with pytest.raises(SignatureError, match="not unique"):
        backend.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_duplicated_id_is_refused_inside_pysaml2(sp, mint, idp_keys):
    root = mint()
    forge.add_element_with_assertion_id(root)
    forge.resign(root, idp_keys)
    with pytest.raises(SignatureError):
        pysaml2_parse(sp, xml(root))


def test_target_must_have_the_expected_name(backend, mint, idp_keys):
    root = mint()
    with pytest.raises(SignatureError, match="expected element"):
        backend.verify(xml(root), idp_keys.cert_pem, RESPONSE, assertion_id(root))


@pytest.mark.parametrize("node_id", [None, "", "id-nowhere"])
def test_target_must_exist(backend, mint, idp_keys, node_id):
    root = mint()
    with pytest.raises(SignatureError):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, node_id)


def test_wrapped_assertion_with_the_signed_id_is_refused(backend, mint, idp_keys):
    """XSW: an evil assertion takes the signed one's ID; the original hides in Extensions."""
    root = mint()
    original = forge.assertion(root)
    evil = copy.deepcopy(original)
    forge.one(evil, "saml:Subject/saml:NameID").text = "admin@contoso.com"
    for signature in evil.findall(f"{{{DS}}}Signature"):
        evil.remove(signature)
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    root.replace(original, evil)
    extensions.append(original)
    forge.one(root, "samlp:Status").addprevious(extensions)
    with pytest.raises(SignatureError, match="not unique"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


# -- the Signature: a direct child, exactly one, profile re-checked -------------------------


def test_signature_moved_below_the_target_is_refused(backend, mint, idp_keys):
    root = mint()
    target = forge.assertion(root)
    signature = target.find(f"{{{DS}}}Signature")
    target.remove(signature)
    forge.one(target, "saml:Subject").append(signature)  # still inside what it signs
    with pytest.raises(SignatureError, match="0 Signature children"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_signature_moved_to_the_response_is_refused(backend, mint, idp_keys):
    root = mint()
    signature = forge.assertion(root).find(f"{{{DS}}}Signature")
    forge.assertion(root).remove(signature)
    forge.one(root, "saml:Issuer").addnext(signature)  # references the assertion from outside
    with pytest.raises(SignatureError, match="0 Signature children"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_second_signature_on_the_target_is_refused(backend, mint, idp_keys):
    root = mint()
    target = forge.assertion(root)
    target.append(copy.deepcopy(target.find(f"{{{DS}}}Signature")))
    with pytest.raises(SignatureError, match="2 Signature children"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def _second_reference(signature: etree._Element) -> None:
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    signed_info.append(copy.deepcopy(signed_info.find(f"{{{DS}}}Reference")))


def _object(signature: etree._Element) -> None:
    etree.SubElement(signature, f"{{{DS}}}Object").text = "unsigned data"


def _reference_uri(value: str | None) -> Callable[[etree._Element], None]:
    def change(signature: etree._Element) -> None:
        reference = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        if value is None:
            del reference.attrib["URI"]
        else:
            reference.set("URI", value)

    return change


@pytest.mark.parametrize(
    "change",
    [_second_reference, _object, _reference_uri(""), _reference_uri(None), _reference_uri("#x")],
    ids=["two-references", "ds-object", "empty-uri", "no-uri", "other-uri"],
)
def test_signature_profile_is_rechecked_on_the_raw_document(backend, mint, idp_keys, change):
    root = mint()
    change(forge.assertion(root).find(f"{{{DS}}}Signature"))
    with pytest.raises(SignatureError, match="refused"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


# -- only the pinned metadata certificate is a key ----------------------------------------


def test_tampered_assertion_is_refused(backend, mint, idp_keys):
    root = mint()
    forge.set_name_id(root, "admin@contoso.com")  # no re-signing
    with pytest.raises(SignatureError, match="not valid"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_assertion_resigned_by_an_attacker_is_refused(backend, sp, mint, idp_keys, attacker_keys):
    root = mint()
    forge.set_name_id(root, "admin@contoso.com")
    forge.resign(root, attacker_keys)  # the attacker's certificate in KeyInfo
    assert permissive_verify(xml(root), assertion_id(root), attacker_keys.cert_pem)
    with pytest.raises(SignatureError, match="not valid"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))
    with pytest.raises(SignatureError):
        pysaml2_parse(sp, xml(root))


def test_attacker_signing_with_the_trusted_cert_in_key_info_is_refused(
    backend, mint, idp_keys, attacker_keys
):
    """KeyInfo names the trusted certificate, the key that signed is the attacker's."""
    root = mint()
    forge.resign(root, attacker_keys)
    certificate = forge.one(forge.assertion(root), ".//ds:X509Certificate")
    certificate.text = "".join(idp_keys.cert_pem.strip().splitlines()[1:-1])
    with pytest.raises(SignatureError, match="not valid"):
        backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_key_info_is_ignored(backend, mint, idp_keys, attacker_keys):
    """A genuine signature whose KeyInfo names the attacker still verifies: KeyInfo is unread."""
    root = mint()
    certificate = forge.one(forge.assertion(root), ".//ds:X509Certificate")
    certificate.text = "".join(attacker_keys.cert_pem.strip().splitlines()[1:-1])
    assert backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_another_certificate_does_not_verify(backend, mint, attacker_keys):
    root = mint()
    with pytest.raises(SignatureError, match="not valid"):
        backend.verify(xml(root), attacker_keys.cert_pem, ASSERTION, assertion_id(root))


def test_garbage_certificate_is_a_refusal_not_a_crash(backend, mint):
    root = mint()
    with pytest.raises(SignatureError):
        backend.verify(xml(root), "not a certificate", ASSERTION, assertion_id(root))


def test_unknown_issuer_has_no_key(sp, mint, idp_keys):
    """Never a KeyInfo fallback: an issuer without metadata certificates is MissingKey."""
    root = mint()
    forge.set_assertion_issuer(root, "https://evil.test/idp")
    forge.set_response_issuer(root, "https://evil.test/idp")
    forge.resign(root, idp_keys)
    with pytest.raises(MissingKey):
        pysaml2_parse(sp, xml(root))


# -- algorithm allow-lists, python-side AND inside xmlsec -----------------------------------

REFUSED_ALGORITHMS = {
    "xslt-transform": {"transforms": (C.TransformEnveloped, C.TransformXslt)},
    "xpath-transform": {"transforms": (C.TransformEnveloped, C.TransformXPath)},
    "inclusive-c14n-transform": {"transforms": (C.TransformEnveloped, C.TransformInclC14N)},
    "sha1-digest": {"digest": C.TransformSha1},
    "rsa-sha1": {"method": C.TransformRsaSha1},
    "sha224-digest": {"digest": C.TransformSha224},
    "rsa-sha224": {"method": C.TransformRsaSha224},
    "inclusive-c14n-method": {"c14n": C.TransformInclC14N},
}


@pytest.mark.parametrize("algorithms", REFUSED_ALGORITHMS.values(), ids=REFUSED_ALGORITHMS.keys())
def test_disallowed_algorithm_is_refused_before_xmlsec(backend, mint, idp_keys, algorithms):
    root = mint()
    sign(forge.assertion(root), idp_keys, **algorithms)
    data = xml(root)
    assert permissive_verify(data, assertion_id(root), idp_keys.cert_pem)  # a genuine signature
    with pytest.raises(SignatureError, match="not allowed"):
        backend.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


@pytest.mark.parametrize("algorithms", REFUSED_ALGORITHMS.values(), ids=REFUSED_ALGORITHMS.keys())
def test_disallowed_algorithm_is_refused_by_xmlsec_itself(mint, idp_keys, algorithms, monkeypatch):
    """With the python-side check switched off, xmlsec's own allow-lists still refuse."""
    unchecked = XmlSecBackend(reject_sha1=True)
    monkeypatch.setattr(unchecked.policy, "check_signature_shape", lambda *args: None)
    root = mint()
    sign(forge.assertion(root), idp_keys, **algorithms)
    data = xml(root)
    assert permissive_verify(data, assertion_id(root), idp_keys.cert_pem)
    with pytest.raises(SignatureError, match="not valid"):
        unchecked.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


@pytest.mark.parametrize(
    "algorithms",
    [
        {"digest": C.TransformSha384, "method": C.TransformRsaSha384},
        {"digest": C.TransformSha512, "method": C.TransformRsaSha512},
        {"transforms": (C.TransformEnveloped,)},
        {"transforms": (C.TransformEnveloped, C.TransformExclC14NWithComments)},
    ],
    ids=["sha384", "sha512", "enveloped-only", "exc-c14n-with-comments"],
)
def test_allowed_algorithms_pass_both_lists(mint, idp_keys, algorithms, monkeypatch):
    """Every allowed digest and transform is on xmlsec's lists too (not only python's)."""
    unchecked = XmlSecBackend(reject_sha1=True)
    monkeypatch.setattr(unchecked.policy, "check_signature_shape", lambda *args: None)
    checked = XmlSecBackend(reject_sha1=True)
    root = mint()
    sign(forge.assertion(root), idp_keys, **algorithms)
    for backend in (unchecked, checked):
        assert backend.verify(xml(root), idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_ecdsa_signature_verifies():
    keys = KeyPair(*generate_key_pair("ec signer", kind="ec"))
    cert_pem = keys.cert_pem
    element = etree.Element(f"{{{SAML}}}Assertion", ID="_ec", nsmap={"saml": SAML})
    etree.SubElement(element, f"{{{SAML}}}Issuer").text = "ec"
    sign(element, keys, method=C.TransformEcdsaSha256)
    assert XmlSecBackend().verify(etree.tostring(element), cert_pem, ASSERTION, "_ec")


def test_sha1_is_accepted_only_when_allowed(mint, idp_keys):
    root = mint()
    forge.resign(root, idp_keys, algorithm="sha1")
    data = xml(root)
    with pytest.raises(SignatureError):
        XmlSecBackend(reject_sha1=True).verify(
            data, idp_keys.cert_pem, ASSERTION, assertion_id(root)
        )
    lax = XmlSecBackend(reject_sha1=False)
    assert lax.verify(data, idp_keys.cert_pem, ASSERTION, assertion_id(root))


def test_sha1_is_refused_inside_pysaml2(idp, mint, idp_keys):
    strict = make_sp(idp, security={"reject_sha1": True})
    lax = make_sp(idp, security={"reject_sha1": False}, base_url="https://lax.example.test")
    root = mint()
    forge.resign(root, idp_keys, algorithm="sha1")
    with pytest.raises(SignatureError):
        pysaml2_parse(strict, xml(root))
    root.set("Destination", lax.acs_url)
    forge.one(root, ".//saml:SubjectConfirmationData").set("Recipient", lax.acs_url)
    forge.one(root, ".//saml:Audience").text = lax.settings.sp.entity_id
    forge.resign(root, idp_keys, algorithm="sha1")
    assert pysaml2_parse(lax, xml(root)).name_id.text == "B.Simon@contoso.com"


# -- a fresh context per call: threads do not disturb each other --------------------------


def test_concurrent_verifications_are_independent(backend, mint, idp_keys, attacker_keys):
    genuine = mint()
    forged = mint()
    forge.set_name_id(forged, "admin@contoso.com")
    resigned = mint()
    forge.resign(resigned, attacker_keys)
    cases = [(xml(r), assertion_id(r), ok) for r, ok in ((genuine, 1), (forged, 0), (resigned, 0))]
    errors: list[str] = []

    def work() -> None:
        for _ in range(30):
            for data, node_id, ok in cases:
                try:
                    got = backend.verify(data, idp_keys.cert_pem, ASSERTION, node_id)
                except SignatureError:
                    got = False
                if bool(got) != bool(ok):
                    errors.append(f"{node_id}: {got}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- schema validation: libxml2 agrees with pysaml2's xmlschema -----------------------------------


def _schema_cases() -> Iterator[tuple[str, Callable[[etree._Element], None]]]:
    def drop(path: str) -> Callable[[etree._Element], None]:
        def change(a: etree._Element) -> None:
            node = forge.one(a, path)
            node.getparent().remove(node)

        return change

    def set_attr(path: str, name: str, value: str) -> Callable[[etree._Element], None]:
        return lambda a: forge.one(a, path).set(name, value)

    def swap_issuer_and_subject(a: etree._Element) -> None:
        issuer = forge.one(a, "saml:Issuer")
        a.remove(issuer)
        forge.one(a, "saml:Subject").addnext(issuer)

    def add(path: str, tag: str, text: str = "x") -> Callable[[etree._Element], None]:
        def change(a: etree._Element) -> None:
            etree.SubElement(forge.one(a, path), tag).text = text

        return change

    yield "valid", lambda a: None
    yield "no-version", lambda a: a.attrib.pop("Version")
    yield "bad-issue-instant", set_attr(".", "IssueInstant", "yesterday")
    yield "element-order", swap_issuer_and_subject
    yield "unknown-saml-element", add(".", f"{{{SAML}}}Unknown")
    yield "two-issuers", lambda a: a.insert(0, copy.deepcopy(forge.one(a, "saml:Issuer")))
    yield "no-issuer", drop("saml:Issuer")
    yield (
        "attribute-without-name",
        lambda a: forge.one(a, ".//saml:Attribute[1]").attrib.pop("Name"),
    )
    yield "nameid-with-child", add("saml:Subject/saml:NameID", f"{{{SAML}}}Evil")
    yield (
        "two-signature-values",
        lambda a: forge.one(a, "ds:Signature").insert(
            2, copy.deepcopy(forge.one(a, "ds:Signature/ds:SignatureValue"))
        ),
    )
    yield "signature-object-foreign", add("ds:Signature", f"{{{DS}}}Object")
    yield "foreign-element-in-signature", add("ds:Signature/ds:SignedInfo", "{urn:x}Evil")
    yield "authn-statement-no-context", drop("saml:AuthnStatement/saml:AuthnContext")
    yield (
        "bad-base64-digest",
        lambda a: setattr(forge.one(a, ".//ds:DigestValue"), "text", "not base64!!"),
    )
    yield "foreign-attribute", set_attr(".", "{urn:x}extra", "1")
    yield "bad-version-value", set_attr(".", "Version", "2.0 beta")
    yield "bad-scd-time", set_attr(".//saml:SubjectConfirmationData", "NotOnOrAfter", "x")
    yield "id-not-ncname", lambda a: a.set("ID", "1-not-an-ncname")
    yield "duplicate-xs-id", lambda a: forge.one(a, "ds:Signature").set("Id", a.get("ID"))


@pytest.mark.parametrize("case", list(_schema_cases()), ids=lambda c: c[0])
def test_compiled_schema_agrees_with_pysaml2_xmlschema(mint, case):
    """The libxml2 validator replacing pysaml2's xmlschema refuses the same documents."""
    _, change = case
    document = forge.assertion(mint())
    change(document)
    text = etree.tostring(document, encoding="unicode")
    try:
        xmlschema_validate(text)
        expected = True
    except XMLSchemaError:
        expected = False
    try:
        validate_schema(text)
        got = True
    except ValueError:
        got = False
    assert got == expected


def test_element_content_in_an_attribute_value_is_refused(sp, mint, idp_keys):
    """Schema-valid as sent (anyType), invalid as pysaml2 reads it (it types values
    xs:string): the check on pysaml2's re-serialisation, kept from upstream, refuses."""
    root = mint()
    value = forge.assertion(root).xpath(".//saml:AttributeValue", namespaces=forge.NS)[0]
    etree.SubElement(value, "{urn:example:nested}n").text = "x"
    forge.resign(root, idp_keys)
    validate_schema(forge.assertion(root))  # the raw element is valid
    with pytest.raises(SignatureError):
        pysaml2_parse(sp, xml(root))


def test_schema_validation_refuses_doctype():
    with pytest.raises(ValueError, match="DTD"):
        validate_schema(
            b'<!DOCTYPE x><saml:Issuer xmlns:saml="' + SAML.encode() + b'">x</saml:Issuer>'
        )


# -- decryption ----------------------------------------------------------------------------------


def encrypt_assertion(
    root: etree._Element,
    cert_pem: str,
    *,
    cipher: Any = C.TransformAes256Gcm,
    transport: Any = C.TransformRsaOaep,
    key_beside_data: bool = False,
) -> None:
    """Replace the (signed) assertion by an EncryptedAssertion, as Entra shapes it."""
    assertion = forge.assertion(root)
    wrapper = etree.Element(f"{{{SAML}}}EncryptedAssertion")
    root.replace(assertion, wrapper)
    wrapper.append(assertion)
    template = xmlsec.template.encrypted_data_create(root, cipher, type=C.TypeEncElement, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, transport)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(cert_pem.encode(), C.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    bits = {C.TransformDes3Cbc: 192, C.TransformAes128Gcm: 128}.get(cipher, 256)
    key_data = C.KeyDataDes if cipher == C.TransformDes3Cbc else C.KeyDataAes
    ctx.key = xmlsec.Key.generate(key_data, bits, C.KeyDataTypeSession)
    ctx.encrypt_xml(template, assertion)
    if key_beside_data:  # Shibboleth's layout: the EncryptedKey is the data's sibling
        key = root.find(f".//{{{XENC}}}EncryptedKey")
        key.getparent().remove(key)
        root.find(f"{{{SAML}}}EncryptedAssertion").append(key)


@pytest.mark.parametrize(
    "options",
    [{}, {"key_beside_data": True}, {"cipher": C.TransformAes128Gcm}],
    ids=["aes256-gcm", "key-beside-data", "aes128-gcm"],
)
def test_encrypted_assertion_is_decrypted_and_verified(sp, mint, sp_keys, options):
    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem, **options)
    result = pysaml2_parse(sp, xml(root))
    assert result.name_id.text == "B.Simon@contoso.com"
    assert result.assertion.signature is not None  # verified after decryption


def test_encrypted_assertion_goes_through_protocol(sp, mint, sp_keys):
    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem)
    login = sp.verify_response(inspect_response(xml(root), reject_sha1=True), outstanding_id=None)
    assert login.name_id == "B.Simon@contoso.com"


def test_decrypted_assertion_signature_is_still_checked(sp, mint, sp_keys, attacker_keys):
    """Anyone can encrypt to the SP: a forged assertion inside is refused by its signature."""
    root = mint()
    forge.set_name_id(root, "admin@contoso.com")
    forge.resign(root, attacker_keys)
    encrypt_assertion(root, sp_keys.cert_pem)
    with pytest.raises(SignatureError):
        pysaml2_parse(sp, xml(root))


@pytest.mark.parametrize(
    "options",
    [
        {"cipher": C.TransformAes256Cbc},
        {"cipher": C.TransformDes3Cbc},
        {"transport": C.TransformRsaPkcs1},
    ],
    ids=["aes-cbc-not-allowed", "3des", "rsa-1_5"],
)
def test_disallowed_encryption_is_refused(backend, mint, sp_keys, options):
    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem, **options)
    with pytest.raises(DecryptError, match="^decryption failed$"):
        backend.decrypt_with_key(xml(root), sp_keys.key_pem)


def test_aes_cbc_is_decrypted_when_allowed(mint, sp_keys, idp_keys):
    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem, cipher=C.TransformAes256Cbc)
    backend = XmlSecBackend(data_encryption=[*AES_CBC])
    decrypted = backend.decrypt_with_key(xml(root), sp_keys.key_pem)
    plain = etree.fromstring(decrypted.encode())
    inner = forge.one(plain, "saml:EncryptedAssertion/saml:Assertion")
    assert XmlSecBackend().verify(decrypted, idp_keys.cert_pem, ASSERTION, inner.get("ID"))


def _flip_cipher_byte(root: etree._Element) -> None:
    node = root.xpath(
        "//xenc:EncryptedData/xenc:CipherData/xenc:CipherValue", namespaces={"xenc": XENC}
    )[0]
    raw = bytearray(base64.b64decode(node.text))
    raw[len(raw) // 2] ^= 1
    node.text = base64.b64encode(bytes(raw)).decode()


def _drop_encrypted_keys(root: etree._Element) -> None:
    for key in list(root.iter(f"{{{XENC}}}EncryptedKey")):
        key.getparent().remove(key)


def test_decryption_failures_all_look_alike(backend, mint, sp_keys, attacker_keys):
    """Tampered ciphertext, wrong key, no key: one message (no oracle)."""
    messages = set()
    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem)
    for key_pem, mutate in (
        (sp_keys.key_pem, _flip_cipher_byte),
        (attacker_keys.key_pem, lambda r: None),
        (
            sp_keys.key_pem,
            lambda r: [k.getparent().remove(k) for k in r.iter(f"{{{XENC}}}EncryptedKey")],
        ),
    ):
        attempt = copy.deepcopy(root)
        mutate(attempt)
        with pytest.raises(DecryptError) as caught:
            backend.decrypt_with_key(xml(attempt), key_pem)
        messages.add(str(caught.value))
    assert messages == {"decryption failed"}


def test_decryption_writes_no_file_and_runs_no_program(sp, mint, sp_keys, monkeypatch):
    import tempfile

    import saml2.sigver

    root = mint()
    encrypt_assertion(root, sp_keys.cert_pem)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a subprocess or temporary file on the decryption path")

    monkeypatch.setattr(saml2.sigver, "Popen", forbidden)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", forbidden)
    # pysaml2's decrypt_keys writes *given* keys to files; the configured key files are only read.
    assert pysaml2_parse(sp, xml(root)).name_id.text == "B.Simon@contoso.com"


# -- signing --------------------------------------------------------------------------------------


def test_signed_post_authn_request_is_verified_by_the_dev_idp(idp, sp_keys):
    signer = make_sp(
        idp,
        base_url="https://signer.example.test",
        sp={"key_pem": sp_keys.key_pem, "cert_pem": sp_keys.cert_pem, "sign_authn_requests": True},
    )
    _, request = signer.client.create_authn_request(
        idp.sso_post_url,
        binding=BINDING_HTTP_POST,
        sign=True,
        sign_alg=algorithms.RSA_SHA256,
        digest_alg=algorithms.SHA256,
    )
    data = str(request).encode("utf-8")
    info = idp.parse_authn_request(base64.b64encode(data).decode("ascii"), "post")
    assert info.signed and info.sp_entity_id == signer.settings.sp.entity_id
    tampered = data.replace(b"https://signer.example.test/saml/acs/", b"https://evil.test/acs/")
    assert tampered != data
    with pytest.raises(DevIdPError):
        idp.parse_authn_request(base64.b64encode(tampered).decode("ascii"), "post")


def test_sign_statement_refuses_a_document_without_template(backend, sp_keys, tmp_path):
    key_file = tmp_path / "sp.key"
    key_file.write_text(sp_keys.key_pem)
    document = b'<saml:Assertion xmlns:saml="' + SAML.encode() + b'" ID="_x"/>'
    with pytest.raises(SignatureError, match="0 Signature templates"):
        backend.sign_statement(document, ASSERTION, str(key_file), "_x")


# -- install: a client that never needs the xmlsec1 program ---------------------------------------


def test_install_replaces_every_security_context(sp):
    sec = sp.client.sec
    assert isinstance(sec, InProcessSecurityContext)
    assert isinstance(sec.crypto, XmlSecBackend)
    assert sp.client.metadata.security is sec
    assert sec.sec_backend is not None  # redirect-binding signatures (cryptography)


def test_client_built_without_xmlsec1_works_end_to_end(idp, sp_keys, monkeypatch):
    """crypto_backend="XMLSecurity" avoids the xmlsec1 lookup; install() replaces it unused."""
    import saml2.sigver

    template = make_sp(
        idp,
        base_url="https://noxmlsec1.example.test",
        sp={"key_pem": sp_keys.key_pem, "cert_pem": sp_keys.cert_pem},
    )
    config_dict = template._pysaml2_config()
    response = idp.create_response(
        "bsimon", sp_entity_id=template.settings.sp.entity_id, in_response_to=None
    )
    config_dict.pop("xmlsec_binary", None)
    config_dict["crypto_backend"] = "XMLSecurity"
    monkeypatch.setenv("PATH", "/nonexistent")

    def no_program(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("xmlsec1 was started")

    monkeypatch.setattr(saml2.sigver, "Popen", no_program)
    config = SPConfig()
    config.load(config_dict)
    client = Saml2Client(config=config)
    backend = install(client, reject_sha1=True)
    assert client.sec.crypto is backend
    result = client.parse_authn_request_response(response, BINDING_HTTP_POST)
    assert result.name_id.text == "B.Simon@contoso.com"
    # Redirect binding: the query-string signature needs the RSA signer install() adds.
    _, request = client.create_authn_request(idp.sso_redirect_url)
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(request),
        idp.sso_redirect_url,
        sign=True,
        sigalg=algorithms.RSA_SHA256,
    )
    assert "Signature=" in dict(info["headers"])["Location"]
    # POST binding: an enveloped signature made by the backend.
    _, signed = client.create_authn_request(
        idp.sso_post_url, sign=True, sign_alg=algorithms.RSA_SHA256, digest_alg=algorithms.SHA256
    )
    assert b"SignatureValue" in str(signed).encode()
    for path in os.environ["PATH"].split(os.pathsep):
        assert not os.path.exists(os.path.join(path, "xmlsec1"))


def test_install_refuses_certificate_validation(sp):
    class Client:
        config = type("Config", (), {"validate_certificate": True})()
        sec = sp.client.sec

    with pytest.raises(CryptoBackendError, match="validate_certificate"):
        install(Client(), reject_sha1=True)


# -- the start-up self-test ---------------------------------------------------------------------


def test_self_test_passes_here():
    self_test()


def test_self_test_names_a_libxml2_mismatch(monkeypatch):
    monkeypatch.setattr(crypto, "_self_test_passed", False)
    monkeypatch.setattr(crypto.etree, "LIBXML_VERSION", (2, 9, 1))
    with pytest.raises(CryptoBackendError, match=r"libxml2 2\.9\.1 but xmlsec uses libxml2"):
        self_test()
    with pytest.raises(CryptoBackendError, match="crypto_backend"):
        XmlSecBackend()


def test_self_test_names_a_missing_binding(monkeypatch):
    monkeypatch.setattr(crypto, "_self_test_passed", False)
    monkeypatch.setattr(crypto, "xmlsec", None)
    monkeypatch.setattr(crypto, "_IMPORT_ERROR", ImportError("no module named xmlsec"))
    with pytest.raises(CryptoBackendError, match="cannot be loaded.*no module named xmlsec"):
        self_test()


def test_self_test_fails_when_verification_is_broken(monkeypatch):
    """A library that accepts a tampered document must never be used."""
    monkeypatch.setattr(crypto, "_self_test_passed", False)
    monkeypatch.setattr(crypto._SelfTestBackend, "_xmlsec_verify", lambda self, *args: None)
    with pytest.raises(CryptoBackendError, match="tampered document verified"):
        self_test()
