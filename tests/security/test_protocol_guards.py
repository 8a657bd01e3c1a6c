"""The guards in saml/sp.py that work before any cryptography, tested on their own.

* `inflate` / `decode_redirect_message`: HTTP-Redirect messages inflate to a hard
  cap (catalogue P4). No SP endpoint takes a Redirect-binding message yet (the
  SLS comes with Single Logout); the helper is ready for it.
* `check_signatures`: the algorithm and placement allow-list, directly on
  documents, including what the end-to-end corpus does not post (ECDSA).
"""

from __future__ import annotations

import base64
import time
import tracemalloc
import zlib

import pytest
from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from saml_middleware.errors import SAMLError
from saml_middleware.keys import generate_key_pair
from saml_middleware.saml.algorithms import DIGEST_METHODS, SIGNATURE_METHODS
from saml_middleware.saml.rules import check_signed
from saml_middleware.saml.sp import (
    check_signatures,
    decode_redirect_message,
    inflate,
    parse_xml,
)
from tests import forge
from tests.forge import KeyPair
from tests.helpers import settings_for
from tests.security.harness import IDP_URL, Acs

LIMIT = 256 * 1024


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def code_of(call, *args, **kwargs) -> tuple[str, int]:
    with pytest.raises(SAMLError) as info:
        call(*args, **kwargs)
    return info.value.code, info.value.status


# -- inflate (P4) -------------------------------------------------------------------------


def test_inflate_round_trip():
    message = b"<samlp:LogoutRequest/>" * 100
    assert inflate(deflate(message), LIMIT) == message


