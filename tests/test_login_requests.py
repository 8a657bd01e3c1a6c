"""Outstanding AuthnRequests: signed IDs (nothing stored at login), bound to the browser.

The login page writes nothing to the store, so no flood of anonymous requests
can evict what the store must keep. The request's ID is a token the SP signed
(expiry, organization, test flag, nonce), checked at the ACS before any
cryptography, and marked used once its answer passed every other check. A
cookie names the logins a browser started: an answer posted from another
browser (login CSRF) is refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from saml_middleware.authn_requests import MAX_PENDING_LOGINS, RequestTokens
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from tests import forge
from tests.helpers import SECRET, Browser, header, request, set_cookies

pytestmark = pytest.mark.anyio

# xs:ID is an NCName; Entra also refuses an ID that starts with a digit.
NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
FLOOD = 1500  # requests per endpoint: thousands in all, a few seconds


async def to_idp(browser: Browser, url: str) -> tuple[str, str]:
    """Follow a login (or Test SSO) URL to the IdP: (AuthnRequest ID, RelayState)."""
    reply = await browser.get(url)
    assert isinstance(reply, Response) and reply.status == 303
    query = parse_qs(urlsplit(header(reply, "location") or "").query)
    info = browser.idp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    return info.request_id, query["RelayState"][0]


def answer(engine: Engine, devidp: DevIdP, request_id: str | None, user: str = "bsimon") -> str:
    return devidp.create_response(
        user, sp_entity_id=engine.settings.sp.entity_id, in_response_to=request_id
    )


def signed_in(browser: Browser) -> bool:
    return browser.engine.settings.session.cookie_name in browser.cookies


# -- the ID -------------------------------------------------------------------------------


async def test_request_ids_are_short_ncnames_that_never_start_with_a_digit(engine, devidp):
    ids = [(await to_idp(Browser(engine, devidp), "/saml/login/"))[0] for _ in range(50)]
    ids += [(await to_idp(Browser(engine, devidp), "/saml/test/"))[0] for _ in range(50)]
    longest_slug = "a" + "-b" * 30 + "c"  # 63 characters, the longest organization slug
    tokens = RequestTokens(SECRET)
    ids += [tokens.issue(longest_slug, test=True, now=time.time()).request_id for _ in range(50)]
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        assert NCNAME.fullmatch(request_id), request_id
        assert len(request_id) < 200, request_id


async def test_a_flood_of_login_and_test_requests_stores_nothing(make_engine, devidp):
    engine = make_engine(session__backend="store")
    # An accepted IdP-initiated answer: its replay mark, a session and its index.
    first = Browser(engine, devidp)
    accepted = answer(engine, devidp, None)
    assert (await first.post_acs(accepted)).status == 303
    before = engine.store.sizes()
    assert before["replay"] == 1 and before["sessions"] == 1 and before["session_index"] == 1
    for i in range(FLOOD):
        login = await engine.handle(request("GET", f"/saml/login/?next=/page{i}"))
        test = await engine.handle(request("GET", "/saml/test/"))
        assert isinstance(login, Response) and isinstance(test, Response)
        assert login.status == 303 and test.status == 303
    assert engine.store.sizes() == before  # not one entry more
    replayed = await Browser(engine, devidp).post_acs(accepted)
    assert replayed.status == 403 and header(replayed, "x-saml-error") == "replay"
    assert isinstance(await first.get("/dashboard"), PassThrough)


# -- checked before any cryptography ----------------------------------------------------------


def tampered(request_id: str) -> str:
    """The same token with one character of its signature changed."""
    last = request_id[-2]
    return request_id[:-2] + ("A" if last != "A" else "B") + request_id[-1]


async def test_a_request_id_the_sp_did_not_sign_is_refused_before_the_signature(engine, devidp):
    browser = Browser(engine, devidp)
    request_id, relay = await to_idp(browser, "/saml/login/?next=/x")
    # A broken assertion signature too: the request ID is what is refused first.
    root = forge.decode(answer(engine, devidp, tampered(request_id)))
    forge.set_scd_in_response_to(root, tampered(request_id))
    reply = await browser.post_acs(forge.encode(root), relay)
    assert reply.status == 403 and header(reply, "x-saml-error") == "wrong_in_response_to"
    assert b"unknown, expired or already used" in reply.body
    assert not signed_in(browser)
    # The genuine answer to the genuine request still signs in.
    ok = await browser.post_acs(answer(engine, devidp, request_id), relay)
    assert ok.status == 303 and header(ok, "location") == "/x"


@pytest.mark.parametrize(("age", "accepted"), [(800, True), (901, False)])
async def test_a_request_expires_after_fifteen_minutes(make_engine, devidp, age, accepted):
    started_at = time.time() - age
    now: list[float] = [started_at]
    engine = make_engine(clock=lambda: now[0])
    browser = Browser(engine, devidp)
    request_id, relay = await to_idp(browser, "/saml/login/")
    now[0] = time.time()  # the IdP answers (a fresh assertion) `age` seconds later
    reply = await browser.post_acs(answer(engine, devidp, request_id), relay)
    if accepted:
        assert reply.status == 303 and signed_in(browser)
    else:
        assert reply.status == 403 and header(reply, "x-saml-error") == "wrong_in_response_to"
        assert not signed_in(browser)


# -- bound to the browser -----------------------------------------------------------------


async def test_a_solicited_answer_posted_from_another_browser_is_refused(make_engine, devidp):
    """Login CSRF: the attacker's own solicited answer, posted from the victim's browser."""
    engine = make_engine(security__allow_idp_initiated=False)
    attacker, victim = Browser(engine, devidp), Browser(engine, devidp)
    request_id, relay = await to_idp(attacker, "/saml/login/")
    await to_idp(victim, "/saml/login/")  # the victim may have a login of its own pending
    attackers_answer = answer(engine, devidp, request_id, user="ajones")
    reply = await victim.post_acs(attackers_answer, relay)
    assert reply.status == 403 and header(reply, "x-saml-error") == "wrong_browser"
    assert b"start the sign-in again from this browser" in reply.body
    assert not signed_in(victim)
    assert isinstance(await victim.get("/dashboard"), Response)  # still sent to sign in
    # Refused without using the request up: in its own browser it still completes.
    assert (await attacker.post_acs(attackers_answer, relay)).status == 303


async def test_a_test_sso_answer_from_another_browser_is_refused(engine, devidp):
    started, other = Browser(engine, devidp), Browser(engine, devidp)
    request_id, relay = await to_idp(started, "/saml/test/")
    reply = await other.post_acs(answer(engine, devidp, request_id), relay)
    assert reply.status == 403 and header(reply, "x-saml-error") == "wrong_browser"
    # Also when the IdP refused the sign-in (the early diagnosis of an error status).
    root = forge.decode(answer(engine, devidp, request_id))
    forge.set_status(root, "urn:oasis:names:tc:SAML:2.0:status:Responder")
    reply = await other.post_acs(forge.encode(root), relay)
    assert reply.status == 403 and header(reply, "x-saml-error") == "wrong_browser"
    # From the browser that started it: the diagnostics page.
    page = await started.post_acs(forge.encode(root), relay)
    assert page.status == 200 and b"<section id=summary data-result='fail'>" in page.body


async def test_several_tabs_may_sign_in_at_once(engine, devidp):
    browser = Browser(engine, devidp)
    started = [await to_idp(browser, f"/saml/login/?next=/tab{i}") for i in range(3)]
    for i, (request_id, relay) in reversed(list(enumerate(started))):
        reply = await browser.post_acs(answer(engine, devidp, request_id), relay)
        assert reply.status == 303 and header(reply, "location") == f"/tab{i}"
    assert list(browser.cookies) == ["saml_session"]  # every binding used and cleared


async def test_a_browser_keeps_only_its_latest_logins(engine, devidp):
    browser = Browser(engine, devidp)
    started = [await to_idp(browser, "/saml/login/") for _ in range(MAX_PENDING_LOGINS + 1)]
    binding = browser.cookies["saml_session_login"]
    assert len(binding) < 1024
    oldest, newest = started[0], started[-1]
    refused = await browser.post_acs(answer(engine, devidp, oldest[0]), oldest[1])
    assert header(refused, "x-saml-error") == "wrong_browser"
    assert (await browser.post_acs(answer(engine, devidp, newest[0]), newest[1])).status == 303


@pytest.mark.parametrize(
    ("https_only", "attributes"),
    [(True, {"HttpOnly", "SameSite=None", "Secure"}), (False, {"HttpOnly", "SameSite=Lax"})],
)
async def test_the_binding_cookie_reaches_the_acs_on_the_idps_post(
    make_engine: Callable[..., Engine], https_only: bool, attributes: set[str]
) -> None:
    """SameSite=None (with Secure) for the IdP's cross-site POST; plain-http
    development gets SameSite=Lax, which works when the IdP is on the same site."""
    engine = make_engine(session__https_only=https_only)
    reply = await engine.handle(request("GET", "/saml/login/"))
    assert isinstance(reply, Response)
    (binding,) = set_cookies(reply, "saml_session_login")
    parts = [part.strip() for part in binding.split(";")[1:]]
    assert {p for p in parts if not p.startswith(("Path=", "Max-Age="))} == attributes
    assert "Path=/" in parts and int(dict(p.split("=") for p in parts if "=" in p)["Max-Age"]) > 0
