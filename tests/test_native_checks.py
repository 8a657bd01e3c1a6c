# ruff: noqa: F811 - the security fixtures are imported, then requested by name
"""Checks of the native path that the attack corpus does not reach, each against pysaml2.

Each test edits a genuine assertion-signed response, re-signs it with the
trusted IdP key, and compares the native path with the pysaml2 path
(tests/test_native_equivalence.py explains both).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable

import pytest
from lxml import etree

from tests import forge
from tests.forge import SAML
from tests.test_native_equivalence import INPROCESS, both, service_provider

XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@pytest.fixture(scope="module")
def setup(make_acs, idp_keys):
    acs = make_acs(**INPROCESS)
    root = forge.decode(acs.mint_encoded(sign_assertion=True, sign_response=False))
    return service_provider(acs), root, idp_keys


def run(setup, mutate: Callable[[etree._Element], None]):
    sp, genuine, keys = setup
    root = copy.deepcopy(genuine)
    mutate(forge.assertion(root))
    forge.strip_signatures(root)
    forge.sign_assertions(root, keys, "sha256")
    return both(sp, etree.tostring(root))


def confirmation_data(assertion: etree._Element) -> etree._Element:
    return forge.one(
        assertion, "saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"
    )


def add_value(assertion: etree._Element, value: etree._Element) -> None:
    attribute = assertion.find("saml:AttributeStatement/saml:Attribute", forge.NS)
    attribute.append(value)


def typed_value(kind: str, text: str) -> etree._Element:
    value = etree.Element(f"{{{SAML}}}AttributeValue", nsmap={"xs": XS, "xsi": XSI})
    value.set(f"{{{XSI}}}type", f"xs:{kind}")
    value.text = text
    return value


def test_invalid_confirmation_address_is_refused_by_both(setup):
    native, reference = run(setup, lambda a: confirmation_data(a).set("Address", "not-an-ip"))
    assert native == reference == ("refused", "invalid_response")


def test_valid_confirmation_address_is_accepted_by_both(setup):
    native, reference = run(setup, lambda a: confirmation_data(a).set("Address", "192.0.2.7"))
    assert native[0] == "accepted" and native == reference


def test_two_authn_statements_are_refused_by_both(setup):
    def twice(assertion):
        statement = forge.one(assertion, "saml:AuthnStatement")
        statement.addnext(copy.deepcopy(statement))

    native, reference = run(setup, twice)
    assert native == reference == ("refused", "invalid_response")


def test_confirmation_without_data_is_skipped_by_both(setup):
    def bare_first(assertion):
        confirmation = forge.one(assertion, "saml:Subject/saml:SubjectConfirmation")
        bare = etree.Element(f"{{{SAML}}}SubjectConfirmation", Method=forge.BEARER)
        confirmation.addprevious(bare)

    native, reference = run(setup, bare_first)
    assert native[0] == "accepted" and native == reference


def test_expired_second_bearer_confirmation_is_refused_by_both(setup):
    def expired_copy(assertion):
        confirmation = forge.one(assertion, "saml:Subject/saml:SubjectConfirmation")
        second = copy.deepcopy(confirmation)
        data = second.find(f"{{{SAML}}}SubjectConfirmationData")
        data.set("NotOnOrAfter", "2000-01-01T00:00:00Z")
        confirmation.addnext(second)

    native, reference = run(setup, expired_copy)
    assert native == reference == ("refused", "expired")


def test_bearer_confirmation_without_recipient_is_refused_by_both(setup):
    def second_without_recipient(assertion):
        confirmation = forge.one(assertion, "saml:Subject/saml:SubjectConfirmation")
        second = copy.deepcopy(confirmation)
        second.find(f"{{{SAML}}}SubjectConfirmationData").attrib.pop("Recipient")
        confirmation.addnext(second)

    native, reference = run(setup, second_without_recipient)
    assert native == reference == ("refused", "wrong_recipient")


@pytest.mark.parametrize(
    ("kind", "text", "read"),
    [
        ("integer", "05", "5"),
        ("int", " 7 ", "7"),
        ("boolean", "true", "true"),
        ("double", "1.50", "1.5"),
        ("date", "2020-01-02", "2020-01-02"),
        ("string", " spaced ", "spaced"),
        ("base64Binary", "YWJj", "YWJj"),
        ("anyURI", "urn:x", "urn:x"),
    ],
)
def test_typed_attribute_values_read_as_pysaml2_reads_them(setup, kind, text, read):
    native, reference = run(setup, lambda a: add_value(a, typed_value(kind, text)))
    assert native[0] == "accepted" and native == reference
    values = next(iter(native[1].attributes.values()))
    assert values[-1] == read


def test_empty_and_commented_attribute_values(setup):
    def values(assertion):
        add_value(assertion, etree.Element(f"{{{SAML}}}AttributeValue"))
        split = etree.Element(f"{{{SAML}}}AttributeValue")
        split.text = "a"
        split.append(etree.Comment("c"))
        split[-1].tail = "b"
        add_value(assertion, split)

    native, reference = run(setup, values)
    assert native[0] == "accepted" and native == reference
    assert next(iter(native[1].attributes.values()))[-2:] == ["", "ab"]


@pytest.mark.parametrize(
    ("markup", "read"),
    [
        ('<x:inner xmlns:x="urn:example">x</x:inner>', "x"),
        ('<x:a xmlns:x="urn:example"> one <x:b>two</x:b> </x:a>', "one two"),
        (
            f'<saml:NameID xmlns:saml="{SAML}" NameQualifier="idp" SPNameQualifier="sp">'
            "id-<!--c-->7</saml:NameID>",
            "idp!sp!id-7",
        ),
        (f'<saml:NameID xmlns:saml="{SAML}">bare</saml:NameID>', "!!bare"),
        (f'\n   <saml:NameID xmlns:saml="{SAML}">bare</saml:NameID>\n  ', "!!bare"),
    ],
    ids=["element", "nested", "name-id", "name-id-unqualified", "pretty"],
)
def test_structured_attribute_values_are_read_alike(setup, markup, read):
    def structured(assertion):
        add_value(
            assertion,
            etree.fromstring(
                f'<saml:AttributeValue xmlns:saml="{SAML}">{markup}</saml:AttributeValue>'
            ),
        )

    native, reference = run(setup, structured)
    assert native[0] == "accepted" and native == reference
    assert next(iter(native[1].attributes.values()))[-1] == read


def test_name_id_qualifiers_are_read_alike(setup):
    sp = setup[0]

    def qualified(assertion):
        name_id = forge.one(assertion, "saml:Subject/saml:NameID")
        name_id.set("NameQualifier", "urn:idp:qualifier")
        name_id.set("SPNameQualifier", sp.settings.sp.entity_id)
        name_id.set("SPProvidedID", "app-7")

    native, reference = run(setup, qualified)
    assert native[0] == "accepted" and native == reference
    login = native[1]
    assert (login.name_id_qualifier, login.sp_name_qualifier, login.sp_provided_id) == (
        "urn:idp:qualifier",
        sp.settings.sp.entity_id,
        "app-7",
    )


def test_an_attribute_with_an_empty_name_is_refused_by_both(setup):
    def unnamed(assertion):
        assertion.xpath("saml:AttributeStatement/saml:Attribute", namespaces=forge.NS)[0].set(
            "Name", ""
        )

    native, reference = run(setup, unnamed)
    assert native == reference == ("refused", "invalid_response")


def test_text_beside_elements_in_an_attribute_value_is_refused_by_both(setup):
    def mixed(assertion):
        add_value(
            assertion,
            etree.fromstring(
                f'<saml:AttributeValue xmlns:saml="{SAML}">lead <x:a xmlns:x="urn:x">one</x:a>'
                "</saml:AttributeValue>"
            ),
        )

    native, reference = run(setup, mixed)
    assert native == ("refused", "invalid_response")
    assert reference[0] == "refused"  # a signature failure there: its schema check of the item


def test_unknown_condition_is_refused_by_both(setup):
    def condition(assertion):
        conditions = forge.one(assertion, "saml:Conditions")
        prefix = next(p for p, uri in conditions.nsmap.items() if uri == SAML)
        extra = etree.SubElement(conditions, f"{{{SAML}}}Condition", nsmap={"xsi": XSI})
        extra.set(f"{{{XSI}}}type", f"{prefix}:OneTimeUseType")  # schema-valid, not understood

    native, reference = run(setup, condition)
    # pysaml2 refuses too (its own reading of the xsi:type makes it a signature failure).
    assert native == ("refused", "invalid_response") and reference[0] == "refused"


def test_encrypted_id_beside_nothing_else(setup):
    """An EncryptedID that decrypts still names nobody (pysaml2 path: no_nameid)."""
    native, reference = run(
        setup, lambda a: forge.one(a, "saml:Subject/saml:NameID").set("Format", "x")
    )
    assert native == reference


def test_encrypted_response_signed_with_unsigned_invalid_assertion(make_acs, sp_keys, idp_keys):
    """Signed-then-encrypted the other way: only the Response signed, the decrypted
    assertion unsigned and schema-invalid: refused (its schema is validated after
    decryption), by both paths."""
    acs = make_acs(
        sp__key_pem=sp_keys.key_pem,
        sp__cert_pem=sp_keys.cert_pem,
        security__want_assertions_signed=False,
        security__want_response_signed=True,
        **INPROCESS,
    )
    sp = service_provider(acs)
    encoded = acs.mint_encoded(sign_assertion=False, sign_response=False, encrypt_assertion=True)
    root = forge.decrypt_assertion(forge.decode(encoded), sp_keys.key_pem)
    good = copy.deepcopy(root)
    forge.encrypt_assertion(good, sp_keys.cert_pem)
    forge.sign_response(good, idp_keys)
    native, reference = both(sp, etree.tostring(good))
    assert native[0] == "accepted" and native == reference
    assertion = forge.assertion(root)
    forge.one(assertion, "saml:Subject/saml:SubjectConfirmation").attrib.pop("Method")
    forge.encrypt_assertion(root, sp_keys.cert_pem)
    forge.sign_response(root, idp_keys)
    native, reference = both(sp, etree.tostring(root))
    print(native, reference)
    assert native[0] == reference[0] == "refused", (native, reference)


def test_no_sp_key_means_no_decryption(make_acs, sp_keys):
    acs = make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem, **INPROCESS)
    encoded = acs.mint_encoded(sign_assertion=True, sign_response=False, encrypt_assertion=True)
    plain = make_acs(**INPROCESS)
    sp = service_provider(plain)
    native, reference = both(sp, base64.b64decode(encoded))
    assert native == reference == ("refused", "decryption_failed")


def test_a_schema_invalid_signed_assertion_inside_encryption_is_refused_by_both(
    make_acs, idp_keys, sp_keys
):
    """The decrypted assertion's schema is checked as an unencrypted one's is."""
    acs = make_acs(**INPROCESS, sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)
    sp = service_provider(acs)
    root = forge.decode(acs.mint_encoded(sign_assertion=True, sign_response=False))
    subject = forge.one(forge.assertion(root), "saml:Subject")
    subject.addprevious(etree.Element(f"{{{SAML}}}Bogus"))  # no such element in SAML
    forge.strip_signatures(root)
    forge.sign_assertions(root, idp_keys, "sha256")
    forge.encrypt_assertion(root, sp_keys.cert_pem)
    native, reference = both(sp, etree.tostring(root))
    assert native[0] == reference[0] == "refused", (native, reference)
    assert native[1] != "decryption_failed"  # it was read, then refused


def test_a_duplicate_id_inside_encryption_is_refused_by_both(make_acs, idp_keys, sp_keys):
    """The decrypted document's IDs are unique, as the encrypted one's must be."""
    acs = make_acs(**INPROCESS, sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)
    sp = service_provider(acs)
    root = forge.decode(acs.mint_encoded(sign_assertion=True, sign_response=False))
    data = confirmation_data(forge.assertion(root))
    data.set("{http://www.w3.org/XML/1998/namespace}id", "id-twice")
    forge.strip_signatures(root)
    forge.sign_assertions(root, idp_keys, "sha256")
    forge.encrypt_assertion(root, sp_keys.cert_pem)
    root.set("ID", "id-twice")  # the unsigned Response: only seen twice once decrypted
    native, reference = both(sp, etree.tostring(root))
    assert native[0] == reference[0] == "refused", (native, reference)
    assert native[1] != "decryption_failed"  # it was read, then refused


def test_an_unreadable_decrypted_document_is_one_decryption_failure(make_acs, idp_keys, sp_keys):
    """What decrypts but cannot be read (here: nested too deeply for the parser) fails
    as every other decryption failure does, not as "malformed": no oracle."""
    acs = make_acs(**INPROCESS, sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)
    sp = service_provider(acs)
    root = forge.decode(acs.mint_encoded(sign_assertion=True, sign_response=False))
    value = etree.Element(f"{{{SAML}}}AttributeValue")
    node = value
    for _ in range(80):
        node = etree.SubElement(node, "deep")
    add_value(forge.assertion(root), value)
    forge.strip_signatures(root)
    forge.sign_assertions(root, idp_keys, "sha256")
    forge.encrypt_assertion(root, sp_keys.cert_pem)
    native, reference = both(sp, etree.tostring(root))
    assert native == ("refused", "decryption_failed"), native
    assert reference[0] == "refused"


def test_an_unknown_confirmation_method_beside_a_good_bearer_is_refused_by_both(setup):
    def unknown(assertion):
        confirmation = forge.one(assertion, "saml:Subject/saml:SubjectConfirmation")
        other = etree.Element(f"{{{SAML}}}SubjectConfirmation", Method="urn:example:unknown")
        confirmation.addnext(other)

    native, reference = run(setup, unknown)
    assert native == ("refused", "invalid_response") and reference[0] == "refused"


def test_encrypted_attributes_are_refused_natively_not_skipped(setup):
    """The native path does not decrypt attributes: it says so rather than quietly
    signing the user in without them (and without the roles they may carry)."""
    xenc = "http://www.w3.org/2001/04/xmlenc#"

    def encrypted_attribute(assertion):
        statement = forge.one(assertion, "saml:AttributeStatement")
        holder = etree.SubElement(statement, f"{{{SAML}}}EncryptedAttribute")
        data = etree.SubElement(holder, f"{{{xenc}}}EncryptedData")
        cipher = etree.SubElement(data, f"{{{xenc}}}CipherData")
        etree.SubElement(cipher, f"{{{xenc}}}CipherValue").text = "AAAA"

    native, reference = run(setup, encrypted_attribute)
    assert native == ("refused", "invalid_response"), (native, reference)
