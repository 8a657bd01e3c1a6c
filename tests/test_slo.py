"""Single Logout through the engine, against the development IdP, both directions.

SP-initiated: `POST /saml/logout/` ends the local session and sends a
LogoutRequest to the IdP (signed when the SP has a key); the IdP's signed
LogoutResponse at `/saml/sls/` is checked and its InResponseTo taken once.
IdP-initiated: a signed LogoutRequest at `/saml/sls/` ends the sessions of its
NameID (those of its SessionIndexes, when it names some), with server-side
sessions even without the user's cookie, and is answered with a LogoutResponse.
Forged, unsigned, replayed, misaddressed and expired messages are refused
without ending anything (docs/security.md W7, W9, W10).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.keys import generate_key_pair
from saml_middleware.saml.algorithms import RSA_SHA1
from saml_middleware.saml.logout_messages import (
    inspect_logout_request,
    read_redirect_query,
    redirect_url,
)
from saml_middleware.saml.sp import decode_redirect_message
from tests.forge import KeyPair
from tests.helpers import Browser, header, request

pytestmark = pytest.mark.anyio

SLS = "https://app.example.test/saml/sls/"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture(params=["cookie", "store"])
def session_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def slo_engine(
    make_engine: Callable[..., Engine], session_backend: str, sp_keys: KeyPair
) -> Engine:
    key, cert = sp_keys.key_pem, sp_keys.cert_pem
    return make_engine(
        session__backend=session_backend,
        sp__key_pem=key,
        sp__cert_pem=cert,
        paths__after_logout="/signed-out",
    )


async def signed_in(engine: Engine, devidp: DevIdP, user: str = "bsimon") -> Browser:
    browser = Browser(engine, devidp)
    assert (await browser.login(user)).status == 303
    return browser


async def is_signed_in(engine: Engine, cookies: dict[str, str]) -> bool:
    reply = await engine.handle(
        request("GET", "/dashboard", headers={"accept": "application/json"}, cookies=cookies)
    )
    return isinstance(reply, PassThrough) and reply.user.is_authenticated


async def sls_get(engine: Engine, url: str, cookies: dict[str, str] | None = None) -> Response:
    parts = urlsplit(url)
    reply = await engine.handle(request("GET", f"{parts.path}?{parts.query}", cookies=cookies))
    assert isinstance(reply, Response)
    return reply


async def sls_post(
    engine: Engine, form: dict[str, str], cookies: dict[str, str] | None = None
) -> Response:
    reply = await engine.handle(request("POST", "/saml/sls/", form=dict(form), cookies=cookies))
    assert isinstance(reply, Response)
    return reply


def sp_entity(engine: Engine) -> str:
    return engine.settings.sp.entity_id


def query_of(reply: Response) -> str:
    return urlsplit(header(reply, "location") or "").query


# -- the SP's metadata --------------------------------------------------------------------


async def test_sp_metadata_names_the_single_logout_service(engine: Engine) -> None:
    xml = engine.sp_metadata_xml()
    for binding in ("HTTP-Redirect", "HTTP-POST"):
        assert re.search(
            rf'SingleLogoutService[^>]*Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}"'
            rf'[^>]*Location="{re.escape(SLS)}"'
            rf'|SingleLogoutService[^>]*Location="{re.escape(SLS)}"[^>]*{binding}',
            xml,
        ), binding


# -- SP-initiated -----------------------------------------------------------------------


async def test_sp_initiated_logout_round_trip(slo_engine: Engine, devidp: DevIdP) -> None:
    browser = await signed_in(slo_engine, devidp)
    user = (await browser.get("/dashboard")).user
    copied = dict(browser.cookies)
    out = await slo_engine.handle(
        request("POST", "/saml/logout/?next=/bye", cookies=browser.cookies)
    )
    assert isinstance(out, Response) and out.status == 303
    assert header(out, "set-cookie").startswith("saml_session=;")
    location = header(out, "location") or ""
    assert location.startswith(devidp.slo_url + "?")
    if slo_engine.settings.session.backend == "store":
        assert not await is_signed_in(slo_engine, copied)  # ended before the IdP answers

    info = devidp.parse_logout_request("redirect", raw_query=urlsplit(location).query)
    assert info.signed, "the SP has a key: its LogoutRequest is signed"
    assert info.name_id == "B.Simon@contoso.com"
    assert info.session_indexes == (user.session_index,)
    assert await slo_engine.store.get(f"logout:{info.request_id}") == {"next": "/bye"}

    answer = devidp.create_logout_response(info)
    done = await sls_get(slo_engine, answer.url)
    assert done.status == 303 and header(done, "location") == "/bye"
    assert header(done, "set-cookie").startswith("saml_session=;")
    assert await slo_engine.store.get(f"logout:{info.request_id}") is None

    again = await sls_get(slo_engine, answer.url)
    assert again.status == 403 and header(again, "x-saml-error") == "wrong_in_response_to"
    assert header(again, "location") is None


async def test_sp_without_a_key_sends_an_unsigned_request(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine()
    browser = await signed_in(engine, devidp)
    out = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    query = query_of(out)
    assert "Signature=" not in query and "SigAlg=" not in query
    info = devidp.parse_logout_request("redirect", raw_query=query)
    assert not info.signed
    done = await sls_get(engine, devidp.create_logout_response(info).url)
    assert done.status == 303 and header(done, "location") == "/"


def post_only_slo(metadata_xml: str) -> str:
    return re.sub(r"<[^<>]*SingleLogoutService[^>]*HTTP-Redirect[^>]*/>", "", metadata_xml, count=1)


def without_slo(metadata_xml: str) -> str:
    return re.sub(r"<[^<>]*SingleLogoutService[^>]*/>", "", metadata_xml)


async def test_sp_initiated_logout_over_http_post(
    make_engine: Callable[..., Engine], devidp: DevIdP, sp_keys: KeyPair
) -> None:
    key, cert = sp_keys.key_pem, sp_keys.cert_pem
    metadata = post_only_slo(devidp.metadata_xml())
    assert "HTTP-Redirect" in metadata and metadata.count("SingleLogoutService") == 1
    engine = make_engine(idp={"metadata_xml": metadata}, sp__key_pem=key, sp__cert_pem=cert)
    browser = await signed_in(engine, devidp)
    out = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    assert out.status == 200 and header(out, "set-cookie").startswith("saml_session=;")
    form = dict(re.findall(r"name='(\w+)' value='([^']*)'", out.body.decode()))
    assert f"action='{devidp.slo_url}'" in out.body.decode()
    info = devidp.parse_logout_request("post", saml_request=form["SAMLRequest"])
    assert info.signed  # an enveloped signature, verified by pysaml2 at the IdP
    answer = devidp.create_logout_response(info, binding="post")
    assert answer.form is not None
    done = await sls_post(engine, dict(answer.form))
    assert done.status == 303 and header(done, "location") == "/"


async def test_local_logout_when_the_idp_has_no_slo_endpoint(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(idp={"metadata_xml": without_slo(devidp.metadata_xml())})
    browser = await signed_in(engine, devidp)
    out = await engine.handle(request("POST", "/saml/logout/?next=/bye", cookies=browser.cookies))
    assert out.status == 303 and header(out, "location") == "/bye"
    assert header(out, "set-cookie").startswith("saml_session=;")


async def test_a_failed_logout_at_the_idp_still_signs_out_here(
    slo_engine: Engine, devidp: DevIdP
) -> None:
    browser = await signed_in(slo_engine, devidp)
    out = await slo_engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    info = devidp.parse_logout_request("redirect", raw_query=query_of(out))
    failed = await sls_get(slo_engine, devidp.create_logout_response(info, success=False).url)
    assert failed.status == 200 and b"could not sign you out everywhere" in failed.body
    assert b"Responder" in failed.body
    assert header(failed, "set-cookie").startswith("saml_session=;")


async def test_a_forged_logout_response_spoils_nothing(slo_engine: Engine, devidp: DevIdP) -> None:
    browser = await signed_in(slo_engine, devidp)
    out = await slo_engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    info = devidp.parse_logout_request("redirect", raw_query=query_of(out))
    genuine = devidp.create_logout_response(info).url
    attacker_key, _ = generate_key_pair("attacker")
    message = read_redirect_query(urlsplit(genuine).query)
    xml = decode_redirect_message(message.encoded, 100_000)
    forged = redirect_url(SLS, "SAMLResponse", xml, None, attacker_key)
    unsigned = redirect_url(SLS, "SAMLResponse", xml, None, None)
    for url in (forged, unsigned):
        refused = await sls_get(slo_engine, url)
        assert refused.status == 403 and header(refused, "x-saml-error") == "invalid_signature"
    # The outstanding request was not consumed by the forgeries.
    assert (await sls_get(slo_engine, genuine)).status == 303


async def test_unknown_in_response_to_is_refused(slo_engine: Engine, devidp: DevIdP) -> None:
    from saml_middleware.devidp import LogoutRequestInfo

    stranger = LogoutRequestInfo("_never-sent", sp_entity(slo_engine), "x@y", (), True)
    devidp.add_service_provider(slo_engine.sp_metadata_xml())
    refused = await sls_get(slo_engine, devidp.create_logout_response(stranger).url)
    assert refused.status == 403 and header(refused, "x-saml-error") == "wrong_in_response_to"


# -- IdP-initiated ----------------------------------------------------------------------


async def test_idp_initiated_logout_over_redirect(slo_engine: Engine, devidp: DevIdP) -> None:
    browser = await signed_in(slo_engine, devidp)
    other = await signed_in(slo_engine, devidp, "ajones")
    _, outbound = devidp.create_logout_request(
        sp_entity(slo_engine), "B.Simon@contoso.com", relay_state="idp-relay"
    )
    reply = await sls_get(slo_engine, outbound.url, cookies=browser.cookies)
    assert reply.status == 303
    assert header(reply, "set-cookie").startswith("saml_session=;")
    location = header(reply, "location") or ""
    assert location.startswith(devidp.slo_url + "?")
    answer = devidp.parse_logout_response("redirect", raw_query=urlsplit(location).query)
    assert answer.status == "Success" and answer.signed
    assert read_redirect_query(urlsplit(location).query).relay_state == "idp-relay"
    if slo_engine.settings.session.backend == "store":  # even a copy of the cookie is dead
        assert not await is_signed_in(slo_engine, browser.cookies)
    assert await is_signed_in(slo_engine, other.cookies)


async def test_idp_initiated_logout_over_post(slo_engine: Engine, devidp: DevIdP) -> None:
    browser = await signed_in(slo_engine, devidp)
    _, outbound = devidp.create_logout_request(
        sp_entity(slo_engine), "B.Simon@contoso.com", binding="post"
    )
    assert outbound.form is not None
    reply = await sls_post(slo_engine, dict(outbound.form), cookies=browser.cookies)
    assert reply.status == 200 and header(reply, "set-cookie").startswith("saml_session=;")
    form = dict(re.findall(r"name='(\w+)' value='([^']*)'", reply.body.decode()))
    answer = devidp.parse_logout_response("post", saml_response=form["SAMLResponse"])
    assert answer.status == "Success" and answer.signed


async def test_server_side_sessions_are_revoked_without_the_users_cookie(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(session__backend="store")
    laptop = await signed_in(engine, devidp)
    phone = await signed_in(engine, devidp)
    colleague = await signed_in(engine, devidp, "ajones")
    _, outbound = devidp.create_logout_request(sp_entity(engine), "B.Simon@contoso.com")
    reply = await sls_get(engine, outbound.url)  # a back channel, or another browser
    assert reply.status == 303
    assert header(reply, "set-cookie") is None  # this browser had no session to clear
    assert not await is_signed_in(engine, laptop.cookies)
    assert not await is_signed_in(engine, phone.cookies)
    assert await is_signed_in(engine, colleague.cookies)


async def test_a_session_index_ends_only_that_session(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(session__backend="store")
    laptop = await signed_in(engine, devidp)
    phone = await signed_in(engine, devidp)
    phone_index = (await phone.get("/dashboard")).user.session_index
    _, outbound = devidp.create_logout_request(
        sp_entity(engine), "B.Simon@contoso.com", session_indexes=[phone_index]
    )
    assert (await sls_get(engine, outbound.url, cookies=laptop.cookies)).status == 303
    assert await is_signed_in(engine, laptop.cookies)
    assert not await is_signed_in(engine, phone.cookies)


async def test_cookie_of_another_user_is_left_alone(slo_engine: Engine, devidp: DevIdP) -> None:
    other = await signed_in(slo_engine, devidp, "ajones")
    _, outbound = devidp.create_logout_request(sp_entity(slo_engine), "B.Simon@contoso.com")
    reply = await sls_get(slo_engine, outbound.url, cookies=other.cookies)
    assert reply.status == 303 and header(reply, "set-cookie") is None
    assert await is_signed_in(slo_engine, other.cookies)


# -- forged IdP-initiated requests (docs/security.md W7) ----------------------------------------


def logout_request_xml(
    *,
    issuer: str,
    name_id: str = "B.Simon@contoso.com",
    destination: str | None = SLS,
    issued: float | None = None,
    not_on_or_after: float | None = None,
    request_id: str | None = None,
) -> bytes:
    def instant(value: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))

    attributes = f'ID="{request_id or "_lr" + uuid.uuid4().hex}"'
    attributes += f' Version="2.0" IssueInstant="{instant(issued or time.time())}"'
    if destination is not None:
        attributes += f' Destination="{destination}"'
    if not_on_or_after is not None:
        attributes += f' NotOnOrAfter="{instant(not_on_or_after)}"'
    return (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
        f' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" {attributes}>'
        f"<saml:Issuer>{issuer}</saml:Issuer>"
        '<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">'
        f"{name_id}</saml:NameID></samlp:LogoutRequest>"
    ).encode()


async def assert_refused_and_nothing_ended(
    engine: Engine, browser: Browser, reply: Response, code: str
) -> None:
    assert reply.status in (400, 403), reply.status
    assert header(reply, "x-saml-error") == code
    assert header(reply, "location") is None and header(reply, "set-cookie") is None
    assert await is_signed_in(engine, browser.cookies)


async def test_w7a_unsigned_logout_request_is_refused(slo_engine: Engine, devidp: DevIdP) -> None:
    browser = await signed_in(slo_engine, devidp)
    _, outbound = devidp.create_logout_request(
        sp_entity(slo_engine), "B.Simon@contoso.com", sign=False, relay_state="https://evil.test/"
    )
    assert "Signature=" not in outbound.url
    reply = await sls_get(slo_engine, outbound.url, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "invalid_signature")


async def test_w7b_logout_request_signed_by_another_key_is_refused(
    slo_engine: Engine, devidp: DevIdP
) -> None:
    browser = await signed_in(slo_engine, devidp)
    attacker_key, _ = generate_key_pair("attacker")
    url = redirect_url(
        SLS, "SAMLRequest", logout_request_xml(issuer=devidp.entity_id), None, attacker_key
    )
    reply = await sls_get(slo_engine, url, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "invalid_signature")


async def test_w7c_a_valid_signature_with_another_issuer_is_refused(
    slo_engine: Engine, devidp: DevIdP
) -> None:
    browser = await signed_in(slo_engine, devidp)
    xml = logout_request_xml(issuer="https://evil.test/idp")
    url = redirect_url(SLS, "SAMLRequest", xml, None, devidp._key_pem)
    reply = await sls_get(slo_engine, url, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "wrong_issuer")


async def test_w7d_a_replayed_logout_request_is_refused(slo_engine: Engine, devidp: DevIdP) -> None:
    _, outbound = devidp.create_logout_request(sp_entity(slo_engine), "B.Simon@contoso.com")
    assert (await sls_get(slo_engine, outbound.url)).status == 303
    browser = await signed_in(slo_engine, devidp)  # signs in again afterwards
    reply = await sls_get(slo_engine, outbound.url, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "replay")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"destination": "https://other-app.example.test/saml/sls/"}, "wrong_destination"),
        ({"destination": None}, "wrong_destination"),
        ({"not_on_or_after": time.time() - 600}, "expired"),
        ({"issued": time.time() - 7200}, "expired"),
        ({"issued": time.time() + 3600}, "not_yet_valid"),
    ],
    ids=["w7e-destination", "no-destination", "w7f-expired", "too-old", "future"],
)
async def test_w7ef_misaddressed_or_stale_requests_are_refused(
    slo_engine: Engine, devidp: DevIdP, changes: dict[str, Any], code: str
) -> None:
    browser = await signed_in(slo_engine, devidp)
    xml = logout_request_xml(issuer=devidp.entity_id, **changes)
    url = redirect_url(SLS, "SAMLRequest", xml, None, devidp._key_pem)
    reply = await sls_get(slo_engine, url, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, code)


async def test_w7g_a_signed_assertion_wrapped_in_a_forged_request_is_refused(
    slo_engine: Engine, devidp: DevIdP
) -> None:
    browser = await signed_in(slo_engine, devidp)
    assertion = base64.b64decode(
        devidp.create_response("bsimon", sp_entity_id=sp_entity(slo_engine), in_response_to=None)
    ).decode()
    signed = etree.fromstring(assertion.encode()).find(f"{{{SAML}}}Assertion")
    assert signed is not None and signed.find(f"{{{DS}}}Signature") is not None
    xml = logout_request_xml(issuer=devidp.entity_id).decode()
    extension = f"<samlp:Extensions>{etree.tostring(signed).decode()}</samlp:Extensions>"
    wrapped = xml.replace("</saml:Issuer>", f"</saml:Issuer>{extension}")
    form = {"SAMLRequest": base64.b64encode(wrapped.encode()).decode()}
    reply = await sls_post(slo_engine, form, cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "invalid_signature")


async def test_w7g_a_post_request_whose_signature_covers_another_element_is_refused(
    slo_engine: Engine, devidp: DevIdP
) -> None:
    """A genuine signed LogoutRequest for someone else, its NameID swapped afterwards."""
    browser = await signed_in(slo_engine, devidp)
    _, outbound = devidp.create_logout_request(
        sp_entity(slo_engine), "A.Jones@contoso.com", binding="post"
    )
    assert outbound.form is not None
    xml = base64.b64decode(outbound.form["SAMLRequest"]).decode()
    swapped = xml.replace("A.Jones@contoso.com", "B.Simon@contoso.com")
    reply = await sls_post(
        slo_engine,
        {"SAMLRequest": base64.b64encode(swapped.encode()).decode()},
        cookies=browser.cookies,
    )
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "invalid_signature")


async def test_w7h_sha1_signatures_are_refused(slo_engine: Engine, devidp: DevIdP) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    browser = await signed_in(slo_engine, devidp)
    url = redirect_url(SLS, "SAMLRequest", logout_request_xml(issuer=devidp.entity_id), None, None)
    octets = f"{urlsplit(url).query}&SigAlg={quote(RSA_SHA1, safe='')}"
    key = serialization.load_pem_private_key(devidp._key_pem.encode(), password=None)
    signature = key.sign(octets.encode(), padding.PKCS1v15(), hashes.SHA1())  # type: ignore[union-attr]
    query = f"{octets}&Signature={quote(base64.b64encode(signature).decode(), safe='')}"
    reply = await sls_get(slo_engine, f"/saml/sls/?{query}", cookies=browser.cookies)
    await assert_refused_and_nothing_ended(slo_engine, browser, reply, "invalid_signature")


async def test_unsigned_messages_pass_only_when_allowed(
    make_engine: Callable[..., Engine], devidp: DevIdP
) -> None:
    engine = make_engine(security__want_logout_signed=False)
    browser = await signed_in(engine, devidp)
    _, outbound = devidp.create_logout_request(sp_entity(engine), "B.Simon@contoso.com", sign=False)
    reply = await sls_get(engine, outbound.url, cookies=browser.cookies)
    assert reply.status == 303 and header(reply, "set-cookie").startswith("saml_session=;")


# -- no 500, whatever arrives ---------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/saml/sls/",
        "/saml/sls/?SAMLRequest=",
        "/saml/sls/?SAMLRequest=%%%",
        "/saml/sls/?SAMLRequest=AAAA",
        "/saml/sls/?SAMLResponse=" + quote(base64.b64encode(b"not deflate").decode()),
        "/saml/sls/?SAMLRequest=" + quote(base64.b64encode(b"\x00" * 64).decode()),
        "/saml/sls/?SAMLRequest=a&SAMLRequest=b",
        "/saml/sls/?SAMLRequest=a&SigAlg=x&Signature=***",
        "/saml/sls/?" + "x=1&" * 5000,
        "/saml/sls/?SAMLRequest=" + "A" * 600_000,
    ],
    ids=lambda target: target[:60],
)
async def test_garbage_at_the_sls_is_a_4xx(engine: Engine, target: str) -> None:
    reply = await engine.handle(request("GET", target))
    assert isinstance(reply, Response) and 400 <= reply.status < 500, reply.status


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"SAMLRequest": "", "SAMLResponse": ""},
        {"SAMLRequest": "!!!"},
        {"SAMLResponse": base64.b64encode(b"<x/>").decode()},
        {"SAMLRequest": base64.b64encode(b"<?xml version='1.0'?><!DOCTYPE x><x/>").decode()},
        {
            "SAMLRequest": base64.b64encode(logout_request_xml(issuer="x")).decode(),
            "RelayState": "r" * 5000,
        },
    ],
    ids=["empty", "both", "not-base64", "not-saml", "dtd", "long-relay-state"],
)
async def test_garbage_posted_to_the_sls_is_a_4xx(engine: Engine, form: dict[str, str]) -> None:
    reply = await engine.handle(request("POST", "/saml/sls/", form=form))
    assert isinstance(reply, Response) and 400 <= reply.status < 500, reply.status


async def test_other_methods_at_the_sls_are_405(engine: Engine) -> None:
    reply = await engine.handle(request("PUT", "/saml/sls/"))
    assert isinstance(reply, Response) and reply.status == 405


def test_a_logout_request_decodes_as_sent(devidp: DevIdP, make_engine) -> None:
    engine = make_engine()
    _, outbound = devidp.create_logout_request(sp_entity(engine), "B.Simon@contoso.com")
    query = parse_qs(urlsplit(outbound.url).query)
    xml = decode_redirect_message(query["SAMLRequest"][0], 100_000)
    assert inspect_logout_request(xml).name_id == "B.Simon@contoso.com"


async def test_a_logout_request_that_cannot_be_built_still_signs_out_locally(
    slo_engine: Engine, devidp: DevIdP, monkeypatch: pytest.MonkeyPatch
) -> None:
    import saml_middleware.logout as logout_module

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("pysaml2 failed")

    monkeypatch.setattr(logout_module, "build_logout_request", broken)
    browser = await signed_in(slo_engine, devidp)
    out = await slo_engine.handle(
        request("POST", "/saml/logout/?next=/bye", cookies=browser.cookies)
    )
    assert isinstance(out, Response) and out.status == 303
    assert header(out, "location") == "/bye"
    assert header(out, "set-cookie").startswith("saml_session=;")


async def test_store_down_at_sign_out_means_local_logout(
    make_engine: Callable[..., Engine], devidp: DevIdP, own_redis: Any
) -> None:
    engine = make_engine(
        store={"backend": "redis", "url": own_redis.url, "connect_timeout_seconds": 0.5}
    )
    browser = await signed_in(engine, devidp)
    own_redis.stop()
    out = await engine.handle(request("POST", "/saml/logout/", cookies=browser.cookies))
    assert isinstance(out, Response) and out.status == 303 and header(out, "location") == "/"
    assert header(out, "set-cookie").startswith("saml_session=;")
