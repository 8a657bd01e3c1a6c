"""SP- and IdP-initiated login through the engine, against the development IdP.

No ASGI here: the engine is driven with `HttpRequest`s, as an adapter would.
Responses are real, signed by the development IdP with pysaml2 and verified by
the SP with pysaml2; nothing about signatures is mocked.
"""

from __future__ import annotations

import base64
import logging
import zlib
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from lxml import etree

from saml_middleware.claims import ENTRA_EMAIL, ENTRA_OBJECT_ID, ENTRA_ROLE
from saml_middleware.engine import PassThrough, Response
from tests.helpers import Browser, header, request, set_cookies

pytestmark = pytest.mark.anyio

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"


async def test_unauthenticated_browser_is_sent_to_login_with_its_page(engine):
    reply = await engine.handle(
        request("GET", "/reports/q3?year=2026", headers={"accept": "text/html,*/*"})
    )
    assert isinstance(reply, Response) and reply.status == 303
    location = header(reply, "location")
    assert location.startswith("/saml/login/?next=")
    assert unquote(location.split("next=", 1)[1]) == "/reports/q3?year=2026"


async def test_login_redirects_to_idp_with_a_decodable_authn_request(engine, devidp):
    reply = await engine.handle(request("GET", "/saml/login/?next=/x"))
    assert reply.status == 303
    location = header(reply, "location")
    assert location.startswith(devidp.sso_redirect_url + "?")
    query = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    root = etree.fromstring(xml)
    assert root.tag == f"{{{SAMLP}}}AuthnRequest"
    assert root.get("AssertionConsumerServiceURL") == "https://app.example.test/saml/acs/"
    assert root.get("Destination") == devidp.sso_redirect_url
    issuer = root.findtext("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    assert issuer == "https://app.example.test/saml/metadata/"
    # The IdP accepts it; its ID is the SP's signed token (nothing is stored) and the
    # page to return to travels in the signed RelayState.
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    assert info.request_id == root.get("ID") and info.request_id.startswith("_")
    assert engine.store.sizes() == dict.fromkeys(engine.store.sizes(), 0)
    assert query["RelayState"][0]
    # The one cookie binds the login to this browser; it is no session.
    (binding,) = set_cookies(reply)
    assert binding.startswith("saml_session_login=")


async def test_sp_initiated_round_trip_returns_to_page_with_user_and_roles(engine, devidp):
    browser = Browser(engine, devidp)
    reply = await browser.login("bsimon", page="/reports/q3?year=2026")
    assert reply.status == 303
    assert header(reply, "location") == "/reports/q3?year=2026"
    assert engine.settings.session.cookie_name in browser.cookies

    passed = await browser.get("/reports/q3?year=2026")
    assert isinstance(passed, PassThrough)
    user = passed.user
    assert user.is_authenticated
    assert user.name_id == "B.Simon@contoso.com"
    assert user.email == "B.Simon@contoso.com"
    assert user.first_name == "B" and user.last_name == "Simon"
    assert user.display_name == "B.Simon"
    assert user.roles == ("Admin",)
    assert user.issuer == devidp.entity_id
    assert user.session_index
    # Every claim is kept, under its exact URI (Entra sends no NameFormat).
    assert user.attributes[ENTRA_ROLE] == ("admins",)
    assert user.user_id == user.attributes[ENTRA_OBJECT_ID][0]


async def test_user_without_email_claim_falls_back_to_upn(engine, devidp):
    browser = Browser(engine, devidp)
    await browser.login("cnoroles")
    user = (await browser.get("/")).user
    assert ENTRA_EMAIL not in user.attributes
    assert user.email == "C.Norole@contoso.com"
    assert user.roles == ()


async def test_outstanding_request_is_consumed_once(engine, devidp):
    browser = Browser(engine, devidp)
    saml_request, relay = await browser.start_login()
    info = devidp.parse_authn_request(saml_request, "redirect")
    first = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    second = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    # The second answer comes from a browser holding the same login binding (a copy
    # of the cookie jar): only the used-request mark can refuse it.
    other = Browser(engine, devidp, cookies=dict(browser.cookies))
    assert (await browser.post_acs(first, relay)).status == 303
    refused = await other.post_acs(second, relay)
    assert refused.status == 403
    assert header(refused, "x-saml-error") == "wrong_in_response_to"
    assert engine.settings.session.cookie_name not in other.cookies


async def test_replayed_response_is_refused(engine, devidp):
    response = devidp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    first = await Browser(engine, devidp).post_acs(response)
    assert first.status == 303
    attacker = Browser(engine, devidp)
    again = await attacker.post_acs(response)
    assert again.status == 403 and header(again, "x-saml-error") == "replay"
    assert not attacker.cookies


async def test_response_to_unknown_request_is_refused(engine, devidp):
    response = devidp.create_response(
        "bsimon",
        sp_entity_id=engine.settings.sp.entity_id,
        in_response_to="id-never-sent-by-this-sp",
    )
    browser = Browser(engine, devidp)
    reply = await browser.post_acs(response)
    assert reply.status == 403
    assert header(reply, "x-saml-error") == "wrong_in_response_to"
    assert b"sign in again" in reply.body
    assert not browser.cookies


async def test_forged_response_does_not_spoil_the_genuine_login(engine, devidp):
    browser = Browser(engine, devidp)
    saml_request, relay = await browser.start_login("/after")
    info = devidp.parse_authn_request(saml_request, "redirect")
    genuine = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    xml = base64.b64decode(genuine).replace(b"B.Simon@contoso.com", b"admin@contoso.com")
    forged = await browser.post_acs(base64.b64encode(xml).decode(), relay)
    assert forged.status == 403
    assert header(forged, "x-saml-error") == "invalid_signature"
    ok = await browser.post_acs(genuine, relay)
    assert ok.status == 303 and header(ok, "location") == "/after"


async def test_idp_initiated_login_lands_on_safe_relay_state(engine, devidp):
    response = devidp.create_response(
        "ajones", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    browser = Browser(engine, devidp)
    reply = await browser.post_acs(response, relay_state="/projects/7")
    assert reply.status == 303 and header(reply, "location") == "/projects/7"
    user = (await browser.get("/projects/7")).user
    assert user.name_id == "A.Jones@contoso.com" and user.roles == ("Member",)


@pytest.mark.parametrize(
    "relay",
    [
        "https://evil.test/",
        "//evil.test/x",
        "/\\evil.test",
        "javascript:alert(1)",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
async def test_idp_initiated_unsafe_relay_state_falls_back(engine, devidp, relay):
    response = devidp.create_response(
        "ajones", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    reply = await Browser(engine, devidp).post_acs(response, relay_state=relay)
    assert reply.status == 303 and header(reply, "location") == "/"


async def test_idp_initiated_refused_when_disabled(make_engine, devidp):
    engine = make_engine(security__allow_idp_initiated=False)
    response = devidp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    browser = Browser(engine, devidp)
    reply = await browser.post_acs(response)
    assert reply.status == 403 and header(reply, "x-saml-error") == "unsolicited"
    assert not browser.cookies
    # SP-initiated login still works.
    assert (await browser.login()).status == 303


async def test_unsafe_next_is_replaced_by_after_login(make_engine, devidp):
    engine = make_engine(paths__after_login="/home")
    browser = Browser(engine, devidp)
    reply = await browser.get("/saml/login/?next=https://evil.test/steal")
    query = parse_qs(urlsplit(header(reply, "location")).query)
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    response = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    done = await browser.post_acs(response, query["RelayState"][0])
    assert done.status == 303 and header(done, "location") == "/home"


async def test_api_request_without_session_gets_401_json(engine):
    reply = await engine.handle(
        request("GET", "/api/items", headers={"accept": "application/json"})
    )
    assert reply.status == 401
    assert header(reply, "content-type") == "application/json"
    assert b'"authentication_required"' in reply.body
    post = await engine.handle(request("POST", "/reports", headers={"accept": "text/html"}))
    assert post.status == 401


async def test_exempt_and_unprotected_paths_pass_as_anonymous(make_engine):
    engine = make_engine(paths__protect=["/app"], paths__exempt=["/app/public"])
    for path in ("/", "/about", "/app/public/logo.png", "/application"):
        reply = await engine.handle(request("GET", path, headers={"accept": "text/html"}))
        assert isinstance(reply, PassThrough), path
        assert not reply.user.is_authenticated
    reply = await engine.handle(request("GET", "/app/x", headers={"accept": "text/html"}))
    assert reply.status == 303


async def test_logged_in_user_is_seen_on_unprotected_paths_too(make_engine, devidp):
    engine = make_engine(paths__protect=["/app"])
    browser = Browser(engine, devidp)
    await browser.login(page="/app")
    reply = await browser.get("/about")
    assert reply.user.is_authenticated and reply.user.name_id == "B.Simon@contoso.com"


async def test_logout_ends_the_session(engine, devidp):
    browser = Browser(engine, devidp)
    await browser.login()
    # GET only offers the button: a link or an <img> cannot sign anyone out.
    page = await browser.get("/saml/logout/")
    assert page.status == 200 and header(page, "set-cookie") is None
    assert b"<form method=post action='/saml/logout/'>" in page.body
    assert isinstance(await browser.get("/dashboard"), PassThrough)
    reply = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    browser._remember(reply)
    # The dev IdP has a Single Logout endpoint: the browser goes on there (tests/test_slo.py).
    assert reply.status == 303
    assert header(reply, "location").startswith(devidp.slo_url + "?SAMLRequest=")
    assert "Max-Age=0" in header(reply, "set-cookie")
    assert not browser.cookies
    assert (await browser.get("/dashboard")).status == 303


async def test_endpoints_accept_missing_trailing_slash(engine):
    for path in ("/saml/metadata", "/saml/metadata/"):
        reply = await engine.handle(request("GET", path))
        assert reply.status == 200, path
    assert (await engine.handle(request("GET", "/saml/login"))).status == 303
    assert (await engine.handle(request("GET", "/saml/nothing/"))).status == 404


async def test_acs_refuses_get_and_bad_forms_without_500(engine):
    get = await engine.handle(request("GET", "/saml/acs/"))
    assert get.status == 405 and header(get, "allow") == "POST"
    cases = [
        request("POST", "/saml/acs/", form={}),
        request("POST", "/saml/acs/", form={"SAMLResponse": "%%% not base64"}),
        request("POST", "/saml/acs/", form={"SAMLResponse": base64.b64encode(b"hello").decode()}),
        request(
            "POST",
            "/saml/acs/",
            body=b'{"SAMLResponse": "x"}',
            headers={"content-type": "application/json"},
        ),
        request(
            "POST",
            "/saml/acs/",
            form={
                "SAMLResponse": base64.b64encode(
                    b"<!DOCTYPE r [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><r>&x;</r>"
                ).decode()
            },
        ),
        request(
            "POST",
            "/saml/acs/",
            form={
                "SAMLResponse": base64.b64encode(
                    b"<samlp:AuthnRequest xmlns:samlp='" + SAMLP.encode() + b"'/>"
                ).decode()
            },
        ),
    ]
    for case in cases:
        reply = await engine.handle(case)
        assert reply.status == 400, (reply.status, reply.body)
        assert b"Traceback" not in reply.body


async def test_oversized_acs_post_is_413_before_parsing(engine):
    big = "A" * (engine.settings.security.max_request_bytes + 10)
    reply = await engine.handle(request("POST", "/saml/acs/", form={"SAMLResponse": big}))
    assert reply.status == 413


async def test_refusal_is_logged_with_its_reason(engine, devidp, caplog):
    response = devidp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to="id-unknown"
    )
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        await Browser(engine, devidp).post_acs(response)
    assert any("wrong_in_response_to" in r.getMessage() for r in caplog.records)
    assert not any(response[:40] in r.getMessage() for r in caplog.records)


async def test_require_mapped_role_refuses_user_without_role(make_engine, devidp):
    engine = make_engine(roles__require_mapped_role=True)
    reply = await Browser(engine, devidp).login("cnoroles")
    assert reply.status == 403 and header(reply, "x-saml-error") == "no_mapped_role"
    assert (await Browser(engine, devidp).login("bsimon")).status == 303


async def test_each_login_leaves_one_structured_record_without_the_name_id(engine, devidp, caplog):
    with caplog.at_level(logging.INFO, logger="saml_middleware.login"):
        await Browser(engine, devidp).login("bsimon")
        response = devidp.create_response(
            "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to="id-unknown"
        )
        await Browser(engine, devidp).post_acs(response)
    records = [r for r in caplog.records if r.name == "saml_middleware.login"]
    assert [r.saml_outcome for r in records] == ["ok", "wrong_in_response_to"]
    for record in records:
        assert record.saml_issuer == devidp.entity_id
        assert record.saml_tenant is None
        assert "B.Simon" not in record.getMessage()
    assert len(records[0].saml_name_id_hash) == 16
    assert "B.Simon" not in records[0].saml_name_id_hash
