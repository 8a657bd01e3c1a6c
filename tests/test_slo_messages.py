"""Single Logout messages on their own: the Redirect-binding signature over the raw query
(docs/security.md W10), the structural checks of LogoutRequest/LogoutResponse
(docs/security.md W7: wrapping), and the dev IdP's side of both directions.
"""

from __future__ import annotations

import base64
import re
import zlib
from urllib.parse import quote, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from saml_middleware.errors import SAMLError
from saml_middleware.keys import certificate_body, generate_key_pair
from saml_middleware.saml.logout_messages import (
    ECDSA_SHA256,
    RSA_SHA1,
    RSA_SHA256,
    deflate_base64,
    inspect_logout_request,
    inspect_logout_response,
    read_redirect_query,
    redirect_url,
    verify_redirect_signature,
)

IDP = "https://idp.example.test/idp/metadata"
SLS = "https://app.example.test/saml/sls/"
REQUEST = (
    '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
    ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_lr1" Version="2.0"'
    f' IssueInstant="2026-01-01T00:00:00Z" Destination="{SLS}">'
    f"<saml:Issuer>{IDP}</saml:Issuer>"
    '<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">'
    "B.Simon@contoso.com</saml:NameID>"
    "<samlp:SessionIndex>_s1</samlp:SessionIndex><samlp:SessionIndex>_s2</samlp:SessionIndex>"
    "</samlp:LogoutRequest>"
)


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return generate_key_pair("test IdP")


@pytest.fixture(scope="module")
def ec_pair() -> tuple[str, str]:
    return generate_key_pair("test IdP (EC)", kind="ec")


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _sign(key_pem: str, octets: bytes, algorithm: str = RSA_SHA256) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    digest = hashes.SHA1() if algorithm == RSA_SHA1 else hashes.SHA256()
    return base64.b64encode(key.sign(octets, padding.PKCS1v15(), digest)).decode()


# -- the Redirect binding signature ---------------------------------------------------------


def test_our_own_signed_redirect_verifies(rsa_pair: tuple[str, str]) -> None:
    key, cert = rsa_pair
    url = redirect_url(SLS, "SAMLRequest", REQUEST.encode(), "relay/state?x=1", key)
    message = read_redirect_query(urlsplit(url).query)
    assert message.kind == "SAMLRequest" and message.relay_state == "relay/state?x=1"
    assert message.sig_alg == RSA_SHA256
    verify_redirect_signature(message, [certificate_body(cert)], reject_sha1=True)
    verify_redirect_signature(message, [cert], reject_sha1=True)  # PEM works too


def test_ecdsa_signed_redirect_verifies(ec_pair: tuple[str, str]) -> None:
    key, cert = ec_pair
    url = redirect_url(SLS, "SAMLResponse", b"<x/>", None, key)
    message = read_redirect_query(urlsplit(url).query)
    assert message.sig_alg == ECDSA_SHA256 and message.relay_state is None
    verify_redirect_signature(message, [certificate_body(cert)], reject_sha1=True)


def test_a_der_encoded_ecdsa_signature_verifies_too(ec_pair: tuple[str, str]) -> None:
    key_pem, cert = ec_pair
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    octets = f"SAMLRequest=abc&SigAlg={quote(ECDSA_SHA256, safe='')}"
    der = base64.b64encode(key.sign(octets.encode(), ec.ECDSA(hashes.SHA256()))).decode()
    message = read_redirect_query(f"{octets}&Signature={quote(der, safe='')}")
    verify_redirect_signature(message, [certificate_body(cert)], reject_sha1=True)


def test_signature_over_lowercase_percent_encoding_verifies(rsa_pair: tuple[str, str]) -> None:
    """ADFS signs the query it sends, with `%2f`: verify those bytes, never a re-encoding."""
    key, cert = rsa_pair
    encoded = _lower_escapes(quote(deflate_base64(REQUEST.encode()), safe=""))
    relay = _lower_escapes(quote("/after/logout?a=b", safe=""))
    sig_alg = _lower_escapes(quote(RSA_SHA256, safe=""))
    assert "%2f" in sig_alg
    octets = f"SAMLRequest={encoded}&RelayState={relay}&SigAlg={sig_alg}"
    signature = quote(_sign(key, octets.encode()), safe="")
    message = read_redirect_query(f"{octets}&Signature={signature}")
    verify_redirect_signature(message, [certificate_body(cert)], reject_sha1=True)
    assert message.relay_state == "/after/logout?a=b"


