"""The JIT `provision` hook through the engine, and the SQLite example.

The hook runs once per successful login with the mapped user; it may change
the user, refuse it (`AccessDenied` -> 403 with the reason) or fail (-> 503
"try again", the traceback in the log, never a 500 or a stack trace in the page).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from examples.provision_sqlite import UserDirectory, build
from saml_middleware.claims import ENTRA_GIVEN_NAME, ENTRA_ROLE, ENTRA_SURNAME
from saml_middleware.devidp import DevIdP, DevUser
from saml_middleware.errors import AccessDenied, SAMLError
from saml_middleware.identity import SAMLUser
from tests.helpers import SECRET, SP_BASE, Browser, header, request

pytestmark = pytest.mark.anyio


def with_hook(make_engine, hook, **overrides):
    return make_engine(provision=hook, **overrides)


async def signed_in_user(browser: Browser) -> SAMLUser:
    passed = await browser.get("/dashboard")
    return passed.user


async def test_sync_hook_gets_the_mapped_user_once_and_may_change_it(make_engine, devidp):
    calls: list[tuple[SAMLUser, int]] = []

    def provision(user: SAMLUser) -> SAMLUser:
        calls.append((user, threading.get_ident()))
        return dataclasses.replace(user, user_id="app-42", roles=(*user.roles, "Billing"))

    engine = with_hook(make_engine, provision)
    browser = Browser(engine, devidp)
    reply = await browser.login("bsimon")
    assert reply.status == 303
    assert len(calls) == 1
    given, thread = calls[0]
    assert given.roles == ("Admin",) and given.email == "B.Simon@contoso.com"
    assert given.attributes[ENTRA_ROLE] == ("admins",)
    assert thread != threading.get_ident()  # a sync hook runs off the event loop
    seen = await signed_in_user(browser)
    assert seen.user_id == "app-42" and seen.roles == ("Admin", "Billing")
    await signed_in_user(browser)
    assert len(calls) == 1  # not on later requests


async def test_async_hook(make_engine, devidp):
    async def provision(user: SAMLUser) -> SAMLUser:
        return dataclasses.replace(user, display_name=f"{user.display_name} (async)")

    browser = Browser(with_hook(make_engine, provision), devidp)
    assert (await browser.login("ajones")).status == 303
    seen = await signed_in_user(browser)
    assert seen.display_name == "A.Jones (async)" and seen.roles == ("Member",)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_hook_may_deny_with_a_reason(make_engine, devidp, asynchronous):
    reason = "Your organization has no seats left: ask your administrator."

    def deny(user: SAMLUser) -> SAMLUser:
        raise AccessDenied(reason)

    async def deny_async(user: SAMLUser) -> SAMLUser:
        raise AccessDenied(reason)

    browser = Browser(with_hook(make_engine, deny_async if asynchronous else deny), devidp)
    reply = await browser.login("bsimon")
    assert reply.status == 403 and header(reply, "x-saml-error") == "access_denied"
    assert b"no seats left" in reply.body
    assert "saml_session" not in browser.cookies  # no session (an unused binding may stay)


async def test_hook_may_refuse_with_its_own_saml_error(make_engine, devidp):
    def refuse(user: SAMLUser) -> SAMLUser:
        raise SAMLError("suspended", "Your account is suspended.", 403)

    reply = await Browser(with_hook(make_engine, refuse), devidp).login("bsimon")
    assert reply.status == 403 and header(reply, "x-saml-error") == "suspended"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_hook_crash_is_a_503_page_and_a_logged_traceback(
    make_engine, devidp, caplog, asynchronous
):
    def crash(user: SAMLUser) -> SAMLUser:
        raise sqlite3.OperationalError("database is locked; dsn password=hunter2")

    async def crash_async(user: SAMLUser) -> SAMLUser:
        crash(user)
        return user

    engine = with_hook(make_engine, crash_async if asynchronous else crash)
    browser = Browser(engine, devidp)
    with caplog.at_level(logging.ERROR, logger="saml_middleware"):
        reply = await browser.login("bsimon")
    assert reply.status == 503 and header(reply, "x-saml-error") == "provision_failed"
    assert b"try signing in again" in reply.body
    assert b"Traceback" not in reply.body and b"hunter2" not in reply.body
    assert "saml_session" not in browser.cookies  # no session (an unused binding may stay)
    crashes = [r for r in caplog.records if r.exc_info]
    assert crashes and crashes[0].exc_info[0] is sqlite3.OperationalError
    assert "provision hook failed" in crashes[0].getMessage()


async def test_hook_crash_answers_json_to_api_clients(make_engine, devidp):
    def crash(user: SAMLUser) -> SAMLUser:
        raise RuntimeError("boom")

    engine = with_hook(make_engine, crash)
    saml_response = devidp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    reply = await engine.handle(
        request(
            "POST",
            "/saml/acs/",
            form={"SAMLResponse": saml_response},
            headers={"accept": "application/json"},
        )
    )
    assert reply.status == 503
    assert json.loads(reply.body)["error"] == "provision_failed"


@pytest.mark.parametrize(
    "result",
    [None, "app-42", {"user_id": "x"}, SAMLUser(is_authenticated=False)],
    ids=["none", "str", "dict", "anonymous"],
)
async def test_hook_returning_no_signed_in_user_is_a_503(make_engine, devidp, caplog, result):
    browser = Browser(with_hook(make_engine, lambda user: result), devidp)
    reply = await browser.login("bsimon")
    assert reply.status == 503 and header(reply, "x-saml-error") == "provision_failed"
    assert "dataclasses.replace" in caplog.text
    assert "saml_session" not in browser.cookies  # no session (an unused binding may stay)


async def test_hook_is_not_called_for_a_refused_login(make_engine, devidp):
    calls: list[SAMLUser] = []

    def provision(user: SAMLUser) -> SAMLUser:
        calls.append(user)
        return user

    engine = with_hook(make_engine, provision, roles__require_mapped_role=True)
    reply = await Browser(engine, devidp).login("cnoroles")
    assert reply.status == 403 and calls == []


# -- examples/provision_sqlite.py ------------------------------------------------------------------

OID = "6f1b7a0c-1111-4222-8333-444455556666"


def example_user(role: str, given: str = "Britta", surname: str = "Simon") -> DevUser:
    return DevUser(
        "britta",
        "britta.simon@contoso.com",
        "Britta",
        {
            "http://schemas.microsoft.com/identity/claims/objectidentifier": [OID],
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": [
                "britta.simon@contoso.com"
            ],
            ENTRA_GIVEN_NAME: [given],
            ENTRA_SURNAME: [surname],
            ENTRA_ROLE: [role],
        },
    )


@pytest.fixture
def example_idp() -> DevIdP:
    return DevIdP("https://idp.example.test/idp", users=[example_user("admins")])


def rows(path: Any) -> list[dict[str, Any]]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM users ORDER BY id")]
    finally:
        db.close()


async def test_sqlite_example_creates_then_updates_the_row(example_idp, tmp_path):
    db_path = tmp_path / "users.sqlite3"
    app, directory = build(SP_BASE, SECRET, {"metadata_xml": example_idp.metadata_xml()}, db_path)
    engine = app.engine
    example_idp.add_service_provider(engine.sp_metadata_xml())

    first = Browser(engine, example_idp)
    assert (await first.login("britta", page="/me")).status == 303
    [row] = rows(db_path)
    assert (row["idp_user_id"], row["email"], row["first_name"], row["login_count"]) == (
        OID,
        "britta.simon@contoso.com",
        "Britta",
        1,
    )
    assert json.loads(row["roles"]) == ["Admin"] and row["issuer"] == example_idp.entity_id
    seen = (await first.get("/me")).user
    assert seen.user_id == str(row["id"])  # the app's own key is in the session

    # In Entra: the user is renamed and moved from the admins to the developers role.
    example_idp.users["britta"] = example_user("developers", given="Britt", surname="Simons")
    second = Browser(engine, example_idp)
    assert (await second.login("britta", page="/me")).status == 303
    [row2] = rows(db_path)
    assert row2["id"] == row["id"] and row2["login_count"] == 2
    assert (row2["first_name"], row2["last_name"]) == ("Britt", "Simons")
    assert json.loads(row2["roles"]) == ["Member"]
    assert row2["created_at"] == row["created_at"]
    assert row2["last_login_at"] >= row["last_login_at"]
    assert directory.get(row["id"])["roles"] == ["Member"]


async def test_sqlite_example_refuses_a_blocked_user(example_idp, tmp_path):
    db_path = tmp_path / "users.sqlite3"
    app, _ = build(SP_BASE, SECRET, {"metadata_xml": example_idp.metadata_xml()}, db_path)
    example_idp.add_service_provider(app.engine.sp_metadata_xml())
    assert (await Browser(app.engine, example_idp).login("britta", page="/me")).status == 303
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE users SET blocked = 1")
    db.close()
    browser = Browser(app.engine, example_idp)
    reply = await browser.login("britta", page="/me")
    assert reply.status == 403 and b"blocked" in reply.body
    assert "saml_session" not in browser.cookies


async def test_sqlite_example_app_over_asgi(example_idp, tmp_path):
    db_path = tmp_path / "users.sqlite3"
    app, _ = build(SP_BASE, SECRET, {"metadata_xml": example_idp.metadata_xml()}, db_path)
    example_idp.add_service_provider(app.engine.sp_metadata_xml())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=SP_BASE) as client:
        html = {"accept": "text/html"}
        reply = await client.get("/me", headers=html)
        assert reply.status_code == 303
        reply = await client.get(reply.headers["location"], headers=html)
        query = parse_qs(urlsplit(reply.headers["location"]).query)
        info = example_idp.parse_authn_request(query["SAMLRequest"][0], "redirect")
        saml_response = example_idp.create_response(
            "britta", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
        )
        reply = await client.post(
            "/saml/acs/",
            data={"SAMLResponse": saml_response, "RelayState": query["RelayState"][0]},
        )
        assert reply.status_code == 303 and reply.headers["location"] == "/me"
        me = await client.get("/me")
    assert me.status_code == 200
    data = me.json()
    assert data["idp_user_id"] == OID and data["roles"] == ["Admin"]
    assert data["display_name"] == "britta.simon@contoso.com"  # no displayname claim sent


def test_user_directory_get_unknown_row(tmp_path):
    assert UserDirectory(tmp_path / "u.sqlite3").get(999) is None
