"""Identity mapping as pure functions: presets, `attributes.map`, roles, overage, cookie size.

The attribute sets are shaped like what each IdP really sends: Entra's claim
URIs (anchors.md (c)), AD FS's xmlsoap claims, Okta's and Shibboleth's friendly
names and OIDs. No SAML round trip here (see test_identity_login.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import uuid
from typing import Any

import pytest

from saml_middleware import claims
from saml_middleware.claims import (
    ADFS_COMMON_NAME,
    ADFS_GROUP,
    ADFS_UPN,
    ADFS_WINDOWS_ACCOUNT,
    ENTRA_AUTHN_METHODS,
    ENTRA_DISPLAY_NAME,
    ENTRA_EMAIL,
    ENTRA_GIVEN_NAME,
    ENTRA_GROUPS,
    ENTRA_GROUPS_LINK,
    ENTRA_IDENTITY_PROVIDER,
    ENTRA_OBJECT_ID,
    ENTRA_ROLE,
    ENTRA_SURNAME,
    ENTRA_TENANT_ID,
    ENTRA_UPN,
    ENTRA_WIDS,
)
from saml_middleware.config import Settings, load_settings
from saml_middleware.errors import AccessDenied, ConfigError, SAMLError
from saml_middleware.hooks import call_hook
from saml_middleware.identity import (
    SAMLUser,
    build_user,
    check_required_role,
    map_roles,
    mapped_roles,
    resolve_overage,
    role_values,
)
from saml_middleware.sessions import COOKIE_LIMIT, SessionCodec

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "0c1e5d5e-8c46-4a52-a9d7-3b5b0c6a8f10"
ENTRA_ISSUER = f"https://sts.windows.net/{TENANT}/"
GROUP_ADMINS = "5f3c2a1e-0000-4000-8000-00000000a001"
GROUP_DEVS = "5f3c2a1e-0000-4000-8000-00000000a002"
GLOBAL_READER_WID = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
MFA = "http://schemas.microsoft.com/claims/multipleauthn"
PASSWORD = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"

# A full Entra token: every default claim, app roles, group object IDs and wids.
ENTRA_FULL: dict[str, list[str]] = {
    ENTRA_TENANT_ID: [TENANT],
    ENTRA_OBJECT_ID: [OID],
    ENTRA_DISPLAY_NAME: ["Britta Simon"],
    ENTRA_IDENTITY_PROVIDER: [ENTRA_ISSUER],
    ENTRA_AUTHN_METHODS: [PASSWORD, MFA],
    ENTRA_GIVEN_NAME: ["Britta"],
    ENTRA_SURNAME: ["Simon"],
    ENTRA_EMAIL: ["britta.simon@contoso.com"],
    ENTRA_UPN: ["B.Simon@contoso.com"],
    ENTRA_ROLE: ["admins", "developers"],
    ENTRA_GROUPS: [GROUP_ADMINS, GROUP_DEVS],
    ENTRA_WIDS: [GLOBAL_READER_WID],
}
# Entra with an empty `mail`: no emailaddress claim (anchors (b) 2).
ENTRA_NO_MAIL = {k: v for k, v in ENTRA_FULL.items() if k != ENTRA_EMAIL}
# A B2B guest: the identityprovider is the guest's home, the UPN is an #EXT# one.
ENTRA_GUEST = {
    **ENTRA_NO_MAIL,
    ENTRA_UPN: ["alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"],
    ENTRA_IDENTITY_PROVIDER: ["https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/"],
}
# Over 150 groups: groups.link instead of groups (anchors (b) 13).
ENTRA_OVERAGE = {
    **{k: v for k, v in ENTRA_FULL.items() if k not in (ENTRA_GROUPS, ENTRA_ROLE)},
    ENTRA_GROUPS_LINK: [f"https://graph.windows.net/{TENANT}/users/{OID}/getMemberObjects"],
}
ADFS = {
    ADFS_UPN: ["bsimon@corp.contoso.com"],
    ENTRA_EMAIL: ["britta.simon@contoso.com"],
    ENTRA_GIVEN_NAME: ["Britta"],
    ENTRA_SURNAME: ["Simon"],
    ENTRA_UPN: ["CONTOSO\\bsimon"],
    ADFS_COMMON_NAME: ["Britta Simon"],
    ADFS_WINDOWS_ACCOUNT: ["CONTOSO\\bsimon"],
    ADFS_GROUP: ["Domain Users", "SAML-App-Admins"],
}
ADFS_NO_MAIL = {k: v for k, v in ADFS.items() if k != ENTRA_EMAIL}
OKTA = {
    "email": ["britta.simon@contoso.com"],
    "firstName": ["Britta"],
    "lastName": ["Simon"],
    "groups": ["Everyone", "app-admins"],
}
SHIBBOLETH = {
    "urn:oid:0.9.2342.19200300.100.1.1": ["bsimon"],
    "urn:oid:0.9.2342.19200300.100.1.3": ["britta.simon@uni.example"],
    "urn:oid:2.5.4.42": ["Britta"],
    "urn:oid:2.5.4.4": ["Simon"],
    "urn:oid:2.16.840.1.113730.3.1.241": ["Britta Simon"],
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.7": ["urn:mace:uni.example:entitlement:admin"],
}


def settings(**sections: Any) -> Settings:
    """Valid settings (manual IdP) with the given sections."""
    raw: dict[str, Any] = {
        "base_url": "https://app.example.com",
        "secret_key": "test-secret-key-0123456789abcdef",
        "idp": {
            "entity_id": ENTRA_ISSUER,
            "sso_url": f"https://login.microsoftonline.com/{TENANT}/saml2",
            "x509cert": "MIIC8DCCAdigAwIBAgIQFakeBase64CertificateBody==",
        },
    }
    raw.update(sections)
    return load_settings(raw)


def user_from(
    attrs: dict[str, list[str]],
    name_id: str = "B.Simon@contoso.com",
    issuer: str = ENTRA_ISSUER,
    **sections: Any,
) -> SAMLUser:
    s = settings(**sections)
    return build_user(
        name_id=name_id,
        name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        session_index="_session-1",
        issuer=issuer,
        attributes=attrs,
        attribute_settings=s.attributes,
        role_settings=s.roles,
    )


# -- presets: realistic attribute sets -> user fields ---------------------------------------------

FIELD_CASES = [
    pytest.param(
        "entra",
        ENTRA_FULL,
        "B.Simon@contoso.com",
        (OID, "britta.simon@contoso.com", "Britta", "Simon", "Britta Simon"),
        id="entra-full",
    ),
    pytest.param(
        "entra",
        ENTRA_NO_MAIL,
        "B.Simon@contoso.com",
        (OID, "B.Simon@contoso.com", "Britta", "Simon", "Britta Simon"),
        id="entra-no-mail-uses-upn",
    ),
    pytest.param(
        "entra",
        {**ENTRA_NO_MAIL, ENTRA_UPN: ["not an address"]},
        "b.simon@contoso.com",
        (OID, "b.simon@contoso.com", "Britta", "Simon", "Britta Simon"),
        id="entra-no-mail-bad-upn-uses-nameid",
    ),
    pytest.param(
        "entra",
        {ENTRA_OBJECT_ID: [OID], ENTRA_UPN: ["B.Simon@contoso.com"]},
        "b.simon",
        (OID, "B.Simon@contoso.com", None, None, "B.Simon@contoso.com"),
        id="entra-minimal-display-from-upn",
    ),
    pytest.param(
        "entra",
        {ENTRA_TENANT_ID: [TENANT]},
        "persistent-opaque-id",
        ("persistent-opaque-id", None, None, None, "persistent-opaque-id"),
        id="entra-nothing-falls-back-to-nameid",
    ),
    pytest.param(
        "entra",
        ENTRA_GUEST,
        "alex@fabrikam.com",
        (OID, "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", "Britta", "Simon", "Britta Simon"),
        id="entra-b2b-guest",
    ),
    pytest.param(
        "adfs",
        ADFS,
        "CONTOSO\\bsimon",
        (
            "bsimon@corp.contoso.com",
            "britta.simon@contoso.com",
            "Britta",
            "Simon",
            "CONTOSO\\bsimon",
        ),
        id="adfs",
    ),
    pytest.param(
        "adfs",
        {k: v for k, v in ADFS_NO_MAIL.items() if k != ENTRA_UPN},
        "CONTOSO\\bsimon",
        ("bsimon@corp.contoso.com", "bsimon@corp.contoso.com", "Britta", "Simon", "Britta Simon"),
        id="adfs-no-mail-uses-upn-claim",
    ),
    pytest.param(
        "okta",
        OKTA,
        "britta.simon@contoso.com",
        ("britta.simon@contoso.com", "britta.simon@contoso.com", "Britta", "Simon", None),
        id="okta",
    ),
    pytest.param(
        "generic",
        SHIBBOLETH,
        "AAdzZWNyZXQx",
        ("bsimon", "britta.simon@uni.example", "Britta", "Simon", "Britta Simon"),
        id="shibboleth-oids",
    ),
]


@pytest.mark.parametrize(("preset", "attributes", "name_id", "expected"), FIELD_CASES)
def test_preset_maps_realistic_attribute_sets(preset, attributes, name_id, expected):
    user = user_from(attributes, name_id=name_id, attributes={"preset": preset})
    user_id, email, first, last, display = expected
    assert user.user_id == user_id
    assert user.email == email
    assert (user.first_name, user.last_name) == (first, last)
    assert user.display_name == (display or email or name_id)
    assert user.name_id == name_id and user.is_authenticated
    # Nothing is dropped: every claim is there, under its exact name.
    assert {k: list(v) for k, v in user.attributes.items()} == attributes


def test_entra_claims_lists_every_claim_entra_sends():
    # anchors.md (c): the short names of Entra's claim editor and their exact URIs.
    assert claims.ENTRA_CLAIMS == {
        "emailaddress": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "givenname": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "surname": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "objectidentifier": "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "tenantid": "http://schemas.microsoft.com/identity/claims/tenantid",
        "displayname": "http://schemas.microsoft.com/identity/claims/displayname",
        "identityprovider": "http://schemas.microsoft.com/identity/claims/identityprovider",
        "authnmethodsreferences": "http://schemas.microsoft.com/claims/authnmethodsreferences",
        "role": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        "groups.link": "http://schemas.microsoft.com/claims/groups.link",
        "wids": "http://schemas.microsoft.com/ws/2008/06/identity/claims/wids",
    }


def test_entra_full_token_keeps_tenant_groups_wids_and_methods():
    user = user_from(ENTRA_FULL, roles={"map": {"admins": ["Admin"]}})
    assert user.attributes[ENTRA_TENANT_ID] == (TENANT,)
    assert user.attributes[ENTRA_GROUPS] == (GROUP_ADMINS, GROUP_DEVS)
    assert user.attributes[ENTRA_WIDS] == (GLOBAL_READER_WID,)
    assert user.attributes[ENTRA_AUTHN_METHODS] == (PASSWORD, MFA)
    assert user.attributes[ENTRA_IDENTITY_PROVIDER] == (ENTRA_ISSUER,)
    assert user.roles == ("Admin",)  # default roles.attribute: the role claim only
    assert not user.groups_overage


def test_email_fallback_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="saml_middleware.identity"):
        user_from(ENTRA_NO_MAIL)
    assert f"using the {ENTRA_UPN} claim as the email" in caplog.text


@pytest.mark.parametrize(
    ("field_map", "expected"),
    [
        ({"user_id": ENTRA_UPN}, ("B.Simon@contoso.com", "britta.simon@contoso.com")),
        (
            {"user_id": ["urn:custom:employeeid", ENTRA_OBJECT_ID]},
            (OID, "britta.simon@contoso.com"),
        ),
        ({"user_id": "urn:custom:employeeid"}, ("b.simon-nameid", "britta.simon@contoso.com")),
        ({"email": ENTRA_UPN}, (OID, "B.Simon@contoso.com")),
    ],
)
def test_attributes_map_overrides_user_id_and_email(field_map, expected):
    user = user_from(ENTRA_FULL, name_id="b.simon-nameid", attributes={"map": field_map})
    assert (user.user_id, user.email) == expected


def test_user_id_falls_back_to_the_nameid_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="saml_middleware.identity"):
        user = user_from({ENTRA_EMAIL: ["x@contoso.com"]}, name_id="x@contoso.com")
    assert user.user_id == "x@contoso.com"
    assert f"no {ENTRA_OBJECT_ID} claim" in caplog.text


def test_no_preset_keeps_every_claim_and_uses_the_nameid():
    user = user_from(OKTA, name_id="opaque", attributes={"preset": None})
    assert (user.user_id, user.email, user.first_name, user.display_name) == (
        "opaque",
        None,
        None,
        "opaque",
    )
    assert user.roles == () and set(user.attributes) == set(OKTA)


def test_blank_values_are_skipped():
    user = user_from({ENTRA_EMAIL: ["  ", "b@contoso.com"], ENTRA_GIVEN_NAME: [" Britta "]})
    assert user.email == "b@contoso.com" and user.first_name == "Britta"


# -- roles -----------------------------------------------------------------------------------------

ROLE_CASES = [
    # (roles settings, attributes, expected app roles)
    pytest.param({"map": {"admins": ["Admin"]}}, {ENTRA_ROLE: ["admins"]}, ("Admin",), id="exact"),
    pytest.param({"map": {"admins": ["Admin"]}}, {ENTRA_ROLE: ["Admins"]}, (), id="case-matters"),
    pytest.param(
        {"map": {"admins": ["Admin"]}, "case_insensitive": True},
        {ENTRA_ROLE: ["ADMINS"]},
        ("Admin",),
        id="case-insensitive",
    ),
    pytest.param(
        {"map": {"Straße-Team": ["Member"]}, "case_insensitive": True},
        {ENTRA_ROLE: ["STRASSE-TEAM"]},
        ("Member",),
        id="casefold-not-lower",
    ),
    pytest.param(
        {"map": {"admins": ["Admin", "Billing"], "developers": ["Member"]}},
        {ENTRA_ROLE: ["developers", "admins"]},
        ("Member", "Admin", "Billing"),
        id="several-values-order-of-the-idp",
    ),
    pytest.param(
        {"map": {"admins": ["Admin"], "owners": ["Admin"]}},
        {ENTRA_ROLE: ["admins", "owners"]},
        ("Admin",),
        id="deduplicated",
    ),
    pytest.param(
        {"map": {"admins": ["Admin"]}, "default": ["Viewer"]},
        {ENTRA_ROLE: ["unknown"]},
        ("Viewer",),
        id="default-when-none-mapped",
    ),
    pytest.param(
        {"map": {"admins": ["Admin"]}, "default": ["Viewer"]},
        {ENTRA_ROLE: ["admins"]},
        ("Admin",),
        id="default-not-added-when-mapped",
    ),
    pytest.param(
        {"map": {"admins": ["Admin"]}, "default": ["Viewer"]},
        {},
        ("Viewer",),
        id="default-without-claim",
    ),
    pytest.param(
        {
            "attribute": [ENTRA_ROLE, ENTRA_GROUPS],
            "map": {GROUP_DEVS: ["Member"], "admins": ["Admin"]},
        },
        {ENTRA_ROLE: ["admins"], ENTRA_GROUPS: [GROUP_ADMINS, GROUP_DEVS]},
        ("Admin", "Member"),
        id="role-and-groups",
    ),
    pytest.param(
        {"attribute": ENTRA_GROUPS, "map": {GROUP_DEVS: ["Member"], "admins": ["Admin"]}},
        {ENTRA_ROLE: ["admins"], ENTRA_GROUPS: [GROUP_DEVS]},
        ("Member",),
        id="groups-only",
    ),
    pytest.param(
        {"attribute": "roles", "delimiter": ",", "map": {"admins": ["Admin"], "devs": ["Member"]}},
        {"roles": ["admins, devs,,"]},
        ("Admin", "Member"),
        id="delimiter-comma",
    ),
    pytest.param(
        {"attribute": "roles", "delimiter": ";", "map": {"a b": ["Admin"]}},
        {"roles": [" a b ;c"]},
        ("Admin",),
        id="delimiter-keeps-inner-spaces",
    ),
    pytest.param(
        {"attribute": "roles", "delimiter": "", "map": {"a,b": ["Admin"]}},
        {"roles": ["a,b"]},
        ("Admin",),
        id="blank-delimiter-means-none",
    ),
    pytest.param(
        {"map": {"admins": ["Admin"]}}, {ENTRA_ROLE: ["", "  "]}, (), id="blank-values-ignored"
    ),
]


@pytest.mark.parametrize(("roles", "attributes", "expected"), ROLE_CASES)
def test_map_roles(roles, attributes, expected):
    role_settings = settings(roles=roles).roles
    assert map_roles(attributes, role_settings) == expected


@pytest.mark.parametrize(
    ("preset", "attributes", "role_map", "expected"),
    [
        ("adfs", ADFS, {"SAML-App-Admins": ["Admin"]}, ("Admin",)),
        ("adfs", {ENTRA_ROLE: ["admins"]}, {"admins": ["Admin"]}, ("Admin",)),
        ("okta", OKTA, {"app-admins": ["Admin"], "Everyone": ["Member"]}, ("Member", "Admin")),
        ("okta", {"roles": ["editor"]}, {"editor": ["Member"]}, ("Member",)),
        ("entra", {ENTRA_GROUPS: [GROUP_ADMINS]}, {GROUP_ADMINS: ["Admin"]}, ()),
    ],
)
def test_preset_role_attributes(preset, attributes, role_map, expected):
    user = user_from(attributes, attributes={"preset": preset}, roles={"map": role_map})
    assert user.roles == expected


def test_role_values_and_mapped_roles_leave_out_the_default():
    role_settings = settings(
        roles={
            "attribute": [ENTRA_ROLE, ENTRA_GROUPS],
            "map": {"admins": ["Admin"]},
            "default": ["Viewer"],
        }
    ).roles
    attributes = {ENTRA_ROLE: ["x", "admins"], ENTRA_GROUPS: ["g1", "x"]}
    assert role_values(attributes, role_settings) == ("x", "admins", "g1")
    assert mapped_roles(attributes, role_settings) == ("Admin",)
    assert mapped_roles({ENTRA_ROLE: ["x"]}, role_settings) == ()
    assert map_roles({ENTRA_ROLE: ["x"]}, role_settings) == ("Viewer",)


def test_case_insensitive_map_keys_are_casefolded_once():
    roles = settings(roles={"map": {"Admins": ["Admin"]}, "case_insensitive": True}).roles
    assert dict(roles.map) == {"admins": ("Admin",)}
    assert settings(roles={"map": {"Admins": ["Admin"]}}).roles.map == {"Admins": ("Admin",)}


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        (
            {"roles": {"map": {"Admins": ["A"], "admins": ["B"]}, "case_insensitive": True}},
            "roles.map.admins",
            "merge",
        ),
        ({"roles": {"case_insensitive": "yes"}}, "roles.case_insensitive", "true or false"),
        ({"roles": {"overage_hook": "myapp.groups"}}, "roles.overage_hook", "callable"),
        ({"session": {"attributes": 5}}, "session.attributes", "list of strings"),
        ({"session": {"attributes": [ENTRA_OBJECT_ID, 1]}}, "session.attributes", "list"),
    ],
)
def test_new_keys_are_validated(raw, key, fragment):
    with pytest.raises(ConfigError) as info:
        settings(**raw)
    assert info.value.key == key and fragment in str(info.value)


def test_new_keys_defaults():
    s = settings()
    assert s.roles.case_insensitive is False
    assert s.roles.overage_hook is None
    assert s.session.attributes is None
    assert settings(session={"attributes": []}).session.attributes == ()
    assert settings(session={"attributes": ENTRA_OBJECT_ID}).session.attributes == (
        ENTRA_OBJECT_ID,
    )


# -- required role and group overage ---------------------------------------------------------------

GROUP_ROLES = {"attribute": [ENTRA_ROLE, ENTRA_GROUPS], "map": {GROUP_ADMINS: ["Admin"]}}


def test_require_mapped_role_does_not_count_the_default():
    roles = {"map": {"admins": ["Admin"]}, "default": ["Viewer"], "require_mapped_role": True}
    s = settings(roles=roles)
    user = user_from({ENTRA_ROLE: ["nobody"]}, roles=roles)
    assert user.roles == ("Viewer",)
    with pytest.raises(SAMLError) as info:
        check_required_role(user, s.roles)
    assert info.value.code == "no_mapped_role" and info.value.status == 403
    check_required_role(user_from({ENTRA_ROLE: ["admins"]}, roles=roles), s.roles)
    check_required_role(user, settings(roles={**roles, "require_mapped_role": False}).roles)


def test_overage_is_flagged_and_explained_in_the_log(caplog):
    with caplog.at_level(logging.WARNING, logger="saml_middleware.identity"):
        user = user_from(ENTRA_OVERAGE, roles=GROUP_ROLES)
    assert user.groups_overage and user.roles == ()
    assert ENTRA_GROUPS_LINK in user.attributes
    assert "group overage" in caplog.text
    assert "Groups assigned to the application" in caplog.text
    assert "roles.overage_hook" in caplog.text


def test_overage_refusal_names_the_cause():
    s = settings(roles={**GROUP_ROLES, "require_mapped_role": True})
    user = user_from(ENTRA_OVERAGE, roles={**GROUP_ROLES, "require_mapped_role": True})
    with pytest.raises(SAMLError) as info:
        check_required_role(user, s.roles)
    assert info.value.code == "groups_overage" and info.value.status == 403
    assert "too many" in info.value.reason and "group" in info.value.reason


def test_overage_is_not_blamed_when_groups_are_not_a_role_source():
    roles = {"map": {"admins": ["Admin"]}, "require_mapped_role": True}
    user = user_from(ENTRA_OVERAGE, roles=roles)
    with pytest.raises(SAMLError) as info:
        check_required_role(user, settings(roles=roles).roles)
    assert info.value.code == "no_mapped_role"


def overage_settings(hook: Any, **roles: Any) -> Settings:
    return settings(roles={**GROUP_ROLES, "overage_hook": hook, **roles})


def overage_user(s: Settings) -> SAMLUser:
    return build_user(
        name_id="B.Simon@contoso.com",
        name_id_format=None,
        session_index=None,
        issuer=ENTRA_ISSUER,
        attributes=ENTRA_OVERAGE,
        attribute_settings=s.attributes,
        role_settings=s.roles,
    )


def test_sync_overage_hook_resolves_groups_off_the_event_loop_thread():
    seen: dict[str, Any] = {}

    def hook(user: SAMLUser) -> list[str]:
        seen["oid"] = user.attributes[ENTRA_OBJECT_ID][0]
        seen["link"] = user.attributes[ENTRA_GROUPS_LINK][0]
        seen["thread"] = threading.get_ident()
        return [GROUP_DEVS, GROUP_ADMINS]

    s = overage_settings(hook)
    resolved = asyncio.run(resolve_overage(overage_user(s), s.roles))
    assert seen["oid"] == OID and "getMemberObjects" in seen["link"]
    assert seen["thread"] != threading.get_ident()
    assert resolved.roles == ("Admin",) and not resolved.groups_overage
    assert resolved.attributes[ENTRA_GROUPS] == (GROUP_DEVS, GROUP_ADMINS)
    check_required_role(resolved, overage_settings(hook, require_mapped_role=True).roles)


def test_async_overage_hook_resolves_groups():
    async def hook(user: SAMLUser) -> tuple[str, ...]:
        await asyncio.sleep(0)
        return (GROUP_ADMINS,)

    s = overage_settings(hook)
    assert asyncio.run(resolve_overage(overage_user(s), s.roles)).roles == ("Admin",)


def test_overage_hook_returning_none_leaves_the_user_unresolved():
    s = overage_settings(lambda user: None, require_mapped_role=True)
    user = asyncio.run(resolve_overage(overage_user(s), s.roles))
    assert user.groups_overage and user.roles == ()
    with pytest.raises(SAMLError) as info:
        check_required_role(user, s.roles)
    assert info.value.code == "groups_overage"


@pytest.mark.parametrize("result", ["g1", [1, 2], {"g": 1}, 42], ids=["str", "ints", "dict", "int"])
def test_overage_hook_with_a_bad_answer_is_503(result, caplog):
    s = overage_settings(lambda user: result)
    with pytest.raises(SAMLError) as info:
        asyncio.run(resolve_overage(overage_user(s), s.roles))
    assert info.value.code == "groups_unavailable" and info.value.status == 503
    assert "overage_hook" in caplog.text


def test_overage_hook_failure_is_503_with_a_logged_traceback(caplog):
    def hook(user: SAMLUser) -> list[str]:
        raise ConnectionError("graph.microsoft.com unreachable")

    s = overage_settings(hook)
    with pytest.raises(SAMLError) as info:
        asyncio.run(resolve_overage(overage_user(s), s.roles))
    assert info.value.status == 503 and "try" in info.value.reason
    assert "graph.microsoft.com" not in info.value.reason
    assert any(r.exc_info and r.exc_info[0] is ConnectionError for r in caplog.records)


def test_overage_hook_may_deny():
    def hook(user: SAMLUser) -> list[str]:
        raise AccessDenied("Too many groups for this app.")

    s = overage_settings(hook)
    with pytest.raises(AccessDenied):
        asyncio.run(resolve_overage(overage_user(s), s.roles))


def test_overage_hook_is_not_called_without_overage():
    calls: list[SAMLUser] = []
    s = overage_settings(calls.append)
    user = user_from(ENTRA_FULL, roles={**GROUP_ROLES, "overage_hook": calls.append})
    assert asyncio.run(resolve_overage(user, s.roles)) is user and calls == []


def test_call_hook_supports_async_callable_objects():
    class Hook:
        async def __call__(self, user: SAMLUser) -> str:
            return "async-object"

    assert asyncio.run(call_hook(Hook(), SAMLUser())) == "async-object"
    assert asyncio.run(call_hook(lambda u: "sync", SAMLUser())) == "sync"


# -- session size ----------------------------------------------------------------------------------


def two_hundred_group_user(**roles: Any) -> tuple[SAMLUser, Settings]:
    groups = [str(uuid.uuid4()) for _ in range(199)] + [GROUP_ADMINS]
    s = settings(roles={**GROUP_ROLES, **roles})
    user = build_user(
        name_id="B.Simon@contoso.com",
        name_id_format=None,
        session_index="_s",
        issuer=ENTRA_ISSUER,
        attributes={**ENTRA_FULL, ENTRA_GROUPS: groups},
        attribute_settings=s.attributes,
        role_settings=s.roles,
    )
    return user, s


def codec_for(s: Settings, **session: Any) -> SessionCodec:
    return SessionCodec(dataclasses.replace(s.session, **session), s.secret_key)


def test_cookie_keeps_every_claim_that_fits_and_leaves_out_the_largest(caplog):
    user, s = two_hundred_group_user()
    assert user.roles == ("Admin",)
    codec = codec_for(s)
    value = codec.encode(user)
    assert len(codec.cookie_header(value, s.session.max_age_seconds)) <= COOKIE_LIMIT < 4096
    kept = codec.decode(value).user
    assert kept.roles == ("Admin",) and kept.user_id == OID
    assert ENTRA_GROUPS not in kept.attributes
    assert set(kept.attributes) == set(ENTRA_FULL) - {ENTRA_GROUPS}
    assert "1 claim(s) left out" in caplog.text and ENTRA_GROUPS in caplog.text


def test_cookie_allow_list_keeps_only_the_named_claims():
    user, s = two_hundred_group_user()
    codec = codec_for(s, attributes=(ENTRA_TENANT_ID, ENTRA_OBJECT_ID, "not-sent"))
    kept = codec.decode(codec.encode(user)).user
    assert dict(kept.attributes) == {ENTRA_TENANT_ID: (TENANT,), ENTRA_OBJECT_ID: (OID,)}
    empty = codec_for(s, attributes=())
    assert dict(empty.decode(empty.encode(user)).user.attributes) == {}


def test_small_user_cookie_is_unchanged_by_default():
    s = settings()
    user = user_from(ENTRA_FULL)
    codec = codec_for(s)
    assert codec.decode(codec.encode(user)).user.attributes == user.attributes


def test_user_too_large_even_without_claims_is_refused_at_login_only(caplog):
    s = settings()
    user = dataclasses.replace(
        user_from(ENTRA_FULL), roles=tuple(str(uuid.uuid4()) for _ in range(200))
    )
    codec = codec_for(s)
    with pytest.raises(SAMLError) as info:
        codec.encode(user)
    assert info.value.code == "session_too_large" and info.value.status == 403
    # A refresh of an existing session never raises (the old cookie stays valid).
    assert codec.encode(user, session_id="sid", login_time=0)
