"""IdP configuration seen through a login: rollover, metadata URL refresh, POST
binding, manual (Entra "Certificate (Base64)") configuration, signed requests,
and the SP metadata document."""

from __future__ import annotations

import copy
import http.server
import logging
import threading
from collections.abc import Iterator
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

import pytest
import saml2.data.schemas
from lxml import etree
from saml2.xml.schema import _create_xml_schema_validator

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, Response
from saml_middleware.keys import certificate_body
from tests.helpers import Browser, header, remember_cookies, request, settings_for

pytestmark = pytest.mark.anyio

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
IDP_URL = "https://idp.example.test/idp"


@pytest.fixture(scope="module")
def new_key_idp() -> DevIdP:
    """The same IdP (entity ID, endpoints) after a signing-key rollover."""
    return DevIdP(IDP_URL)


def with_certs(metadata_xml: str, *cert_pems: str) -> str:
    """The IdP metadata with its signing KeyDescriptors replaced by `cert_pems`."""
    root = etree.fromstring(metadata_xml.encode())
    descriptor = root.find(f"{{{MD}}}IDPSSODescriptor")
    keys = descriptor.findall(f"{{{MD}}}KeyDescriptor")
    template = keys[0]
    for key in keys:
        descriptor.remove(key)
    for position, pem in enumerate(cert_pems):
        key = copy.deepcopy(template)
        key.find(f".//{{{DS}}}X509Certificate").text = certificate_body(pem)
        descriptor.insert(position, key)
    return etree.tostring(root).decode()


def unsolicited(idp: DevIdP, engine: Engine, user: str = "bsimon") -> str:
    idp.add_service_provider(engine.sp_metadata_xml())
    return idp.create_response(user, sp_entity_id=engine.settings.sp.entity_id, in_response_to=None)


async def test_rollover_metadata_accepts_either_signing_certificate(devidp, new_key_idp):
    both = with_certs(devidp.metadata_xml(), devidp.cert_pem, new_key_idp.cert_pem)
    engine = Engine(settings_for(devidp, idp={"metadata_xml": both}))
    for idp in (devidp, new_key_idp):
        reply = await Browser(engine, idp).post_acs(unsolicited(idp, engine))
        assert reply.status == 303, header(reply, "x-saml-error")


async def test_signature_from_a_key_not_in_metadata_is_refused(devidp, new_key_idp):
    engine = Engine(settings_for(devidp))  # metadata lists only the old key
    browser = Browser(engine, new_key_idp)
    reply = await browser.post_acs(unsolicited(new_key_idp, engine))
    assert reply.status == 403
    assert header(reply, "x-saml-error") in ("invalid_signature", "untrusted_key")
    assert not browser.cookies


class MetadataServer:
    """Serves IdP metadata on 127.0.0.1; `document=None` answers 500."""

    def __init__(self, document: str) -> None:
        self.document: str | None = document
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                if outer.document is None:
                    self.send_error(500)
                    return
                body = outer.document.encode()
                self.send_response(200)
                self.send_header("content-type", "application/samlmetadata+xml")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/federationmetadata.xml"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MetadataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata_server(devidp) -> Iterator[MetadataServer]:
    with MetadataServer(devidp.metadata_xml()) as server:
        yield server


async def test_metadata_url_refresh_picks_up_a_key_rollover(
    devidp, new_key_idp, metadata_server, caplog
):
    engine = Engine(settings_for(devidp, idp={"metadata_url": metadata_server.url}))
    assert metadata_server.hits == 1
    # Before the refresh, a response signed with the new key is refused...
    refused = await Browser(engine, new_key_idp).post_acs(unsolicited(new_key_idp, engine))
    assert refused.status == 403
    # ...the IdP publishes its new key, and after the refresh it signs in.
    metadata_server.document = with_certs(devidp.metadata_xml(), new_key_idp.cert_pem)
    engine.metadata.invalidate()
    ok = await Browser(engine, new_key_idp).post_acs(unsolicited(new_key_idp, engine))
    assert ok.status == 303
    assert metadata_server.hits == 2
    # The IdP's metadata endpoint fails: the last good copy keeps serving, with a warning.
    metadata_server.document = None
    engine.metadata.invalidate()
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        still = await Browser(engine, new_key_idp).post_acs(unsolicited(new_key_idp, engine))
    assert still.status == 303
    assert metadata_server.hits == 3
    assert any(
        r.levelno == logging.WARNING and "metadata" in r.getMessage() for r in caplog.records
    )


def test_unreachable_metadata_url_at_start_up_names_the_key(devidp):
    from saml_middleware.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Engine(settings_for(devidp, idp={"metadata_url": "http://127.0.0.1:9/none.xml"}))
    assert err.value.key == "idp.metadata_url"


async def test_manual_configuration_from_entra_certificate_base64(devidp):
    """Contentstack style: SSO URL + the Base64 certificate pasted from Entra."""
    engine = Engine(
        settings_for(
            devidp,
            idp={
                "entity_id": devidp.entity_id,
                "sso_url": devidp.sso_redirect_url,
                "x509cert": certificate_body(devidp.cert_pem),
            },
        )
    )
    assert (await Browser(engine, devidp).post_acs(unsolicited(devidp, engine))).status == 303
    assert (await Browser(engine, devidp).login()).status == 303


