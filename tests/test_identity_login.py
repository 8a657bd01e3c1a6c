"""Identity through the engine: real signed logins from the development IdP.

Each preset gets a round trip with a DevUser sending that IdP's claim names;
then role mapping over several claims, roles recomputed at every login, Entra
group overage (with and without `roles.overage_hook`), a 200-group user whose
cookie must stay under 4 KB, and the Entra example that docs/configuration.md
shows (checked against the file, so the documentation cannot drift).
"""

from __future__ import annotations

import ast
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from saml_middleware.claims import (
    ADFS_COMMON_NAME,
    ADFS_GROUP,
    ADFS_UPN,
    ENTRA_EMAIL,
    ENTRA_GIVEN_NAME,
    ENTRA_GROUPS,
    ENTRA_GROUPS_LINK,
    ENTRA_OBJECT_ID,
    ENTRA_ROLE,
    ENTRA_SURNAME,
    ENTRA_TENANT_ID,
    ENTRA_UPN,
    ENTRA_WIDS,
)
from saml_middleware.devidp import DevIdP, DevUser
from saml_middleware.devidp.users import DEFAULT_USERS, DEV_TENANT_ID
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.errors import AccessDenied
from saml_middleware.identity import SAMLUser
from tests.helpers import Browser, header, request, settings_for

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
GROUP_ADMINS = "5f3c2a1e-0000-4000-8000-00000000a001"
GROUP_DEVS = "5f3c2a1e-0000-4000-8000-00000000a002"
TWO_HUNDRED_GROUPS = [str(uuid.uuid4()) for _ in range(199)] + [GROUP_DEVS]
ENTRA_BASE = dict(DEFAULT_USERS[0].claims)  # B.Simon: every default Entra claim, role admins


def entra_user(key: str, name_id: str, **claims: list[str]) -> DevUser:
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    base = {**ENTRA_BASE, ENTRA_OBJECT_ID: [oid], ENTRA_EMAIL: [name_id], ENTRA_UPN: [name_id]}
    base.pop(ENTRA_ROLE)
    extra = {CLAIM_ARGS[k]: v for k, v in claims.items()}
    return DevUser(key, name_id, key, {**base, **extra})


CLAIM_ARGS = {
    "role": ENTRA_ROLE,
    "groups": ENTRA_GROUPS,
    "link": ENTRA_GROUPS_LINK,
    "wids": ENTRA_WIDS,
}
GLOBAL_READER_WID = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"

USERS = [
    entra_user(
        "entra",
        "B.Simon@contoso.com",
        role=["admins"],
        groups=[GROUP_ADMINS, GROUP_DEVS],
        wids=[GLOBAL_READER_WID],
    ),
    entra_user("entra-groups-only", "G.Only@contoso.com", groups=[GROUP_DEVS]),
    entra_user(
        "entra-overage",
        "O.Verage@contoso.com",
        link=[f"https://graph.windows.net/{DEV_TENANT_ID}/users/x/getMemberObjects"],
    ),
    entra_user("entra-200", "Many.Groups@contoso.com", groups=TWO_HUNDRED_GROUPS),
    entra_user("mover", "M.Over@contoso.com", role=["admins"]),
    DevUser(
        "adfs",
        "bsimon@corp.contoso.com",
        "AD FS user",
        {
            ADFS_UPN: ["bsimon@corp.contoso.com"],
            ENTRA_EMAIL: ["britta.simon@contoso.com"],
            ENTRA_GIVEN_NAME: ["Britta"],
            ENTRA_SURNAME: ["Simon"],
            ADFS_COMMON_NAME: ["Britta Simon"],
            ADFS_GROUP: ["Domain Users", "SAML-App-Admins"],
        },
    ),
    DevUser(
        "okta",
        "alex@fabrikam.com",
        "Okta user",
        {
            "email": ["alex@fabrikam.com"],
            "firstName": ["Alex"],
            "lastName": ["Wilber"],
            "groups": ["Everyone", "App-Developers"],
        },
    ),
]


