"""Claim names sent by common IdPs, and the attribute presets built on them.

Pure data, shared by `config` (to validate `attributes.preset` and
`attributes.map`) and `identity` (to build users). Entra sends its claims as
URIs with no NameFormat; every name is matched exactly.
"""

from __future__ import annotations

from typing import Final

MS = "http://schemas.microsoft.com"
XMLSOAP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"

ENTRA_EMAIL: Final = f"{XMLSOAP}/emailaddress"
ENTRA_GIVEN_NAME: Final = f"{XMLSOAP}/givenname"
ENTRA_SURNAME: Final = f"{XMLSOAP}/surname"
ENTRA_UPN: Final = f"{XMLSOAP}/name"
ENTRA_OBJECT_ID: Final = f"{MS}/identity/claims/objectidentifier"
ENTRA_TENANT_ID: Final = f"{MS}/identity/claims/tenantid"
ENTRA_DISPLAY_NAME: Final = f"{MS}/identity/claims/displayname"
ENTRA_IDENTITY_PROVIDER: Final = f"{MS}/identity/claims/identityprovider"
ENTRA_AUTHN_METHODS: Final = f"{MS}/claims/authnmethodsreferences"
ENTRA_ROLE: Final = f"{MS}/ws/2008/06/identity/claims/role"
ENTRA_GROUPS: Final = f"{MS}/ws/2008/06/identity/claims/groups"
ENTRA_GROUPS_LINK: Final = f"{MS}/claims/groups.link"
ENTRA_WIDS: Final = f"{MS}/ws/2008/06/identity/claims/wids"

# Every claim a default (or group/role-enabled) Entra enterprise app sends, by the
# short name Entra's claim editor shows. All are kept in `SAMLUser.attributes`
# under these exact URIs; the entra preset maps the user fields from them.
ENTRA_CLAIMS: Final[dict[str, str]] = {
    "emailaddress": ENTRA_EMAIL,
    "givenname": ENTRA_GIVEN_NAME,
    "surname": ENTRA_SURNAME,
    "name": ENTRA_UPN,
    "objectidentifier": ENTRA_OBJECT_ID,
    "tenantid": ENTRA_TENANT_ID,
    "displayname": ENTRA_DISPLAY_NAME,
    "identityprovider": ENTRA_IDENTITY_PROVIDER,
    "authnmethodsreferences": ENTRA_AUTHN_METHODS,
    "role": ENTRA_ROLE,
    "groups": ENTRA_GROUPS,
    "groups.link": ENTRA_GROUPS_LINK,
    "wids": ENTRA_WIDS,
}

# AD FS: the same xmlsoap names as Entra, plus its own UPN, group and name claims.
ADFS_UPN: Final = f"{XMLSOAP}/upn"
ADFS_GROUP: Final = "http://schemas.xmlsoap.org/claims/Group"
ADFS_COMMON_NAME: Final = "http://schemas.xmlsoap.org/claims/CommonName"
ADFS_WINDOWS_ACCOUNT: Final = f"{MS}/ws/2008/06/identity/claims/windowsaccountname"

# Where an address may be found when the email claim is missing (Entra leaves
# `emailaddress` out when the user's `mail` is empty): the UPN claims, in order,
# then the NameID. A value is used only when it looks like an address.
EMAIL_FALLBACK_CLAIMS: Final = (ENTRA_UPN, ADFS_UPN)

# The user fields a preset or `attributes.map` can fill from a claim.
USER_FIELDS: Final = ("user_id", "email", "first_name", "last_name", "display_name")

# field -> claim names tried in order (first one present wins).
PRESETS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "entra": {
        "user_id": (ENTRA_OBJECT_ID,),
        "email": (ENTRA_EMAIL,),
        "first_name": (ENTRA_GIVEN_NAME,),
        "last_name": (ENTRA_SURNAME,),
        "display_name": (ENTRA_DISPLAY_NAME, ENTRA_UPN),
    },
    "adfs": {
        "user_id": (ADFS_UPN,),
        "email": (ENTRA_EMAIL,),
        "first_name": (ENTRA_GIVEN_NAME,),
        "last_name": (ENTRA_SURNAME,),
        "display_name": (ENTRA_UPN, ADFS_COMMON_NAME, ADFS_UPN),
    },
    # Friendly names (Okta's attribute statements, OneLogin, Keycloak, JumpCloud...)
    # and the X.500/eduPerson OIDs that R&E IdPs (Shibboleth) send.
    "generic": {
        "user_id": ("uid", "urn:oid:0.9.2342.19200300.100.1.1"),
        "email": (
            "email",
            "mail",
            "emailAddress",
            "urn:oid:0.9.2342.19200300.100.1.3",
            "urn:oid:1.2.840.113549.1.9.1",
        ),
        "first_name": ("firstName", "givenName", "first_name", "urn:oid:2.5.4.42"),
        "last_name": ("lastName", "sn", "surname", "last_name", "urn:oid:2.5.4.4"),
        "display_name": ("displayName", "name", "cn", "urn:oid:2.16.840.1.113730.3.1.241"),
    },
}
PRESETS["okta"] = PRESETS["generic"]

# Where each preset finds roles when `roles.attribute` is not set.
PRESET_ROLE_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "entra": (ENTRA_ROLE,),
    "adfs": (ENTRA_ROLE, ADFS_GROUP),
    "generic": ("roles", "role", "groups"),
    "okta": ("roles", "role", "groups"),
}
