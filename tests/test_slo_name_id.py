# ruff: noqa: F811 - the security fixtures are imported, then requested by name
"""Single Logout names the exact NameID the assertion carried, and matches on it.

The SP's LogoutRequest carries the session's NameID with its Format,
NameQualifier, SPNameQualifier and SPProvidedID as received; an IdP's
LogoutRequest ends a session only when its NameID has the same qualifiers
(an absent NameQualifier meaning the IdP, an absent SPNameQualifier this SP).
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from saml_middleware.identity import SAMLUser
from saml_middleware.saml.sp import inflate
from tests import forge
from tests.helpers import Browser, header, request
from tests.security.harness import Acs

pytestmark = pytest.mark.anyio

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NAME = "B.Simon@contoso.com"


@pytest.fixture(params=["cookie", "store"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def signed_in_with(acs: Acs, **qualifiers: str) -> Browser:
    """A browser signed in by an assertion whose NameID carries `qualifiers`."""
    root = acs.mint()
    name_id = forge.name_id(root)
    for attribute, value in qualifiers.items():
        name_id.set(attribute, value)
    forge.resign(root, acs.keys)
    await acs.assert_logged_in(await acs.post(root))
    assert acs.last_browser is not None
    return acs.last_browser


async def is_signed_in(acs: Acs, cookies: dict[str, str]) -> bool:
    reply = await acs.engine.handle(
        request("GET", "/dashboard", headers={"accept": "application/json"}, cookies=cookies)
    )
    return getattr(getattr(reply, "user", None), "is_authenticated", False)


async def idp_logout(acs: Acs, cookies: dict[str, str] | None, **qualifiers: str) -> bool:
    """The IdP asks to sign `NAME` out; whether this browser's session was ended."""
    _, outbound = acs.idp.create_logout_request(
        acs.engine.settings.sp.entity_id, NAME, **qualifiers
    )
    parts = urlsplit(outbound.url)
    reply = await acs.engine.handle(
        request("GET", f"{parts.path}?{parts.query}", cookies=cookies or {})
    )
    assert reply.status == 303, (reply.status, header(reply, "x-saml-error"))
    return (header(reply, "set-cookie") or "").startswith("saml_session=;")


async def test_the_logout_request_names_the_exact_name_id(make_acs, backend):
    acs = make_acs(session__backend=backend)
    sp_entity = acs.engine.settings.sp.entity_id
    browser = await signed_in_with(
        acs, NameQualifier=acs.idp.entity_id, SPNameQualifier=sp_entity, SPProvidedID="app-7"
    )
    out = await acs.engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    location = header(out, "location") or ""
    assert location.startswith(acs.idp.slo_url + "?")
    encoded = parse_qs(urlsplit(location).query)["SAMLRequest"][0]
    sent = etree.fromstring(inflate(base64.b64decode(encoded), 1 << 20))
    assert sent.tag == f"{{{SAMLP}}}LogoutRequest"
    name_id = sent.find(f"{{{SAML}}}NameID")
    assert name_id is not None and name_id.text == NAME
    assert dict(name_id.attrib) == {
        "Format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "NameQualifier": acs.idp.entity_id,
        "SPNameQualifier": sp_entity,
        "SPProvidedID": "app-7",
    }


async def test_a_logout_request_for_another_sp_name_qualifier_ends_nothing(make_acs, backend):
    acs = make_acs(session__backend=backend)
    qualifiers = {
        "NameQualifier": acs.idp.entity_id,
        "SPNameQualifier": acs.engine.settings.sp.entity_id,
    }
    browser = await signed_in_with(acs, **qualifiers)
    other_sp = "https://other.example.test/sp"
    assert not await idp_logout(acs, browser.cookies, sp_name_qualifier=other_sp)
    assert await is_signed_in(acs, browser.cookies)
    other_idp = "https://other-idp.example.test/"
    assert not await idp_logout(acs, browser.cookies, name_qualifier=other_idp)
    assert await is_signed_in(acs, browser.cookies)
    # The qualifiers left out mean the IdP and this SP: the same NameID, so it ends.
    assert await idp_logout(acs, browser.cookies)
    if backend == "store":  # even a copy of the cookie is dead
        assert not await is_signed_in(acs, browser.cookies)


async def test_the_server_side_revocation_matches_the_qualifiers_too(make_acs):
    """No cookie: only the store's index finds the sessions (`revoke`)."""
    acs = make_acs(session__backend="store")
    browser = await signed_in_with(acs, SPNameQualifier=acs.engine.settings.sp.entity_id)
    assert not await idp_logout(acs, None, sp_name_qualifier="https://other.example.test/sp")
    assert await is_signed_in(acs, browser.cookies)
    await idp_logout(acs, None, sp_name_qualifier=acs.engine.settings.sp.entity_id)
    assert not await is_signed_in(acs, browser.cookies)


async def test_the_qualifiers_survive_the_session(make_acs, backend):
    acs = make_acs(session__backend=backend)
    browser = await signed_in_with(
        acs, NameQualifier="urn:idp", SPNameQualifier=acs.engine.settings.sp.entity_id
    )
    user = (await browser.get("/after-login")).user
    assert (user.name_id_qualifier, user.sp_name_qualifier, user.sp_provided_id) == (
        "urn:idp",
        acs.engine.settings.sp.entity_id,
        None,
    )


def test_a_session_written_before_the_qualifiers_still_loads():
    old = SAMLUser(name_id=NAME, user_id="u1").to_dict()
    for key in ("name_id_qualifier", "sp_name_qualifier", "sp_provided_id"):
        del old[key]
    user = SAMLUser.from_dict(old)
    assert user.name_id == NAME and user.sp_name_qualifier is None
    full = SAMLUser(name_id=NAME, user_id="u1", sp_name_qualifier="sp", sp_provided_id="p")
    assert SAMLUser.from_dict(full.to_dict()) == full