def test_reordered_and_extra_parameters_still_verify(rsa_pair: tuple[str, str]) -> None:
    key, cert = rsa_pair
    url = redirect_url(SLS, "SAMLRequest", REQUEST.encode(), "rs", key)
    parts = urlsplit(url).query.split("&")
    shuffled = "&".join(["utm=1", parts[3], parts[2], "x=%2F", parts[1], parts[0]])
    verify_redirect_signature(
        read_redirect_query(shuffled), [certificate_body(cert)], reject_sha1=True
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: q.replace("RelayState=rs", "RelayState=evil"),
        lambda q: re.sub(r"&RelayState=[^&]*", "", q),
        lambda q: q.replace("SAMLRequest=", "SAMLRequest=AA"),
        lambda q: re.sub(r"Signature=[^&]*", "Signature=" + "A" * 344, q),
    ],
    ids=["relay-state", "relay-state-dropped", "message", "signature"],
)
def test_a_changed_query_does_not_verify(rsa_pair: tuple[str, str], tamper) -> None:
    key, cert = rsa_pair
    query = urlsplit(redirect_url(SLS, "SAMLRequest", REQUEST.encode(), "rs", key)).query
    with pytest.raises(SAMLError) as refused:
        verify_redirect_signature(
            read_redirect_query(tamper(query)), [certificate_body(cert)], reject_sha1=True
        )
    assert refused.value.code == "invalid_signature"


def test_another_key_does_not_verify(rsa_pair: tuple[str, str]) -> None:
    key, _ = rsa_pair
    _, other_cert = generate_key_pair("attacker")
    query = urlsplit(redirect_url(SLS, "SAMLRequest", REQUEST.encode(), None, key)).query
    with pytest.raises(SAMLError) as refused:
        verify_redirect_signature(
            read_redirect_query(query), [certificate_body(other_cert)], reject_sha1=True
        )
    assert refused.value.code == "invalid_signature"


def test_unsigned_redirect_is_refused_when_a_signature_is_needed() -> None:
    message = read_redirect_query(f"SAMLRequest={quote(deflate_base64(REQUEST.encode()))}")
    with pytest.raises(SAMLError) as refused:
        verify_redirect_signature(message, [], reject_sha1=True)
    assert refused.value.code == "signature_required"


def test_sha1_is_refused_unless_allowed(rsa_pair: tuple[str, str]) -> None:
    key, cert = rsa_pair
    octets = f"SAMLRequest=abc&SigAlg={quote(RSA_SHA1, safe='')}"
    query = f"{octets}&Signature={quote(_sign(key, octets.encode(), RSA_SHA1), safe='')}"
    with pytest.raises(SAMLError) as refused:
        verify_redirect_signature(
            read_redirect_query(query), [certificate_body(cert)], reject_sha1=True
        )
    assert refused.value.code == "disallowed_algorithm"
    verify_redirect_signature(
        read_redirect_query(query), [certificate_body(cert)], reject_sha1=False
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "RelayState=x",
        "SAMLRequest=a&SAMLResponse=b",
        "SAMLRequest=a&SAMLRequest=b",
        "SAMLRequest=a&RelayState=1&RelayState=2",
        "SAMLRequest=a&Signature=abc",
        "SAMLRequest=a&SigAlg=x",
        "SAMLRequest=a&SigAlg=x&Signature=not*base64",
        "SAMLRequest=a&RelayState=" + "x" * 2000,
    ],
)
def test_malformed_queries_are_400(query: str) -> None:
    with pytest.raises(SAMLError) as refused:
        read_redirect_query(query)
    assert refused.value.status == 400


