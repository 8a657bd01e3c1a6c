"""Signing keys and self-signed certificates for SAML, made with `cryptography`.

SAML peers trust a certificate because it is pinned in metadata (or pasted into
the IdP as "Certificate (Base64)"), not because a CA signed it, so a
self-signed certificate is the normal case. Used by `saml-middleware keygen`
and the development IdP; nothing here touches pysaml2.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import uuid
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KINDS = ("rsa", "ec")
RSA_BITS = (2048, 3072, 4096)
# Longer than any SAML deployment keeps a key; also keeps not_valid_after in range.
MAX_DAYS = 36500


def generate_key_pair(
    common_name: str, *, days: int = 365, kind: str = "rsa", bits: int | None = None
) -> tuple[str, str]:
    """A new private key (PKCS#8 PEM, unencrypted) and its self-signed certificate (PEM).

    `kind` is "rsa" (`bits`: 2048 by default, what every IdP accepts; 3072 or
    4096) or "ec" (P-256, the one curve SAML IdPs commonly accept; `bits` must
    then be None). The certificate is valid from one minute ago (small clock
    skew) for `days` days.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if kind == "rsa" and bits is not None and bits not in RSA_BITS:
        raise ValueError(f"bits must be one of {RSA_BITS} for RSA, not {bits!r}")
    if kind == "ec" and bits is not None:
        raise ValueError("bits is only for RSA keys (EC keys are P-256)")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    if not common_name or len(common_name) > 64:
        raise ValueError("common_name must be 1 to 64 characters long")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits or 2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        # A random positive 127-bit serial, as RFC 5280 asks (unique per issuer).
        .serial_number(uuid.uuid4().int >> 1)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return key_pem, cert_pem


def certificate_body(cert_pem: str) -> str:
    """The Base64 body of a PEM certificate on one line (Entra's "Certificate (Base64)").

    This is the form metadata's `<ds:X509Certificate>` and `idp.x509cert` use.
    The certificate is parsed (the first one, when the text holds a chain), so a
    damaged paste fails here with ValueError rather than later at a signature check.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not a PEM certificate") from None
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


# A certificate this close to its end is a warning: `check`, `diagnose`, Test SSO.
EXPIRY_WARNING_DAYS = 30

CertificateState = Literal["ok", "soon", "expired", "not_yet"]


def thumbprint(der: bytes) -> str:
    """SHA-1 of the DER, upper-case hex: what Entra shows as "Thumbprint".

    Only to name a certificate the way the portal does; nothing is trusted on it.
    """
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class CertificateStanding:
    """A certificate as an admin recognises it in the IdP's portal, and where it stands."""

    subject: str  # RFC 4514, "" when empty
    common_name: str  # the CN, else the subject, else "-"
    thumbprint: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    days_left: float  # negative once expired
    state: CertificateState


def certificate_standing(
    cert: x509.Certificate, now: datetime.datetime, skew: int = 0
) -> CertificateStanding:
    """Where `cert` stands at `now`: expired, not yet valid (beyond `skew`), expiring soon, fine."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = cert.subject.rfc4514_string()
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    state: CertificateState
    if end <= now:
        state = "expired"
    elif start > now + datetime.timedelta(seconds=skew):
        state = "not_yet"
    elif end - now < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        state = "soon"
    else:
        state = "ok"
    return CertificateStanding(
        subject=subject,
        common_name=str(names[0].value) if names else subject or "-",
        thumbprint=thumbprint(cert.public_bytes(serialization.Encoding.DER)),
        not_before=start,
        not_after=end,
        days_left=(end - now).total_seconds() / 86400,
        state=state,
    )