@pytest.fixture(scope="module")
def idp() -> DevIdP:
    return DevIdP("https://idp.example.test/idp", users=USERS)


def make_engine(idp: DevIdP, **overrides: Any) -> Engine:
    engine = Engine(settings_for(idp, **overrides))
    idp.add_service_provider(engine.sp_metadata_xml())
    return engine


async def sign_in(engine: Engine, idp: DevIdP, user: str) -> tuple[Response, SAMLUser | None]:
    """Log in; return the ACS reply and the user the app then sees (None if refused)."""
    browser = Browser(engine, idp)
    reply = await browser.login(user)
    if reply.status != 303:
        assert engine.settings.session.cookie_name not in browser.cookies  # no session
        return reply, None
    passed = await browser.get("/dashboard")
    assert isinstance(passed, PassThrough)
    return reply, passed.user


# -- a round trip per preset -----------------------------------------------------------------------

PRESET_CASES = [
    pytest.param(
        "entra",
        {"attributes": {"preset": "entra"}},
        {
            "email": "B.Simon@contoso.com",
            "first_name": "B",
            "display_name": "B.Simon",
            "roles": ("Admin",),
        },
        id="entra",
    ),
    pytest.param(
        "adfs",
        {"attributes": {"preset": "adfs"}, "roles": {"map": {"SAML-App-Admins": ["Admin"]}}},
        {
            "user_id": "bsimon@corp.contoso.com",
            "email": "britta.simon@contoso.com",
            "first_name": "Britta",
            "last_name": "Simon",
            "display_name": "Britta Simon",
            "roles": ("Admin",),
        },
        id="adfs",
    ),
    pytest.param(
        "okta",
        {
            "attributes": {"preset": "okta"},
            "roles": {"map": {"app-developers": ["Member"]}, "case_insensitive": True},
        },
        {
            "user_id": "alex@fabrikam.com",  # Okta sends no id claim: the NameID
            "email": "alex@fabrikam.com",
            "first_name": "Alex",
            "last_name": "Wilber",
            "display_name": "alex@fabrikam.com",
            "roles": ("Member",),
        },
        id="okta-case-insensitive",
    ),
]


@pytest.mark.parametrize(("user", "sections", "expected"), PRESET_CASES)
async def test_each_preset_round_trip(idp, user, sections, expected):
    engine = make_engine(idp, **sections)
    reply, seen = await sign_in(engine, idp, user)
    assert reply.status == 303 and seen is not None
    for name, value in expected.items():
        assert getattr(seen, name) == value, name
    # Every claim the IdP sent arrives, under its exact name.
    assert {k: list(v) for k, v in seen.attributes.items()} == idp.users[user].claims


async def test_entra_user_id_is_the_object_id_or_a_configured_claim(idp):
    _, seen = await sign_in(make_engine(idp), idp, "entra")
    assert seen.user_id == idp.users["entra"].claims[ENTRA_OBJECT_ID][0]
    engine = make_engine(idp, attributes={"map": {"user_id": ENTRA_UPN}})
    _, seen = await sign_in(engine, idp, "entra")
    assert seen.user_id == "B.Simon@contoso.com"


async def test_roles_from_role_and_groups_claims(idp):
    roles = {
        "attribute": [ENTRA_ROLE, ENTRA_GROUPS],
        "map": {"admins": ["Admin"], GROUP_DEVS: ["Member"]},
    }
    engine = make_engine(idp, roles=roles)
    assert (await sign_in(engine, idp, "entra"))[1].roles == ("Admin", "Member")
    assert (await sign_in(engine, idp, "entra-groups-only"))[1].roles == ("Member",)
    # The default roles.attribute (the role claim only) ignores the groups.
    assert (await sign_in(make_engine(idp), idp, "entra-groups-only"))[1].roles == ()


