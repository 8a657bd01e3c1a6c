"""The AuthnRequest asks for `sp.name_id_format` (NameIDPolicy, AllowCreate="true").

`sp.name_id_format: None` leaves NameIDPolicy out, so the IdP sends its default
(Entra: its configured "unspecified" one). Read from the decoded request, over
both bindings, signed and not.
"""

from __future__ import annotations

import base64
import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from saml_middleware.keys import generate_key_pair
from saml_middleware.saml.sp import ServiceProvider, inflate
from tests.helpers import settings_for

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
DS = "http://www.w3.org/2000/09/xmldsig#"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
KEY_PEM, CERT_PEM = generate_key_pair("authn-request test SP")


def service_provider(devidp: DevIdP, binding: str, signed: bool, **sp: object) -> ServiceProvider:
    if signed:
        sp = {**sp, "key_pem": KEY_PEM, "cert_pem": CERT_PEM, "sign_authn_requests": True}
    settings = settings_for(devidp, **{f"sp__{key}": value for key, value in sp.items()})
    provider = Engine(settings).tenant.service_provider_sync()
    if binding == "post":  # an IdP that offers only HTTP-POST
        idp = dataclasses.replace(provider.idp, sso_redirect_url=None)
        provider = ServiceProvider(provider.settings, idp)
    return provider


def sent_request(provider: ServiceProvider) -> tuple[etree._Element, bool]:
    """The AuthnRequest as the IdP receives it, and whether it carries a signature."""
    outgoing = provider.authn_request("/relay", "_test-request-id")
    if outgoing.form is not None:
        root = etree.fromstring(base64.b64decode(outgoing.form["SAMLRequest"]))
        return root, root.find(f"{{{DS}}}Signature") is not None
    query = parse_qs(urlsplit(outgoing.url).query)
    xml = inflate(base64.b64decode(query["SAMLRequest"][0]), 1 << 20)
    return etree.fromstring(xml), "Signature" in query


def policy(root: etree._Element) -> etree._Element | None:
    return root.find(f"{{{SAMLP}}}NameIDPolicy")


BINDINGS = pytest.mark.parametrize(
    ("binding", "signed"),
    [("redirect", False), ("redirect", True), ("post", False), ("post", True)],
)


@BINDINGS
def test_the_request_asks_for_the_configured_format(devidp, binding, signed):
    root, has_signature = sent_request(
        service_provider(devidp, binding, signed, name_id_format=PERSISTENT)
    )
    assert has_signature is signed
    found = policy(root)
    assert found is not None
    assert (found.get("Format"), found.get("AllowCreate")) == (PERSISTENT, "true")


@BINDINGS
def test_the_default_asks_for_an_email_address(devidp, binding, signed):
    root, _ = sent_request(service_provider(devidp, binding, signed))
    found = policy(root)
    assert found is not None and found.get("Format") == EMAIL


@BINDINGS
def test_no_format_leaves_the_policy_out(devidp, binding, signed):
    root, has_signature = sent_request(
        service_provider(devidp, binding, signed, name_id_format=None)
    )
    assert has_signature is signed
    assert policy(root) is None


def test_a_transient_format_is_asked_for_without_allow_create(devidp):
    root, _ = sent_request(service_provider(devidp, "redirect", False, name_id_format=TRANSIENT))
    found = policy(root)
    assert found is not None and found.get("Format") == TRANSIENT
    assert found.get("AllowCreate") is None


def test_the_metadata_names_the_format_or_none(devidp):
    persistent = service_provider(devidp, "redirect", False, name_id_format=PERSISTENT)
    assert f">{PERSISTENT}</ns0:NameIDFormat>" in persistent.metadata_xml()
    unnamed = service_provider(devidp, "redirect", False, name_id_format=None)
    assert "NameIDFormat" not in unnamed.metadata_xml()
