# ruff: noqa: F811 - the security fixtures are imported, then requested by name
"""Attribute values with element content are read, never fatal, alike on both paths.

A NameID inside an AttributeValue (eduPersonTargetedID) becomes
`NameQualifier!SPNameQualifier!value` (Shibboleth SP's classic form); other
element content becomes its text. eduPersonTargetedID, pairwise-id and
subject-id can then be the `user_id` through `attributes.map`.
"""

from __future__ import annotations

import pytest
from lxml import etree

from saml_middleware.config import load_settings
from saml_middleware.identity import build_user
from tests import forge
from tests.forge import SAML
from tests.helpers import settings_for
from tests.realworld_cases import case_dir, service_provider, verify

pytestmark = pytest.mark.anyio

TARGETED_ID = "urn:oid:1.3.6.1.4.1.5923.1.1.1.10"
PAIRWISE_ID = "urn:oasis:names:tc:SAML:attribute:pairwise-id"
SUBJECT_ID = "urn:oasis:names:tc:SAML:attribute:subject-id"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
IDP = "https://idp.example.test/idp"
SP = "https://app.example.test/saml/metadata/"


def add_attribute(root: etree._Element, name: str, value_xml: str) -> None:
    """An Attribute whose one AttributeValue holds `value_xml` (markup, saml: bound)."""
    statement = forge.one(forge.assertion(root), "saml:AttributeStatement")
    attribute = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name)
    value = etree.fromstring(
        f'<saml:AttributeValue xmlns:saml="{SAML}">{value_xml}</saml:AttributeValue>'
    )
    attribute.append(value)


def with_structured_values(acs) -> etree._Element:
    root = acs.mint()
    add_attribute(
        root,
        TARGETED_ID,
        f'<saml:NameID Format="{PERSISTENT}" NameQualifier="{IDP}" SPNameQualifier="{SP}">'
        "  tgt-<!-- a comment -->42 </saml:NameID>",
    )
    add_attribute(root, "urn:example:card", '<x:Card xmlns:x="urn:x"> Ada <x:n>7</x:n></x:Card>')
    add_attribute(root, PAIRWISE_ID, "Q4nS7@example.test")
    add_attribute(root, SUBJECT_ID, "ada@example.test")
    forge.resign(root, acs.keys)
    return root


@pytest.mark.parametrize("user_id", [TARGETED_ID, PAIRWISE_ID, SUBJECT_ID])
async def test_structured_values_are_read_and_can_be_the_user_id(make_acs, user_id):
    acs = make_acs(attributes__map={"user_id": user_id})
    await acs.assert_logged_in(await acs.post(with_structured_values(acs)))
    user = (await acs.last_browser.get("/after-login")).user
    assert user.attributes[TARGETED_ID] == (f"{IDP}!{SP}!tgt-42",)
    assert user.attributes["urn:example:card"] == ("Ada 7",)
    expected = {
        TARGETED_ID: f"{IDP}!{SP}!tgt-42",
        PAIRWISE_ID: "Q4nS7@example.test",
        SUBJECT_ID: "ada@example.test",
    }
    assert user.user_id == expected[user_id]


async def test_a_name_id_value_without_qualifiers_keeps_empty_places(make_acs):
    acs = make_acs()
    root = acs.mint()
    add_attribute(root, TARGETED_ID, "<saml:NameID>bare</saml:NameID>")
    forge.resign(root, acs.keys)
    await acs.assert_logged_in(await acs.post(root))
    user = (await acs.last_browser.get("/after-login")).user
    assert user.attributes[TARGETED_ID] == ("!!bare",)


@pytest.mark.parametrize(
    ("backend", "native"),
    [("inprocess", True), ("inprocess", False), ("xmlsec1", False)],
    ids=["native", "pysaml2-inprocess", "pysaml2-xmlsec1"],
)
def test_shibboleth_targeted_id_is_the_user_id(idp, backend, native):
    """TestShib's genuine, encrypted Response: its eduPersonTargetedID as the user_id."""
    case = case_dir("shibboleth-testshib-socialcore-2015")
    login = verify(service_provider(case, backend), case, native=native)
    settings = load_settings(
        settings_for(idp, attributes__preset="generic", attributes__map={"user_id": TARGETED_ID})
    )
    user = build_user(
        name_id=login.name_id,
        name_id_format=login.name_id_format,
        session_index=login.session_index,
        issuer=login.issuer,
        attributes=login.attributes,
        attribute_settings=settings.attributes,
        role_settings=settings.roles,
    )
    assert user.user_id == (
        "https://idp.testshib.org/idp/shibboleth!"
        "https://github.com/omab/python-social-auth/saml-test!4PlsCQDP8a5LfPiD04BfsqdT8Mk="
    )
    assert user.attributes["urn:oid:1.3.6.1.4.1.5923.1.1.1.6"] == ("myself@testshib.org",)
