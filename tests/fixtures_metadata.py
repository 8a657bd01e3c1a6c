"""Test material for metadata: throwaway certificates and Entra-shaped metadata.

The metadata mirrors what Microsoft Entra publishes at an app's "App Federation
Metadata Url": an `EntityDescriptor` with an `ID`, an enveloped `ds:Signature`,
two WS-Federation `RoleDescriptor`s (`fed:SecurityTokenServiceType` and
`fed:ApplicationServiceType`) beside the SAML `IDPSSODescriptor`. The signature
element has the real shape but is not a valid signature: parsing never checks it.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TENANT_ID = "3f1c6a0e-5b7d-4c2e-9a8b-0d1e2f3a4b5c"
ENTRA_ENTITY_ID = f"https://sts.windows.net/{TENANT_ID}/"
ENTRA_SAML2_URL = f"https://login.microsoftonline.com/{TENANT_ID}/saml2"
WSFED_URL = f"https://login.microsoftonline.com/{TENANT_ID}/wsfed"

REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

_CLAIMS = (
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "Name"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "Email"),
    ("http://schemas.microsoft.com/identity/claims/objectidentifier", "Object Identifier"),
    ("http://schemas.microsoft.com/identity/claims/tenantid", "Tenant Identifier"),
    ("http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "Role"),
)


def make_certificate(common_name: str, days: int = 365) -> tuple[str, str, dt.datetime]:
    """A self-signed RSA certificate: (PEM text, Base64 DER body, not_valid_after)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    body = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return pem, body, now + dt.timedelta(days=days)


def _key_descriptors(certs: list[str], indent: str) -> str:
    return "".join(
        f'{indent}<KeyDescriptor use="signing">\n'
        f'{indent}  <KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#">\n'
        f"{indent}    <X509Data>\n"
        f"{indent}      <X509Certificate>{cert}</X509Certificate>\n"
        f"{indent}    </X509Data>\n"
        f"{indent}  </KeyInfo>\n"
        f"{indent}</KeyDescriptor>\n"
        for cert in certs
    )


def _endpoint(tag: str, url: str) -> str:
    return (
        f"    <fed:{tag}>\n"
        '      <wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing">\n'
        f"        <wsa:Address>{url}</wsa:Address>\n"
        "      </wsa:EndpointReference>\n"
        f"    </fed:{tag}>\n"
    )


def entra_entity(
    certs: list[str],
    *,
    tenant_id: str = TENANT_ID,
    wsfed_certs: list[str] | None = None,
    with_sso: bool = True,
    with_idp: bool = True,
) -> str:
    """One Entra-shaped `EntityDescriptor` (no XML declaration), as text.

    `wsfed_certs` puts other keys in the WS-Fed RoleDescriptors, to check that only
    the IDPSSODescriptor's keys are read.
    """
    entity_id = f"https://sts.windows.net/{tenant_id}/"
    saml2 = f"https://login.microsoftonline.com/{tenant_id}/saml2"
    wsfed = f"https://login.microsoftonline.com/{tenant_id}/wsfed"
    doc_id = f"_{uuid.uuid4()}"
    role_certs = wsfed_certs if wsfed_certs is not None else certs
    claims = "".join(
        f'      <auth:ClaimType Uri="{uri}" '
        'xmlns:auth="http://docs.oasis-open.org/wsfed/authorization/200706">\n'
        f"        <auth:DisplayName>{label}</auth:DisplayName>\n"
        f"        <auth:Description>The {label.lower()} of the user.</auth:Description>\n"
        "      </auth:ClaimType>\n"
        for uri, label in _CLAIMS
    )
    signature = (
        '  <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">\n'
        "    <SignedInfo>\n"
        '      <CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
        '      <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n'
        f'      <Reference URI="#{doc_id}">\n'
        "        <Transforms>\n"
        '          <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\n'
        '          <Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
        "        </Transforms>\n"
        '        <DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\n'
        "        <DigestValue>bm90IGEgcmVhbCBkaWdlc3Q=</DigestValue>\n"
        "      </Reference>\n"
        "    </SignedInfo>\n"
        "    <SignatureValue>bm90IGEgcmVhbCBzaWduYXR1cmU=</SignatureValue>\n"
        "    <KeyInfo>\n"
        "      <X509Data>\n"
        f"        <X509Certificate>{certs[0] if certs else ''}</X509Certificate>\n"
        "      </X509Data>\n"
        "    </KeyInfo>\n"
        "  </Signature>\n"
    )
    fed_ns = (
        'protocolSupportEnumeration="http://docs.oasis-open.org/wsfed/federation/200706" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706"'
    )
    sts = (
        f'  <RoleDescriptor xsi:type="fed:SecurityTokenServiceType" {fed_ns}>\n'
        + _key_descriptors(role_certs, "    ")
        + "    <fed:ClaimTypesOffered>\n"
        + claims
        + "    </fed:ClaimTypesOffered>\n"
        + _endpoint("SecurityTokenServiceEndpoint", wsfed)
        + _endpoint("PassiveRequestorEndpoint", wsfed)
        + "  </RoleDescriptor>\n"
    )
    app = (
        f'  <RoleDescriptor xsi:type="fed:ApplicationServiceType" {fed_ns}>\n'
        + _key_descriptors(role_certs, "    ")
        + _endpoint("TargetScopes", entity_id)
        + _endpoint("ApplicationServiceEndpoint", wsfed)
        + _endpoint("PassiveRequestorEndpoint", wsfed)
        + "  </RoleDescriptor>\n"
    )
    sso = (
        f'    <SingleSignOnService Binding="{REDIRECT}" Location="{saml2}"/>\n'
        f'    <SingleSignOnService Binding="{POST}" Location="{saml2}"/>\n'
        if with_sso
        else ""
    )
    idp = (
        '  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">\n'
        + _key_descriptors(certs, "    ")
        + f'    <SingleLogoutService Binding="{REDIRECT}" Location="{saml2}"/>\n'
        + sso
        + "  </IDPSSODescriptor>\n"
        if with_idp
        else ""
    )
    return (
        f'<EntityDescriptor ID="{doc_id}" entityID="{entity_id}" '
        'xmlns="urn:oasis:names:tc:SAML:2.0:metadata">\n'
        + signature
        + sts
        + app
        + idp
        + "</EntityDescriptor>\n"
    )


def entra_metadata(certs: list[str], **kwargs: object) -> bytes:
    """A whole Entra-shaped federation metadata document, as served (UTF-8 bytes)."""
    body = entra_entity(certs, **kwargs)  # type: ignore[arg-type]
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode()


def entities_document(*entities: str) -> bytes:
    """An `EntitiesDescriptor` wrapping several entity texts from `entra_entity`."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" Name="test">\n'
        + "".join(entities)
        + "</EntitiesDescriptor>\n"
    ).encode()