async def test_roles_are_recomputed_at_every_login(idp):
    engine = make_engine(idp, roles={"map": {"admins": ["Admin"]}, "default": ["Viewer"]})
    original = idp.users["mover"]
    try:
        assert (await sign_in(engine, idp, "mover"))[1].roles == ("Admin",)
        # The admin removes the user from the Entra app role.
        idp.users["mover"] = DevUser(
            "mover", original.name_id, original.display, {**original.claims, ENTRA_ROLE: ["x"]}
        )
        assert (await sign_in(engine, idp, "mover"))[1].roles == ("Viewer",)
        strict = make_engine(idp, roles={"map": {"admins": ["Admin"]}, "require_mapped_role": True})
        reply, seen = await sign_in(strict, idp, "mover")
        assert reply.status == 403 and header(reply, "x-saml-error") == "no_mapped_role"
        assert b"no role in this application" in reply.body
    finally:
        idp.users["mover"] = original


# -- group overage ---------------------------------------------------------------------------------

GROUP_ROLES = {"attribute": [ENTRA_ROLE, ENTRA_GROUPS], "map": {GROUP_DEVS: ["Member"]}}


async def test_overage_without_hook_and_required_role_is_refused_naming_the_cause(idp, caplog):
    engine = make_engine(idp, roles={**GROUP_ROLES, "require_mapped_role": True})
    with caplog.at_level(logging.WARNING, logger="saml_middleware"):
        reply, _ = await sign_in(engine, idp, "entra-overage")
    assert reply.status == 403 and header(reply, "x-saml-error") == "groups_overage"
    assert b"too many" in reply.body and b"no role" not in reply.body
    assert "group overage" in caplog.text


async def test_overage_without_required_role_signs_in_flagged(idp):
    engine = make_engine(idp, roles={**GROUP_ROLES, "default": ["Viewer"]})
    reply, seen = await sign_in(engine, idp, "entra-overage")
    assert reply.status == 303
    assert seen.groups_overage and seen.roles == ("Viewer",)
    assert ENTRA_GROUPS_LINK in seen.attributes


def sync_groups(user: SAMLUser) -> list[str]:
    assert user.groups_overage and ENTRA_GROUPS_LINK in user.attributes
    return [GROUP_ADMINS, GROUP_DEVS]


async def async_groups(user: SAMLUser) -> list[str]:
    return [GROUP_DEVS]


@pytest.mark.parametrize("hook", [sync_groups, async_groups], ids=["sync", "async"])
async def test_overage_hook_resolves_groups_into_roles(idp, hook):
    roles = {**GROUP_ROLES, "require_mapped_role": True, "overage_hook": hook}
    reply, seen = await sign_in(make_engine(idp, roles=roles), idp, "entra-overage")
    assert reply.status == 303
    assert seen.roles == ("Member",) and not seen.groups_overage
    assert GROUP_DEVS in seen.attributes[ENTRA_GROUPS]


async def test_overage_hook_failure_is_a_503_page_without_traceback(idp, caplog):
    def broken(user: SAMLUser) -> list[str]:
        raise TimeoutError("graph.microsoft.com timed out, token=eyJ0eXAi")

    roles = {**GROUP_ROLES, "overage_hook": broken}
    with caplog.at_level(logging.ERROR, logger="saml_middleware"):
        reply, _ = await sign_in(make_engine(idp, roles=roles), idp, "entra-overage")
    assert reply.status == 503 and header(reply, "x-saml-error") == "groups_unavailable"
    assert b"Traceback" not in reply.body and b"eyJ0eXAi" not in reply.body
    assert any(r.exc_info and r.exc_info[0] is TimeoutError for r in caplog.records)


async def test_overage_hook_may_deny(idp):
    def deny(user: SAMLUser) -> list[str]:
        raise AccessDenied("Members of this many groups must use the admin portal.")

    reply, _ = await sign_in(
        make_engine(idp, roles={**GROUP_ROLES, "overage_hook": deny}), idp, "entra-overage"
    )
    assert reply.status == 403 and b"admin portal" in reply.body


# -- session size: a user in 200 groups ------------------------------------------------------------


