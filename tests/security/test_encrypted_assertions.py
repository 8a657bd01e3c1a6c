"""Encrypted assertions end to end: the development IdP encrypts, the SP decrypts.

The IdP encrypts with pysaml2 (RSA-OAEP key transport, AES-256-CBC data) for the
encryption certificate in the SP's metadata (`sp.key_pem` / `sp.cert_pem`).
Every way it can go wrong is one refusal seen from outside (no padding or
signature oracle); the log says which.
"""

from __future__ import annotations

import base64

import pytest

from saml_middleware.devidp import DevIdPError
from tests import forge
from tests.helpers import Browser, header
from tests.security.harness import RELAY, Acs

pytestmark = pytest.mark.anyio


@pytest.fixture
def acs(make_acs, sp_keys) -> Acs:
    return make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)


def test_sp_metadata_offers_its_encryption_certificate(acs, sp_keys):
    metadata = acs.engine.sp_metadata_xml()
    assert 'use="encryption"' in metadata
    assert forge.KeyPair  # the SP key pair is the one the settings name
    body = "".join(sp_keys.cert_pem.strip().splitlines()[1:-1])
    assert body[:60] in metadata.replace("\n", "")


async def test_sp_initiated_login_with_an_encrypted_assertion(acs, sp_keys):
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    encoded = acs.mint_encoded(request_id, encrypt_assertion=True)
    root = forge.decode(encoded)
    assert root.xpath("saml:EncryptedAssertion", namespaces=forge.NS)
    assert not root.xpath("//saml:Assertion", namespaces=forge.NS)  # nothing in clear
    assert b"B.Simon@contoso.com" not in base64.b64decode(encoded)
    reply = await acs.post_encoded(encoded, browser)
    await acs.assert_logged_in(reply)
    user = (await browser.get(RELAY)).user
    assert user.roles == ("Admin",) and user.email == "B.Simon@contoso.com"


async def test_encrypted_assertion_in_a_signed_response(make_acs, sp_keys):
    acs = make_acs(
        sp__key_pem=sp_keys.key_pem,
        sp__cert_pem=sp_keys.cert_pem,
        security__want_response_signed=True,
    )
    encoded = acs.mint_encoded(encrypt_assertion=True, sign_response=True)
    await acs.assert_logged_in(await acs.post_encoded(encoded))


async def test_unsigned_inside_signed_outside_is_enough_when_only_the_response_is_wanted(
    make_acs, sp_keys
):
    acs = make_acs(
        sp__key_pem=sp_keys.key_pem,
        sp__cert_pem=sp_keys.cert_pem,
        security__want_assertions_signed=False,
        security__want_response_signed=True,
    )
    encoded = acs.mint_encoded(encrypt_assertion=True, sign_assertion=False, sign_response=True)
    await acs.assert_logged_in(await acs.post_encoded(encoded))


@pytest.mark.parametrize(
    "settings",
    [{}, {"security__want_assertions_signed": False, "security__want_response_signed": True}],
    ids=["assertion-wanted", "response-wanted"],
)
async def test_unsigned_encrypted_assertion_in_unsigned_response_is_refused(
    make_acs, sp_keys, settings
):
    """Encryption is not authentication: anyone can encrypt to the SP's public certificate."""
    acs = make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem, **settings)
    encoded = acs.mint_encoded(encrypt_assertion=True, sign_assertion=False, sign_response=False)
    await acs.assert_refused(await acs.post_encoded(encoded), "signature_required")


async def test_assertion_encrypted_for_another_key_is_refused(acs, attacker_keys):
    encoded = acs.mint_encoded(encrypt_assertion=True, encrypt_cert=attacker_keys.cert_pem)
    await acs.assert_refused(await acs.post_encoded(encoded), "decryption_failed")


async def test_garbage_ciphertext_is_refused(acs):
    root = acs.mint(encrypt_assertion=True)
    forge.cipher_value(root).text = base64.b64encode(b"\x00" * 256).decode()
    await acs.assert_refused(await acs.post(root), "decryption_failed")


async def test_encrypted_assertion_without_an_sp_key_is_refused(make_acs, sp_keys):
    """An SP with no key of its own cannot read it: refused, not a 500."""
    acs_with_key = make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)
    encoded = acs_with_key.mint_encoded(encrypt_assertion=True)
    keyless = make_acs()
    await keyless.assert_refused(await keyless.post_encoded(encoded), "decryption_failed")


def test_dev_idp_refuses_to_encrypt_for_an_sp_without_certificate(make_acs):
    acs = make_acs()
    with pytest.raises(DevIdPError, match="encryption certificate"):
        acs.mint_encoded(encrypt_assertion=True)


async def test_oaep_sha1_digest_is_not_taken_for_a_sha1_signature(acs, sp_keys):
    """Entra's EncryptedKey names SHA-1 as the OAEP digest: that is not a signature digest."""
    root = acs.mint(encrypt_assertion=True)
    method = forge.one(root, "saml:EncryptedAssertion//xenc:EncryptedKey/xenc:EncryptionMethod")
    digest = method.makeelement(f"{{{forge.DS}}}DigestMethod")
    digest.set("Algorithm", f"{forge.DS}sha1")
    method.append(digest)
    reply = await acs.post(root)
    await acs.assert_logged_in(reply)
    assert header(reply, "set-cookie")
