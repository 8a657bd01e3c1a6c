"""Which algorithms an encrypted assertion may use: `security.allowed_key_transport`
and `security.allowed_data_encryption`, checked before any decryption, on both backends.

By default RSA PKCS#1 v1.5 key transport (Bleichenbacher's padding oracle) and
3DES-CBC (a 64-bit block cipher) are refused; an SP whose IdP can send nothing
else may list them. The refusal is `disallowed_algorithm` (one face outside).
"""

from __future__ import annotations

import pytest

from saml_middleware.config import load_settings
from saml_middleware.errors import ConfigError
from tests import forge
from tests.helpers import settings_for
from tests.security.harness import Acs

pytestmark = pytest.mark.anyio

XENC = "http://www.w3.org/2001/04/xmlenc#"
RSA_1_5 = f"{XENC}rsa-1_5"
RSA_OAEP = f"{XENC}rsa-oaep-mgf1p"
TRIPLE_DES = f"{XENC}tripledes-cbc"
AES256_CBC = f"{XENC}aes256-cbc"

# (forge options, the settings that allow them)
WEAK = {
    "3des": (
        {"cipher": "tripledes-cbc"},
        {"security__allowed_data_encryption": [AES256_CBC, TRIPLE_DES]},
    ),
    "rsa-1_5": (
        {"key_transport": "rsa-1_5"},
        {"security__allowed_key_transport": [RSA_OAEP, RSA_1_5]},
    ),
}


def encrypted(acs: Acs, sp_cert_pem: str, **options: str):
    root = acs.mint()
    forge.encrypt_assertion(root, sp_cert_pem, **options)
    return root


def make(make_acs, sp_keys, **settings) -> Acs:
    return make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem, **settings)


@pytest.mark.parametrize("weak", sorted(WEAK))
async def test_weak_encryption_is_refused_by_default(make_acs, sp_keys, weak):
    options, _ = WEAK[weak]
    acs = make(make_acs, sp_keys)
    reply = await acs.post(encrypted(acs, sp_keys.cert_pem, **options))
    await acs.assert_refused(reply, "disallowed_algorithm")


@pytest.mark.parametrize("weak", sorted(WEAK))
async def test_weak_encryption_is_accepted_when_allowed(make_acs, sp_keys, weak):
    options, allowed = WEAK[weak]
    acs = make(make_acs, sp_keys, **allowed)
    await acs.assert_logged_in(await acs.post(encrypted(acs, sp_keys.cert_pem, **options)))


async def test_entra_algorithms_are_accepted_by_default(make_acs, sp_keys):
    """RSA-OAEP and AES-256-CBC: what Entra ID and the development IdP send."""
    acs = make(make_acs, sp_keys)
    encoded = acs.mint_encoded(encrypt_assertion=True)
    methods = forge.decode(encoded).xpath("//xenc:EncryptionMethod/@Algorithm", namespaces=forge.NS)
    assert sorted(methods) == sorted([AES256_CBC, RSA_OAEP])
    await acs.assert_logged_in(await acs.post_encoded(encoded))


async def test_an_algorithm_left_off_the_list_is_refused(make_acs, sp_keys):
    acs = make(make_acs, sp_keys, security__allowed_data_encryption=[f"{XENC}aes128-cbc"])
    reply = await acs.post(encrypted(acs, sp_keys.cert_pem, cipher="aes256-cbc"))
    await acs.assert_refused(reply, "disallowed_algorithm")


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("allowed_key_transport", ["http://example.com/rot13"], "unknown algorithm"),
        ("allowed_data_encryption", [f"{XENC}aes512-cbc"], "unknown algorithm"),
        ("allowed_data_encryption", [], "at least one"),
        ("allowed_key_transport", "not-a-list", "unknown algorithm"),
        ("allowed_key_transport", [1], "list of strings"),
    ],
)
def test_the_lists_are_validated_at_start_up(idp, key, value, problem):
    with pytest.raises(ConfigError) as info:
        load_settings(settings_for(idp, **{f"security__{key}": value}))
    assert str(info.value).startswith(f"security.{key}") and problem in str(info.value)