async def test_two_hundred_group_user_gets_a_cookie_under_4kb(idp, caplog):
    engine = make_engine(idp, roles={**GROUP_ROLES, "require_mapped_role": True})
    browser = Browser(engine, idp)
    with caplog.at_level(logging.WARNING, logger="saml_middleware.session"):
        reply = await browser.login("entra-200")
    assert reply.status == 303
    set_cookie = header(reply, "set-cookie")
    assert len(set_cookie.encode()) < 4096
    seen = (await browser.get("/dashboard")).user
    # The group deep in the list was mapped; the mapped fields are all kept...
    assert seen.roles == ("Member",) and seen.email == "Many.Groups@contoso.com"
    assert seen.user_id == idp.users["entra-200"].claims[ENTRA_OBJECT_ID][0]
    # ...and every claim that fits, but not the 200 groups.
    assert ENTRA_GROUPS not in seen.attributes
    assert seen.attributes[ENTRA_TENANT_ID] == (DEV_TENANT_ID,)
    assert "left out" in caplog.text and "session.attributes" in caplog.text


async def test_session_attribute_allow_list(idp):
    engine = make_engine(idp, session={"attributes": [ENTRA_TENANT_ID, ENTRA_GROUPS]})
    browser = Browser(engine, idp)
    await browser.login("entra")
    seen = (await browser.get("/dashboard")).user
    assert dict(seen.attributes) == {
        ENTRA_TENANT_ID: (DEV_TENANT_ID,),
        ENTRA_GROUPS: (GROUP_ADMINS, GROUP_DEVS),
    }
    assert seen.roles == ("Admin",) and seen.email == "B.Simon@contoso.com"


# -- the Entra example of docs/configuration.md ----------------------------------------------------

# docs/configuration.md shows these three sections verbatim (see the test below).
ENTRA_EXAMPLE = {
    "attributes": {
        "preset": "entra",
        "map": {"user_id": "http://schemas.microsoft.com/identity/claims/objectidentifier"},
    },
    "roles": {
        "attribute": [
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        ],
        "delimiter": None,
        "map": {
            "admins": ["Admin"],
            "developers": ["Member"],
            "5f3c2a1e-0000-4000-8000-00000000a002": ["Member"],
        },
        "case_insensitive": False,
        "default": [],
        "require_mapped_role": True,
    },
    "session": {
        "attributes": [
            "http://schemas.microsoft.com/identity/claims/tenantid",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/wids",
            "http://schemas.microsoft.com/claims/authnmethodsreferences",
        ],
    },
}


async def test_documented_entra_example_signs_users_in(idp):
    engine = make_engine(idp, **ENTRA_EXAMPLE)
    _, admin = await sign_in(engine, idp, "entra")
    assert admin.roles == ("Admin", "Member")
    assert set(admin.attributes) == {
        ENTRA_TENANT_ID,
        ENTRA_WIDS,
        "http://schemas.microsoft.com/claims/authnmethodsreferences",
    }
    assert admin.attributes[ENTRA_WIDS] == (GLOBAL_READER_WID,)
    _, member = await sign_in(engine, idp, "entra-200")
    assert member.roles == ("Member",)
    reply, _ = await sign_in(engine, idp, "entra-overage")
    assert header(reply, "x-saml-error") == "groups_overage"


def test_docs_show_the_tested_entra_example():
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- tested: tests/test_identity_login.py ENTRA_EXAMPLE -->\s*```python\n(.*?)```",
        text,
        re.S,
    )
    assert match, "docs/configuration.md lost its tested Entra example"
    tree = ast.parse(match.group(1))
    namespace: dict[str, Any] = {}
    exec(compile(tree, "docs/configuration.md", "exec"), namespace)  # noqa: S102 - our own docs
    shown = namespace["SETTINGS"]
    assert {k: shown[k] for k in ENTRA_EXAMPLE} == ENTRA_EXAMPLE


async def test_refused_login_leaves_no_session(idp):
    # A refused login leaves no session behind: the next request is anonymous.
    engine = make_engine(idp, roles={**GROUP_ROLES, "require_mapped_role": True})
    browser = Browser(engine, idp)
    assert (await browser.login("entra-overage")).status == 403
    reply = await engine.handle(request("GET", "/dashboard", headers={"accept": "text/html"}))
    assert reply.status == 303
