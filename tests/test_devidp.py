"""The development IdP against an independent SP: pysaml2's own `Saml2Client`.

Each signed response costs one `xmlsec1` run (~40 ms), so the IdP and the SPs
are built once per module.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.attribute_converter import AttributeConverter
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from starlette.applications import Starlette
from starlette.routing import Mount

from saml_middleware import claims
from saml_middleware.devidp import DEFAULT_USERS, DevIdP, DevIdPError, DevUser, create_app
from saml_middleware.devidp.users import load_users
from saml_middleware.keys import certificate_body, generate_key_pair

IDP_ORIGIN = "http://127.0.0.1:8000"
IDP_BASE = f"{IDP_ORIGIN}/idp"
SP_ENTITY = "http://sp.example.test/saml/metadata/"
SP_ACS = "http://sp.example.test/saml/acs/"
SIGNED_SP_ENTITY = "http://signed-sp.example.test/saml/metadata/"
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
ENTRA_CLAIMS = [
    claims.ENTRA_EMAIL,
    claims.ENTRA_GIVEN_NAME,
    claims.ENTRA_SURNAME,
    claims.ENTRA_UPN,
    claims.ENTRA_OBJECT_ID,
    claims.ENTRA_TENANT_ID,
    claims.ENTRA_DISPLAY_NAME,
    claims.ENTRA_IDENTITY_PROVIDER,
    claims.ENTRA_AUTHN_METHODS,
    claims.ENTRA_ROLE,
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- an independent SP ------------------------------------------------------------------


def _sp(idp: DevIdP, entity_id: str, acs: str, key_dir: Path | None = None) -> Saml2Client:
    config: dict[str, Any] = {
        "entityid": entity_id,
        "metadata": {"inline": [idp.metadata_xml()]},
        "allow_unknown_attributes": True,
        "accepted_time_diff": 5,
        "service": {
            "sp": {
                "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                "want_assertions_signed": True,
                "want_response_signed": False,
                "allow_unsolicited": True,
                "name_id_format": [saml.NAMEID_FORMAT_EMAILADDRESS],
            }
        },
    }
    if key_dir is not None:
        key_pem, cert_pem = generate_key_pair("test sp")
        (key_dir / "sp.key").write_text(key_pem)
        (key_dir / "sp.crt").write_text(cert_pem)
        config["key_file"] = str(key_dir / "sp.key")
        config["cert_file"] = str(key_dir / "sp.crt")
        config["service"]["sp"]["authn_requests_signed"] = True
    sp_config = SPConfig()
    sp_config.load(config)
    # pysaml2's default maps rename claim URIs sent without NameFormat (read as
    # "unspecified") through its ADFS map (…/givenname -> givenName): keep names as sent.
    keep = AttributeConverter(saml.NAME_FORMAT_UNSPECIFIED)
    keep._fro, keep._to = {}, {}
    sp_config.attribute_converters = [keep]
    return Saml2Client(sp_config)


def _sp_metadata(client: Saml2Client) -> str:
    return str(entity_descriptor(client.config))


@pytest.fixture(scope="module")
def idp() -> DevIdP:
    return DevIdP(IDP_BASE)


@pytest.fixture(scope="module")
def sp(idp: DevIdP) -> Saml2Client:
    client = _sp(idp, SP_ENTITY, SP_ACS)
    assert idp.add_service_provider(_sp_metadata(client)) == SP_ENTITY
    return client


@pytest.fixture(scope="module")
def signed_sp(idp: DevIdP, tmp_path_factory: pytest.TempPathFactory) -> Saml2Client:
    client = _sp(
        idp, SIGNED_SP_ENTITY, "http://signed-sp.example.test/acs", tmp_path_factory.mktemp("sp")
    )
    idp.add_service_provider(_sp_metadata(client))
    return client


def _redirect_request(client: Saml2Client, relay_state: str = "") -> tuple[str, dict[str, str]]:
    request_id, info = client.prepare_for_authenticate(
        entityid=f"{IDP_BASE}/metadata", binding=BINDING_HTTP_REDIRECT, relay_state=relay_state
    )
    query = parse_qs(urlsplit(dict(info["headers"])["Location"]).query)
    return request_id, {k: v[0] for k, v in query.items()}


def _xml(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


def _sp_accepts(client: Saml2Client, saml_response: str, request_id: str | None) -> Any:
    outstanding = {request_id: "/"} if request_id else {}
    result = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding)
    assert result is not None
    return result


def _instant(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


# -- keys and users ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_generate_key_pair_gives_pkcs8_key_and_self_signed_cert(kind: str) -> None:
    key_pem, cert_pem = generate_key_pair("unit test", kind=kind, days=30)
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.subject == cert.issuer
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    body = certificate_body(cert_pem)
    assert "\n" not in body
    assert x509.load_der_x509_certificate(base64.b64decode(body)) == cert


def test_generate_key_pair_and_certificate_body_refuse_bad_input() -> None:
    with pytest.raises(ValueError):
        generate_key_pair("x", kind="dsa")
    with pytest.raises(ValueError):
        certificate_body("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")


def test_default_users_are_entra_shaped() -> None:
    users = {u.key: u for u in DEFAULT_USERS}
    bsimon = users["bsimon"]
    assert bsimon.name_id == "B.Simon@contoso.com"
    assert bsimon.claims[claims.ENTRA_ROLE] == ["admins"]
    assert set(ENTRA_CLAIMS) <= set(bsimon.claims)
    tenant = bsimon.claims[claims.ENTRA_TENANT_ID][0]
    assert bsimon.claims[claims.ENTRA_IDENTITY_PROVIDER] == [f"https://sts.windows.net/{tenant}/"]
    assert users["ajones"].claims[claims.ENTRA_ROLE] == ["developers"]
    norole = users["cnoroles"]
    assert claims.ENTRA_ROLE not in norole.claims and claims.ENTRA_EMAIL not in norole.claims
    assert norole.claims[claims.ENTRA_UPN] == ["C.Norole@contoso.com"]


def test_load_users(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            [
                {
                    "key": "x",
                    "name_id": "x@example.com",
                    "display": "X",
                    "claims": {"role": "a", "groups": ["g1", "g2"]},
                }
            ]
        )
    )
    assert load_users(path) == [
        DevUser("x", "x@example.com", "X", {"role": ["a"], "groups": ["g1", "g2"]})
    ]
    path.write_text(json.dumps([{"key": "x", "name_id": "a"}, {"key": "x", "name_id": "b"}]))
    with pytest.raises(ValueError, match="duplicate"):
        load_users(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_users(path)


# -- metadata ------------------------------------------------------------------------------


def test_metadata_describes_the_idp(idp: DevIdP) -> None:
    root = etree.fromstring(idp.metadata_xml().encode())
    assert root.tag == f"{{{NS['md']}}}EntityDescriptor"
    assert root.get("entityID") == f"{IDP_BASE}/metadata" == idp.entity_id
    idpsso = root.find("md:IDPSSODescriptor", NS)
    assert idpsso is not None
    cert = idpsso.findtext("md:KeyDescriptor[@use='signing']//ds:X509Certificate", None, NS)
    assert cert is not None and cert.strip() == certificate_body(idp.cert_pem)
    sso = {
        e.get("Binding"): e.get("Location") for e in idpsso.findall("md:SingleSignOnService", NS)
    }
    assert sso == {
        BINDING_HTTP_REDIRECT: f"{IDP_BASE}/sso/redirect",
        BINDING_HTTP_POST: f"{IDP_BASE}/sso/post",
    }
    slo = idpsso.find("md:SingleLogoutService", NS)
    assert slo is not None and slo.get("Location") == f"{IDP_BASE}/slo"


# -- the protocol ----------------------------------------------------------------------------


def test_sp_initiated_round_trip_is_entra_shaped(idp: DevIdP, sp: Saml2Client) -> None:
    request_id, query = _redirect_request(sp)
    info = idp.parse_authn_request(query["SAMLRequest"], "redirect")
    assert (info.request_id, info.sp_entity_id, info.acs_url, info.signed) == (
        request_id,
        SP_ENTITY,
        SP_ACS,
        False,
    )
    saml_response = idp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )

    result = _sp_accepts(sp, saml_response, request_id)
    assert result.name_id.text == "B.Simon@contoso.com"
    assert result.name_id.format == saml.NAMEID_FORMAT_EMAILADDRESS
    identity = result.get_identity()
    assert set(ENTRA_CLAIMS) <= set(identity)
    assert identity[claims.ENTRA_ROLE] == ["admins"]
    assert identity[claims.ENTRA_DISPLAY_NAME] == ["B.Simon"]

    root = _xml(saml_response)
    assert root.get("InResponseTo") == request_id and root.get("Destination") == SP_ACS
    attributes = root.findall(".//saml:Attribute", NS)
    assert {a.get("Name") for a in attributes} == set(ENTRA_CLAIMS)
    assert all(a.get("NameFormat") is None for a in attributes)
    xsi_type = "{http://www.w3.org/2001/XMLSchema-instance}type"
    assert all(v.get(xsi_type) is None for v in root.iterfind(".//saml:AttributeValue", NS))
    # Signed assertion, RSA-SHA256 and SHA-256 (pysaml2's default would be SHA-1).
    assert root.find("saml:Assertion/ds:Signature", NS) is not None
    assert root.find("ds:Signature", NS) is None
    methods = {e.get("Algorithm") for e in root.iterfind(".//ds:SignatureMethod", NS)}
    digests = {e.get("Algorithm") for e in root.iterfind(".//ds:DigestMethod", NS)}
    assert methods == {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"}
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha256"}
    assert b"sha1" not in base64.b64decode(saml_response)

    statement = root.find(".//saml:AuthnStatement", NS)
    assert statement is not None and statement.get("SessionIndex")
    assert statement.findtext(".//saml:AuthnContextClassRef", None, NS) == saml.AUTHN_PASSWORD
    confirmation = root.find(".//saml:SubjectConfirmation", NS)
    assert confirmation is not None and confirmation.get("Method") == saml.SCM_BEARER
    data = confirmation.find("saml:SubjectConfirmationData", NS)
    assert data is not None
    assert data.get("Recipient") == SP_ACS and data.get("InResponseTo") == request_id
    issued = _instant(root.get("IssueInstant") or "")
    lifetime = _instant(data.get("NotOnOrAfter") or "") - issued
    assert datetime.timedelta(minutes=5) <= lifetime <= datetime.timedelta(minutes=15)
    conditions = root.find(".//saml:Conditions", NS)
    assert conditions is not None
    assert conditions.findtext(".//saml:Audience", None, NS) == SP_ENTITY


def test_user_without_email_or_role_gets_neither_claim(idp: DevIdP, sp: Saml2Client) -> None:
    saml_response = idp.create_response("cnoroles", sp_entity_id=SP_ENTITY, in_response_to=None)
    identity = _sp_accepts(sp, saml_response, None).get_identity()
    assert claims.ENTRA_EMAIL not in identity and claims.ENTRA_ROLE not in identity
    assert identity[claims.ENTRA_UPN] == ["C.Norole@contoso.com"]


def test_unsolicited_response_has_no_in_response_to(idp: DevIdP, sp: Saml2Client) -> None:
    saml_response = idp.create_response("ajones", sp_entity_id=SP_ENTITY, in_response_to=None)
    root = _xml(saml_response)
    assert root.get("InResponseTo") is None
    data = root.find(".//saml:SubjectConfirmationData", NS)
    assert data is not None and data.get("InResponseTo") is None
    assert data.get("Recipient") == SP_ACS and root.get("Destination") == SP_ACS
    result = _sp_accepts(sp, saml_response, None)
    assert result.get_identity()[claims.ENTRA_ROLE] == ["developers"]


def test_signed_response_option_signs_both(idp: DevIdP, sp: Saml2Client) -> None:
    saml_response = idp.create_response(
        "bsimon", sp_entity_id=SP_ENTITY, in_response_to=None, sign_response=True
    )
    root = _xml(saml_response)
    assert root.find("ds:Signature", NS) is not None
    assert root.find("saml:Assertion/ds:Signature", NS) is not None
    _sp_accepts(sp, saml_response, None)


def test_signed_requests_are_verified(idp: DevIdP, signed_sp: Saml2Client) -> None:
    _, query = _redirect_request(signed_sp, relay_state="/next")
    assert "Signature" in query
    info = idp.parse_authn_request(
        query["SAMLRequest"],
        "redirect",
        relay_state=query["RelayState"],
        sig_alg=query["SigAlg"],
        signature=query["Signature"],
    )
    assert info.signed and info.sp_entity_id == SIGNED_SP_ENTITY
    with pytest.raises(DevIdPError, match="signature"):
        idp.parse_authn_request(
            query["SAMLRequest"],
            "redirect",
            relay_state="/elsewhere",
            sig_alg=query["SigAlg"],
            signature=query["Signature"],
        )

    request_id, post = signed_sp.create_authn_request(
        f"{IDP_BASE}/sso/post", binding=BINDING_HTTP_POST, sign=True
    )
    encoded = base64.b64encode(str(post).encode()).decode()
    info = idp.parse_authn_request(encoded, "post")
    assert info.signed and info.request_id == request_id


def _deflated(xml: str) -> str:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(compressor.compress(xml.encode()) + compressor.flush()).decode()


@pytest.mark.parametrize(
    "saml_request",
    [
        "not base64 at all!",
        base64.b64encode(b"not deflated").decode(),
        _deflated("<not-saml/>"),
        _deflated("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"),
        _deflated("a" * 2_000_000),  # inflates far past the limit
    ],
)
def test_garbage_requests_are_refused(idp: DevIdP, sp: Saml2Client, saml_request: str) -> None:
    with pytest.raises(DevIdPError):
        idp.parse_authn_request(saml_request, "redirect")


def test_request_checks(idp: DevIdP, sp: Saml2Client) -> None:
    other = _sp(idp, "http://unknown-sp.example.test/", "http://unknown-sp.example.test/acs")
    _, query = _redirect_request(other)
    with pytest.raises(DevIdPError, match="unknown service provider"):
        idp.parse_authn_request(query["SAMLRequest"], "redirect")

    # An ACS URL not in the SP's metadata (Entra's AADSTS50011).
    _, request = sp.create_authn_request(
        f"{IDP_BASE}/sso/post",
        binding=BINDING_HTTP_POST,
        assertion_consumer_service_url="https://evil.example.test/acs",
    )
    with pytest.raises(DevIdPError, match="AssertionConsumerServiceURL"):
        idp.parse_authn_request(base64.b64encode(str(request).encode()).decode(), "post")
    with pytest.raises(DevIdPError):
        idp.parse_authn_request("x", "artifact")
    with pytest.raises(DevIdPError, match="unknown user"):
        idp.create_response("nobody", sp_entity_id=SP_ENTITY, in_response_to=None)
    with pytest.raises(DevIdPError, match="unknown service provider"):
        idp.create_response("bsimon", sp_entity_id="http://nope/", in_response_to=None)


def test_service_providers_replace_and_lazy_sources() -> None:
    key_pem, cert_pem = generate_key_pair("lazy test")
    idp = DevIdP(IDP_BASE, key_pem=key_pem, cert_pem=cert_pem)
    first = _sp_metadata(_sp(idp, SP_ENTITY, "http://sp.example.test/old-acs"))
    idp.add_service_provider(first)
    idp.add_service_provider(_sp_metadata(_sp(idp, SP_ENTITY, SP_ACS)))
    assert idp.service_providers() == [(SP_ENTITY, SP_ACS)]
    with pytest.raises(DevIdPError):
        idp.add_service_provider("<nonsense")

    calls: list[int] = []
    later = _sp_metadata(_sp(idp, "http://later.example.test/", "http://later.example.test/acs"))

    def source() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("SP not serving yet")
        return later

    idp.add_service_provider_source(source)
    assert calls == []
    assert idp.service_providers() == [(SP_ENTITY, SP_ACS)]  # first call fails: retried later
    assert ("http://later.example.test/", "http://later.example.test/acs") in (
        idp.service_providers()
    )
    idp.service_providers()
    assert len(calls) == 2


# -- the web app -----------------------------------------------------------------------------


@pytest.fixture
def client(idp: DevIdP, sp: Saml2Client) -> Iterator[httpx.AsyncClient]:
    app = Starlette(routes=[Mount("/idp", app=create_app(idp))])
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=IDP_ORIGIN)


def _hidden_fields(page: str) -> dict[str, str]:
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in fields}


def _form_action(page: str) -> str:
    match = re.search(r'<form[^>]* action="([^"]+)"', page)
    assert match is not None
    return html.unescape(match.group(1))


@pytest.mark.anyio
async def test_app_serves_metadata(client: httpx.AsyncClient, idp: DevIdP) -> None:
    reply = await client.get("/idp/metadata")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/samlmetadata+xml")
    assert reply.text == idp.metadata_xml()


@pytest.mark.anyio
async def test_app_sp_initiated_flow(client: httpx.AsyncClient, sp: Saml2Client) -> None:
    request_id, query = _redirect_request(sp, relay_state="/after?x=1")
    page = await client.get("/idp/sso/redirect", params=query)
    assert page.status_code == 200
    assert "Development IdP \u2014 not for production" in page.text
    assert "Sign in as B.Simon" in page.text and "Sign in as C.Norole" in page.text
    assert SP_ENTITY in page.text and "admins" in page.text
    token = _hidden_fields(page.text)["token"]
    assert _form_action(page.text) == f"{IDP_BASE}/sso/continue"

    answer = await client.post("/idp/sso/continue", data={"token": token, "user": "bsimon"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert _form_action(answer.text) == SP_ACS
    fields = _hidden_fields(answer.text)
    assert fields["RelayState"] == "/after?x=1"
    assert "<noscript>" in answer.text and 'type="submit">Continue' in answer.text
    assert "document.forms[0].submit()" in answer.text
    result = _sp_accepts(sp, fields["SAMLResponse"], request_id)
    assert result.name_id.text == "B.Simon@contoso.com"

    again = await client.post("/idp/sso/continue", data={"token": token, "user": "bsimon"})
    assert again.status_code == 400 and "expired or was already used" in again.text


@pytest.mark.anyio
async def test_app_post_binding_sign_in_page(client: httpx.AsyncClient, sp: Saml2Client) -> None:
    _, request = sp.create_authn_request(f"{IDP_BASE}/sso/post", binding=BINDING_HTTP_POST)
    encoded = base64.b64encode(str(request).encode()).decode()
    page = await client.post("/idp/sso/post", data={"SAMLRequest": encoded})
    assert page.status_code == 200 and "Sign in as A.Jones" in page.text


@pytest.mark.anyio
async def test_app_my_apps_idp_initiated(client: httpx.AsyncClient, sp: Saml2Client) -> None:
    page = await client.get("/idp/")
    assert page.status_code == 200 and "My Apps" in page.text
    assert SP_ENTITY in page.text and SP_ACS in page.text
    assert f'action="{IDP_BASE}/initiate"' in page.text

    answer = await client.post(
        "/idp/initiate", data={"sp": SP_ENTITY, "user": "ajones", "RelayState": "/dash"}
    )
    assert answer.status_code == 200 and _form_action(answer.text) == SP_ACS
    fields = _hidden_fields(answer.text)
    assert fields["RelayState"] == "/dash"
    assert _xml(fields["SAMLResponse"]).get("InResponseTo") is None
    _sp_accepts(sp, fields["SAMLResponse"], None)

    refused = await client.post("/idp/initiate", data={"sp": "http://nope/", "user": "ajones"})
    assert refused.status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/idp/sso/redirect", {"params": {"SAMLRequest": "garbage!!"}}, 400),
        ("GET", "/idp/sso/redirect", {}, 400),
        ("POST", "/idp/sso/post", {"data": {"SAMLRequest": _deflated("<x/>")}}, 400),
        ("POST", "/idp/sso/continue", {"data": {"token": "nope", "user": "bsimon"}}, 400),
        ("POST", "/idp/sso/continue", {"data": {"user": "bsimon"}}, 400),
        (
            "POST",
            "/idp/sso/continue",
            {"content": b"\xff" * 10, "headers": {"content-type": "multipart/form-data"}},
            400,
        ),
        ("GET", "/idp/sso/continue", {}, 405),
        ("GET", "/idp/nowhere", {}, 404),
    ],
)
async def test_app_bad_input_gets_a_short_page(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    reply = await client.request(method, path, **kwargs)
    assert reply.status_code == status
    assert "not for production" in reply.text and "Traceback" not in reply.text


@pytest.mark.anyio
async def test_app_slo_placeholder(client: httpx.AsyncClient) -> None:
    reply = await client.get("/idp/slo")
    assert reply.status_code == 200 and "signed out of the development IdP" in reply.text


@pytest.mark.anyio
async def test_app_served_alone(idp: DevIdP) -> None:
    alone = DevIdP("http://127.0.0.1:9000", key_pem=None, cert_pem=None)
    app = create_app(alone)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9000"
    ) as http:
        reply = await http.get("/metadata")
        assert (
            reply.status_code == 200 and 'entityID="http://127.0.0.1:9000/metadata"' in reply.text
        )
        page = await http.get("/")
        assert page.status_code == 200 and "No service providers" in page.text


def test_ec_key_signs_with_ecdsa_sha256() -> None:
    key_pem, cert_pem = generate_key_pair("ec idp", kind="ec")
    idp = DevIdP(IDP_BASE, key_pem=key_pem, cert_pem=cert_pem)
    sp = _sp(idp, SP_ENTITY, SP_ACS)
    idp.add_service_provider(_sp_metadata(sp))
    saml_response = idp.create_response("bsimon", sp_entity_id=SP_ENTITY, in_response_to=None)
    method = _xml(saml_response).find(".//ds:SignatureMethod", NS)
    assert method is not None
    assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    _sp_accepts(sp, saml_response, None)
