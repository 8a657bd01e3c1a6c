"""Where a Response's enveloped signature may sit, and the forgeries that stay refused.

Auth0 sends the Response's Signature after the Assertion (the SAML schema wants
it right after the Issuer). Its place among the signed element's children
changes nothing that is signed, so both verification paths accept it
(docs/security.md, "Leniencies"); the attacks that the schema order could
otherwise be thought to stop are refused all the same.
"""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from tests import forge
from tests.forge import SAMLP
from tests.realworld_cases import case_dir, service_provider, verify

pytestmark = pytest.mark.anyio

ONLY_RESPONSE_SIGNED = {
    "security__want_response_signed": True,
    "security__want_assertions_signed": False,
}


def signed_at_the_end(acs, in_response_to=None) -> etree._Element:
    """A genuine Response whose only signature, the Response's, follows the Assertion."""
    root = acs.mint(in_response_to)
    forge.strip_signatures(root)
    signature = forge.sign(root, acs.keys)
    root.append(signature)  # moved after signing: the enveloped transform ignores it
    return root


def response_signature(root: etree._Element) -> etree._Element:
    return forge.one(root, "ds:Signature")


@pytest.mark.parametrize("backend", ["inprocess", "xmlsec1"])
def test_auth0_genuine_response_with_its_signature_after_the_assertion_is_accepted(backend):
    case = case_dir("auth0-gosaml2-2016")
    login = verify(service_provider(case, backend), case)
    assert login.name_id == "google-oauth2|117637692321743777825"


async def test_a_response_signature_after_the_assertion_is_accepted(make_acs):
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    root = signed_at_the_end(acs)
    assert root[-1].tag == f"{{{forge.DS}}}Signature"
    await acs.assert_logged_in(await acs.post(root))


async def test_an_assertion_signature_after_its_statements_is_accepted(make_acs):
    acs = make_acs()
    root = acs.mint()
    assertion = forge.assertion(root)
    assertion.append(forge.one(assertion, "ds:Signature"))  # after the AttributeStatement
    await acs.assert_logged_in(await acs.post(root))


async def test_edited_after_signing_is_refused(make_acs):
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    root = signed_at_the_end(acs)
    forge.set_name_id(root, "admin@contoso.com")
    await acs.assert_refused(await acs.post(root), "invalid_signature")


async def test_a_second_assertion_is_refused(make_acs):
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    root = signed_at_the_end(acs)
    forge.add_assertion_copy(root, "_evil", "admin@contoso.com")
    root.append(response_signature(root))  # still the last child
    await acs.assert_refused(await acs.post(root), "wrong_number_of_assertions")


async def test_wrapping_the_signed_response_is_refused(make_acs):
    """XSW1 with the signature at the end: an evil Response holds the signed one."""
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    genuine = signed_at_the_end(acs)
    evil = copy.deepcopy(genuine)
    evil.remove(response_signature(evil))
    evil.set("ID", "_evil-response")
    forge.set_name_id(evil, "admin@contoso.com")
    extensions = etree.Element(f"{{{SAMLP}}}Extensions")
    extensions.append(genuine)
    forge.one(evil, "samlp:Status").addprevious(extensions)
    evil.append(copy.deepcopy(response_signature(genuine)))
    reply = await acs.post(evil)
    assert reply.status == 403 and acs.last_code in (
        "wrong_number_of_assertions",
        "invalid_signed_element",
        "duplicate_id",
    ), acs.last_code
    await acs.assert_refused(reply, acs.last_code)


async def test_a_detached_signature_is_refused(make_acs):
    """The Response's signature moved into the Status: no longer enveloped by what it signs."""
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    root = signed_at_the_end(acs)
    forge.one(root, "samlp:Status").append(response_signature(root))
    await acs.assert_refused(await acs.post(root), "invalid_signed_element")


async def test_a_signature_whose_reference_is_not_its_parent_is_refused(make_acs):
    """The assertion signed, its signature moved to the end of the Response."""
    acs = make_acs(**ONLY_RESPONSE_SIGNED)
    root = acs.mint()
    forge.strip_signatures(root)
    forge.sign(forge.assertion(root), acs.keys)
    root.append(forge.one(root, "saml:Assertion/ds:Signature"))
    await acs.assert_refused(await acs.post(root), "invalid_signed_element")
