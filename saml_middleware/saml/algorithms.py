"""The algorithm URIs, the allow-lists and their display names: one place for all.

Enforced on the raw document before any cryptography runs (sp.py), again
inside the in-process backend (crypto.py), for Redirect-binding signatures
(logout_messages.py), and shown by Test SSO (diagnostics). pysaml2 and xmlsec1 alone would
accept anything xmlsec was built with: XSLT and XPath transforms, HMAC, MD5, SHA-1.
"""

from __future__ import annotations

from .xml import DS, DS_MORE, EXC_C14N, XENC, XENC11

RSA_SHA1 = f"{DS}rsa-sha1"
RSA_SHA256 = f"{DS_MORE}rsa-sha256"
RSA_SHA384 = f"{DS_MORE}rsa-sha384"
RSA_SHA512 = f"{DS_MORE}rsa-sha512"
ECDSA_SHA256 = f"{DS_MORE}ecdsa-sha256"
ECDSA_SHA384 = f"{DS_MORE}ecdsa-sha384"
ECDSA_SHA512 = f"{DS_MORE}ecdsa-sha512"
SHA1 = f"{DS}sha1"
SHA256 = f"{XENC}sha256"
SHA384 = f"{DS_MORE}sha384"
SHA512 = f"{XENC}sha512"
C14N_EXC = EXC_C14N
C14N_EXC_COMMENTS = f"{EXC_C14N}WithComments"
ENVELOPED = f"{DS}enveloped-signature"

# Signatures: SHA-1 only when `security.reject_sha1` is false.
SIGNATURE_METHODS = frozenset(
    {RSA_SHA256, RSA_SHA384, RSA_SHA512, ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512}
)
SIGNATURE_METHODS_SHA1 = frozenset({RSA_SHA1})
DIGEST_METHODS = frozenset({SHA256, SHA384, SHA512})
DIGEST_METHODS_SHA1 = frozenset({SHA1})
C14N_METHODS = frozenset({C14N_EXC})
TRANSFORMS = frozenset({ENVELOPED, C14N_EXC, C14N_EXC_COMMENTS})
MAX_TRANSFORMS = 2


def signature_methods(reject_sha1: bool) -> frozenset[str]:
    """The SignatureMethod algorithms accepted under `security.reject_sha1`."""
    return SIGNATURE_METHODS if reject_sha1 else SIGNATURE_METHODS | SIGNATURE_METHODS_SHA1


def digest_methods(reject_sha1: bool) -> frozenset[str]:
    """The DigestMethod algorithms accepted under `security.reject_sha1`."""
    return DIGEST_METHODS if reject_sha1 else DIGEST_METHODS | DIGEST_METHODS_SHA1


# Encrypted assertions.
RSA_OAEP_MGF1P = f"{XENC}rsa-oaep-mgf1p"
RSA_OAEP = f"{XENC11}rsa-oaep"
RSA_1_5 = f"{XENC}rsa-1_5"
AES_GCM = {f"{XENC11}aes{bits}-gcm": bits // 8 for bits in (128, 192, 256)}
AES_CBC = {f"{XENC}aes{bits}-cbc": bits // 8 for bits in (128, 192, 256)}
# pysaml2's own IdP side encrypts with 3DES by default (sigver.pre_encryption_part).
TRIPLE_DES_CBC = f"{XENC}tripledes-cbc"
# Every algorithm both backends can decrypt -> allowed by default (the settings
# `security.allowed_key_transport` / `allowed_data_encryption` choose among them).
# RSA PKCS#1 v1.5 key transport is open to Bleichenbacher's padding oracle and
# 3DES-CBC is a 64-bit block cipher (Sweet32): supported, refused unless listed.
KEY_TRANSPORT = {RSA_OAEP_MGF1P: True, RSA_OAEP: True, RSA_1_5: False}
DATA_ENCRYPTION = {
    **{uri: True for uri in AES_CBC},
    **{uri: True for uri in AES_GCM},
    TRIPLE_DES_CBC: False,
}
KEY_TRANSPORT_METHODS = frozenset(uri for uri, safe in KEY_TRANSPORT.items() if safe)
BLOCK_CIPHERS = frozenset(uri for uri, safe in DATA_ENCRYPTION.items() if safe)

# What Test SSO shows for a signature or digest algorithm.
NAMES = {
    RSA_SHA256: "RSA-SHA256",
    RSA_SHA384: "RSA-SHA384",
    RSA_SHA512: "RSA-SHA512",
    ECDSA_SHA256: "ECDSA-SHA256",
    ECDSA_SHA384: "ECDSA-SHA384",
    ECDSA_SHA512: "ECDSA-SHA512",
    RSA_SHA1: "RSA-SHA1",
    SHA256: "SHA-256",
    SHA384: "SHA-384",
    SHA512: "SHA-512",
    SHA1: "SHA-1",
}