# -- the messages -------------------------------------------------------------------------


def test_logout_request_fields() -> None:
    message = inspect_logout_request(REQUEST.encode())
    assert message.id == "_lr1" and message.issuer == IDP and message.destination == SLS
    assert message.name_id == "B.Simon@contoso.com"
    assert message.session_indexes == ("_s1", "_s2")
    assert not message.enveloped_signature and message.not_on_or_after is None


def test_a_comment_cannot_truncate_the_name_id() -> None:
    xml = REQUEST.replace("B.Simon@contoso.com", "B.Simon@contoso.com<!---->.evil.test")
    assert inspect_logout_request(xml.encode()).name_id == "B.Simon@contoso.com.evil.test"


SIGNED_ASSERTION = (
    '<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a1">'
    '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
    '<ds:Reference URI="#_a1"/></ds:SignedInfo><ds:SignatureValue>x</ds:SignatureValue>'
    "</ds:Signature></saml:Assertion>"
)


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        ("<x/>", "malformed"),
        (REQUEST.replace("samlp:LogoutRequest", "samlp:LogoutResponse"), "malformed"),
        (REQUEST.replace('Version="2.0"', 'Version="1.1"'), "malformed"),
        (REQUEST.replace('ID="_lr1"', 'ID="1bad"'), "malformed"),
        (REQUEST.replace("<samlp:SessionIndex>_s1", '<samlp:SessionIndex ID="_lr1">_s1'),
         "duplicate_id"),
        (REQUEST.replace("<saml:NameID", "<saml:NameID>x</saml:NameID><saml:NameID"), "malformed"),
        (REQUEST.replace("<saml:Issuer>", '<saml:Issuer Format="urn:x">'), "wrong_issuer"),
        (
            re.sub(r"<saml:NameID.*?</saml:NameID>", "<saml:EncryptedID/>", REQUEST),
            "unsupported",
        ),
        (REQUEST.replace("</saml:Issuer>", f"</saml:Issuer>{SIGNED_ASSERTION}"),
         "invalid_signed_element"),
        (
            REQUEST.replace(
                "<samlp:SessionIndex>_s2</samlp:SessionIndex>",
                f"<samlp:Extensions>{SIGNED_ASSERTION}</samlp:Extensions>",
            ),
            "invalid_signed_element",
        ),
        ('<!DOCTYPE x [<!ENTITY e "e">]>' + REQUEST, "dtd_forbidden"),
        (REQUEST.replace(' IssueInstant="2026-01-01T00:00:00Z"', ""), "malformed"),
    ],
    ids=[
        "not-saml", "wrong-root", "version", "bad-id", "duplicate-id", "two-name-ids",
        "issuer-format", "encrypted-id", "wrapped-assertion", "wrapped-in-extensions",
        "dtd", "no-issue-instant",
    ],
)  # fmt: skip
def test_structural_refusals(xml: str, code: str) -> None:
    with pytest.raises(SAMLError) as refused:
        inspect_logout_request(xml.encode())
    assert refused.value.code == code
    assert refused.value.status < 500


def test_logout_response_fields() -> None:
    xml = (
        '<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
        ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0"'
        ' IssueInstant="2026-01-01T00:00:00Z" InResponseTo="_lr9">'
        f"<saml:Issuer>{IDP}</saml:Issuer><samlp:Status>"
        '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">'
        '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:RequestDenied"/>'
        "</samlp:StatusCode></samlp:Status></samlp:LogoutResponse>"
    )
    message = inspect_logout_response(xml.encode())
    assert message.in_response_to == "_lr9" and message.issuer == IDP
    assert message.status.endswith(":Responder")
    assert message.status_name == "Responder/RequestDenied"
    with pytest.raises(SAMLError):
        inspect_logout_response(xml.replace("<samlp:Status>", "<samlp:X>").encode())


def test_deflate_round_trip() -> None:
    assert zlib.decompress(base64.b64decode(deflate_base64(REQUEST.encode())), -15) == (
        REQUEST.encode()
    )