def test_inflate_exactly_at_the_limit_is_fine_one_more_byte_is_not():
    assert inflate(deflate(b"x" * 1000), 1000) == b"x" * 1000
    assert code_of(inflate, deflate(b"x" * 1001), 1000) == ("too_large", 413)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """128 MiB of zeros, deflated to about 128 kB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(128)) + compressor.flush()


def test_deflate_bomb_is_stopped_at_the_cap_in_bounded_memory_and_time(bomb):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert code_of(inflate, bomb, LIMIT) == ("too_large", 413)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < len(bomb) + 4 * LIMIT  # the input, the cap, never the 128 MiB


@pytest.mark.parametrize(
    "data",
    [b"", b"not deflate at all", deflate(b"<x/>")[:-3], deflate(b"<x/>") + b"trailing"],
    ids=["empty", "garbage", "truncated", "trailing-data"],
)
def test_broken_deflate_is_malformed(data):
    assert code_of(inflate, data, LIMIT) == ("malformed", 400)


def test_zlib_wrapped_data_is_not_raw_deflate():
    assert code_of(inflate, zlib.compress(b"<x/>"), LIMIT) == ("malformed", 400)


def test_decode_redirect_message(bomb):
    encoded = base64.b64encode(deflate(b"<samlp:LogoutRequest/>")).decode()
    assert decode_redirect_message(encoded, LIMIT) == b"<samlp:LogoutRequest/>"
    assert code_of(decode_redirect_message, "%%%", LIMIT) == ("malformed", 400)
    assert code_of(decode_redirect_message, "", LIMIT) == ("malformed", 400)
    assert code_of(decode_redirect_message, "A" * (LIMIT + 1), LIMIT) == ("too_large", 413)
    encoded_bomb = base64.b64encode(bomb).decode()
    assert len(encoded_bomb) < LIMIT  # small enough to reach inflate
    assert code_of(decode_redirect_message, encoded_bomb, LIMIT) == ("too_large", 413)


# -- parse_xml ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
        b'<?xml version="1.0" encoding="UTF-7"?><a>+ADw-b/+AD4-</a>',
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
        b"<a>\xff</a>",
        b"<a>\x00</a>",
        b"<a/><b/>",
        b"",
        b"\xef\xbb\xbf",
    ],
    ids=["utf16", "utf7", "latin1", "bad-utf8", "nul", "two-roots", "empty", "bom-only"],
)
def test_parse_xml_refuses_other_encodings_and_broken_documents(data):
    assert code_of(parse_xml, data) == ("malformed", 400)


def test_parse_xml_accepts_utf8_with_bom_and_declaration():
    root = parse_xml(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><a>\xc3\xa9</a>')
    assert root.text == "\u00e9"


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>',
        b"<a><!ENTITY x 'y'></a>",
    ],
)
def test_parse_xml_refuses_any_dtd(data):
    assert code_of(parse_xml, data) == ("dtd_forbidden", 400)


# -- check_signatures: the allow-list on documents ------------------------------------------


@pytest.fixture(scope="module")
def signed_root(idp_keys: KeyPair) -> etree._Element:
    """A minimal response whose assertion carries a genuine RSA-SHA256 signature."""
    response = etree.fromstring(
        f'<samlp:Response xmlns:samlp="{forge.SAMLP}" xmlns:saml="{forge.SAML}" ID="r1">'
        f"<saml:Issuer>{IDP_URL}/metadata</saml:Issuer>"
        '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
        '</samlp:Status><saml:Assertion ID="a1"><saml:Issuer>x</saml:Issuer></saml:Assertion>'
        "</samlp:Response>".encode()
    )
    forge.sign_assertions(response, idp_keys)
    return response


def _with_method(root: etree._Element, path: str, algorithm: str) -> etree._Element:
    copy = etree.fromstring(etree.tostring(root))
    forge.one(copy, path).set("Algorithm", algorithm)
    return copy


SIG_METHOD = "saml:Assertion/ds:Signature/ds:SignedInfo/ds:SignatureMethod"
DIGEST = "saml:Assertion/ds:Signature/ds:SignedInfo/ds:Reference/ds:DigestMethod"


@pytest.mark.parametrize("algorithm", sorted(SIGNATURE_METHODS))
def test_allowed_signature_methods_pass(signed_root, algorithm):
    check_signatures(_with_method(signed_root, SIG_METHOD, algorithm), reject_sha1=True)


@pytest.mark.parametrize("algorithm", sorted(DIGEST_METHODS))
def test_allowed_digest_methods_pass(signed_root, algorithm):
    check_signatures(_with_method(signed_root, DIGEST, algorithm), reject_sha1=True)


@pytest.mark.parametrize(
    ("path", "algorithm"),
    [
        (SIG_METHOD, f"{forge.DS}rsa-sha1"),
        (SIG_METHOD, f"{forge.DS}dsa-sha1"),
        (SIG_METHOD, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"),
        (SIG_METHOD, "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"),
        (SIG_METHOD, "http://www.w3.org/2001/04/xmldsig-more#rsa-sha224"),
        (SIG_METHOD, ""),
        (DIGEST, f"{forge.DS}sha1"),
        (DIGEST, "http://www.w3.org/2001/04/xmldsig-more#md5"),
        (DIGEST, "http://www.w3.org/2001/04/xmlenc#ripemd160"),
    ],
)
def test_other_algorithms_are_disallowed(signed_root, path, algorithm):
    doc = _with_method(signed_root, path, algorithm)
    assert code_of(check_signatures, doc, reject_sha1=True) == ("disallowed_algorithm", 403)


def test_sha1_only_when_allowed(signed_root):
    doc = _with_method(signed_root, SIG_METHOD, f"{forge.DS}rsa-sha1")
    doc = _with_method(doc, DIGEST, f"{forge.DS}sha1")
    check_signatures(doc, reject_sha1=False)
    hmac = _with_method(signed_root, SIG_METHOD, f"{forge.DS}hmac-sha1")
    assert code_of(check_signatures, hmac, reject_sha1=False)[0] == "disallowed_algorithm"


def test_the_response_and_its_assertion_may_both_be_signed(signed_root, idp_keys):
    both = etree.fromstring(etree.tostring(signed_root))
    forge.sign_response(both, idp_keys)
    check_signatures(both, reject_sha1=True)


@pytest.mark.anyio
async def test_ecdsa_signed_assertions_log_in():
    """ECDSA-SHA256 end to end: an IdP with an EC key (the allow-list is not RSA-only)."""
    keys = KeyPair(*generate_key_pair("EC test IdP", kind="ec"))
    idp = DevIdP("https://ec-idp.example.test/idp", key_pem=keys.key_pem, cert_pem=keys.cert_pem)
    acs = Acs(Engine(settings_for(idp)), idp, keys)
    root = acs.mint()
    method = forge.one(forge.assertion(root), "ds:Signature/ds:SignedInfo/ds:SignatureMethod")
    assert method.get("Algorithm").endswith("ecdsa-sha256")
    await acs.assert_logged_in(await acs.post(root))


# -- the plain signature rule, whatever pysaml2 decided -------------------------------------


@pytest.mark.parametrize(
    ("settings", "response_signed", "assertion_signed", "refused"),
    [
        ({}, False, True, False),
        ({}, True, False, True),
        ({"security__want_response_signed": True}, False, True, True),
        ({"security__want_response_signed": True}, True, True, False),
        (
            {"security__want_assertions_signed": False, "security__want_response_signed": True},
            True,
            False,
            False,
        ),
        (
            {"security__want_assertions_signed": False, "security__want_response_signed": True},
            False,
            False,
            True,
        ),
    ],
)
def test_required_signatures_are_checked_on_what_pysaml2_returned(
    make_acs, settings, response_signed, assertion_signed, refused
):
    """`check_signed` holds the rule itself: pysaml2 decides it in a loop of retries."""
    expect = make_acs(**settings).engine.tenant.service_provider_sync()._expect
    if refused:
        assert code_of(check_signed, expect, response_signed, assertion_signed) == (
            "signature_required",
            403,
        )
    else:
        check_signed(expect, response_signed, assertion_signed)


def test_a_ds_object_anywhere_is_refused(signed_root):
    doc = etree.fromstring(etree.tostring(signed_root))
    signature = forge.one(doc, "saml:Assertion/ds:Signature")
    etree.SubElement(signature, f"{{{forge.DS}}}Object")
    assert code_of(check_signatures, doc, reject_sha1=True) == ("invalid_signed_element", 403)