def only_post_sso(metadata_xml: str) -> str:
    root = etree.fromstring(metadata_xml.encode())
    for sso in root.iter(f"{{{MD}}}SingleSignOnService"):
        if sso.get("Binding").endswith("HTTP-Redirect"):
            sso.getparent().remove(sso)
    return etree.tostring(root).decode()


async def test_post_binding_when_the_idp_offers_only_post(devidp):
    engine = Engine(
        settings_for(devidp, idp={"metadata_xml": only_post_sso(devidp.metadata_xml())})
    )
    devidp.add_service_provider(engine.sp_metadata_xml())
    reply = await engine.handle(request("GET", "/saml/login/?next=/x"))
    assert isinstance(reply, Response) and reply.status == 200
    html = etree.HTML(reply.body)
    form = html.find(".//form")
    assert form.get("action") == devidp.sso_post_url and form.get("method") == "post"
    fields = {i.get("name"): i.get("value") for i in form.iter("input")}
    info = devidp.parse_authn_request(fields["SAMLRequest"], "post")
    response = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    browser = Browser(engine, devidp)
    remember_cookies(browser.cookies, reply)  # the login binding set with the auto-post page
    acs = await browser.post_acs(response, fields["RelayState"])
    assert acs.status == 303 and header(acs, "location") == "/x"


async def test_signed_authn_request_over_redirect(devidp, sp_keys):
    key_pem, cert_pem = sp_keys.key_pem, sp_keys.cert_pem
    engine = Engine(
        settings_for(
            devidp, sp={"key_pem": key_pem, "cert_pem": cert_pem, "sign_authn_requests": True}
        )
    )
    devidp.add_service_provider(engine.sp_metadata_xml())
    reply = await engine.handle(request("GET", "/saml/login/"))
    query = parse_qs(urlsplit(header(reply, "location")).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert query["Signature"][0]
    info = devidp.parse_authn_request(
        query["SAMLRequest"][0],
        "redirect",
        relay_state=query["RelayState"][0],
        sig_alg=query["SigAlg"][0],
        signature=query["Signature"][0],
    )
    assert info.signed


def test_sp_metadata_is_schema_valid_and_complete(devidp, sp_keys):
    key_pem, cert_pem = sp_keys.key_pem, sp_keys.cert_pem
    engine = Engine(
        settings_for(
            devidp, sp={"key_pem": key_pem, "cert_pem": cert_pem, "sign_authn_requests": True}
        )
    )
    xml = engine.sp_metadata_xml()
    schema = files(saml2.data.schemas).joinpath("saml-schema-metadata-2.0.xsd")
    _create_xml_schema_validator(str(schema)).validate(xml)
    root = etree.fromstring(xml.encode())
    assert root.get("entityID") == "https://app.example.test/saml/metadata/"
    sp = root.find(f"{{{MD}}}SPSSODescriptor")
    assert sp.get("AuthnRequestsSigned") == "true"
    acs = sp.find(f"{{{MD}}}AssertionConsumerService")
    assert acs.get("Location") == "https://app.example.test/saml/acs/"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    assert sp.findtext(f"{{{MD}}}NameIDFormat") == (
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    )
    certs = {c.text.strip() for c in root.iter(f"{{{DS}}}X509Certificate")}
    assert certs == {certificate_body(cert_pem)}
    assert "PRIVATE" not in xml


async def test_metadata_endpoint_serves_the_document(engine):
    reply = await engine.handle(request("GET", "/saml/metadata/"))
    assert reply.status == 200
    assert header(reply, "content-type").startswith("application/samlmetadata+xml")
    assert etree.fromstring(reply.body).get("entityID") == engine.settings.sp.entity_id


def entra_shaped(metadata_xml: str, wsfed_cert_pem: str) -> str:
    """`metadata_xml` dressed as Entra publishes it: an ID and an enveloped Signature on
    the EntityDescriptor, and both WS-Fed RoleDescriptors (holding `wsfed_cert_pem`)
    beside the IDPSSODescriptor."""
    from tests.fixtures_metadata import entra_entity

    entra = etree.fromstring(entra_entity([certificate_body(wsfed_cert_pem)]).encode())
    root = etree.fromstring(metadata_xml.encode())
    root.set("ID", "_" + "5" * 32)
    extras = [entra.find(f"{{{DS}}}Signature"), *entra.findall(f"{{{MD}}}RoleDescriptor")]
    for position, element in enumerate(extras):
        root.insert(position, copy.deepcopy(element))
    return etree.tostring(root).decode()


async def test_login_against_entra_shaped_federation_metadata(devidp, new_key_idp):
    document = entra_shaped(devidp.metadata_xml(), wsfed_cert_pem=new_key_idp.cert_pem)
    assert document.count("RoleDescriptor") >= 2 and "ClaimTypesOffered" in document
    engine = Engine(settings_for(devidp, idp={"metadata_xml": document}))
    ok = await Browser(engine, devidp).post_acs(unsolicited(devidp, engine))
    assert ok.status == 303, header(ok, "x-saml-error")
    # A key that only the WS-Fed RoleDescriptors list does not sign SAML responses.
    refused = await Browser(engine, new_key_idp).post_acs(unsolicited(new_key_idp, engine))
    assert refused.status == 403
    reply = await engine.handle(request("GET", "/saml/login/"))
    assert header(reply, "location").startswith(devidp.sso_redirect_url + "?SAMLRequest=")
