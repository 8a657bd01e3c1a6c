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
        "user_id": (f"{XMLSOAP}/upn",),
        "email": (ENTRA_EMAIL,),
        "first_name": (ENTRA_GIVEN_NAME,),
        "last_name": (ENTRA_SURNAME,),
        "display_name": (ENTRA_UPN, f"{XMLSOAP}/upn"),
    },
    "generic": {
        "user_id": ("uid",),
        "email": ("email", "mail", "urn:oid:0.9.2342.19200300.100.1.3"),
        "first_name": ("firstName", "givenName", "urn:oid:2.5.4.42"),
        "last_name": ("lastName", "sn", "surname", "urn:oid:2.5.4.4"),
        "display_name": ("displayName", "name", "urn:oid:2.16.840.1.113730.3.1.241"),
    },
}
PRESETS["okta"] = PRESETS["generic"]

# Where each preset finds roles when `roles.attribute` is not set.
PRESET_ROLE_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "entra": (ENTRA_ROLE,),
    "adfs": (ENTRA_ROLE, "http://schemas.xmlsoap.org/claims/Group"),
    "generic": ("roles", "role", "groups"),
    "okta": ("roles", "role", "groups"),
}
