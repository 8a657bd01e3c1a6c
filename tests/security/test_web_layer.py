"""The web layer under attack (catalogue W1-W12, C12): redirects, cookies, logout, methods.

Driven through the engine like an adapter would; the development IdP signs
genuine responses. Cookie-codec details (every tampering shape, timeouts) are in
tests/test_session_cookie.py; here the engine's answers to them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from saml_middleware.engine import PassThrough, Response
from saml_middleware.saml.sp import UNVERIFIABLE, UNVERIFIABLE_CODE
from tests import forge
from tests.helpers import SECRET, Browser, header, request
from tests.security.harness import EVIL, RELAY, Acs, refusal_log

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example.test"


# -- W1: open redirects through `next` and RelayState -------------------------------------

UNSAFE_TARGETS = [
    "https://evil.test/",
    "//evil.test/x",
    "/\\evil.test",
    "\\/evil.test",
    "https:evil.test",
    "javascript:alert(1)",
    "%2F%2Fevil.test",
    " //evil.test",
    "/ok\r\nSet-Cookie: x=1",
    "/ok\tx",
    "https://app.example.test@evil.test/",
    "https://app.example.test.evil.test/",
    "http://app.example.test/",  # another scheme is another origin
    "/" + "a" * 10_000,
]


@pytest.mark.parametrize("target", UNSAFE_TARGETS)
async def test_unsafe_relay_state_never_becomes_the_redirect(make_acs, target):
    acs: Acs = make_acs()
    browser = Browser(acs.engine, acs.idp)  # IdP-initiated: RelayState decides where to go
    reply = await browser.post_acs(acs.mint_encoded(), relay_state=target)
    assert reply.status == 303 and header(reply, "location") == "/"


@pytest.mark.parametrize("target", UNSAFE_TARGETS)
async def test_unsafe_next_is_replaced_by_after_login(make_acs, target):
    acs: Acs = make_acs()
    reply = await _login_round_trip(acs, target)
    assert reply.status == 303 and header(reply, "location") == "/"


async def _login_round_trip(acs: Acs, target: str) -> Response:
    """`/saml/login/?next=target`, the IdP's answer and the ACS reply (the signed
    RelayState carries the page to return to)."""
    acs.register()
    browser = Browser(acs.engine, acs.idp)
    reply = await browser.get("/saml/login/?" + urlencode({"next": target}))
    assert isinstance(reply, Response) and reply.status == 303
    query = parse_qs(urlsplit(header(reply, "location") or "").query)
    info = acs.idp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    return await browser.post_acs(acs.mint_encoded(info.request_id), query["RelayState"][0])


async def test_allowed_redirect_host_is_honoured(make_acs):
    acs: Acs = make_acs(security__allowed_redirect_hosts=["docs.example.test"])
    browser = Browser(acs.engine, acs.idp)
    reply = await browser.post_acs(acs.mint_encoded(), relay_state="https://docs.example.test/x")
    # IdP-initiated RelayState is only ever a local path; `next` may name the host.
    assert header(reply, "location") == "/"
    login = await _login_round_trip(acs, "https://docs.example.test/x")
    assert login.status == 303 and header(login, "location") == "https://docs.example.test/x"


# -- W3, W4, W5, W6: cookies -------------------------------------------------------------------


async def test_login_start_sets_only_the_binding_cookie_the_acs_needs(make_acs):
    """W3: the login binding is the one cookie set before the IdP; SameSite=None and
    Secure, so the IdP's cross-site POST carries it (tests/test_login_requests.py)."""
    acs: Acs = make_acs()
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    assert list(browser.cookies) == ["saml_session_login"]
    reply = await acs.post(acs.mint(request_id), browser)
    await acs.assert_logged_in(reply)
    assert list(browser.cookies) == ["saml_session"]  # the binding is gone once used


async def test_login_issues_a_new_session_id_over_an_existing_session(make_acs):
    """W4: no fixation: a planted (even valid) session is replaced, never extended."""
    acs: Acs = make_acs()
    browser = Browser(acs.engine, acs.idp)
    await acs.assert_logged_in(await acs.post_encoded(acs.mint_encoded(), browser))
    name = acs.engine.settings.session.cookie_name
    planted = acs.engine.sessions.decode(browser.cookies[name])
    assert planted is not None
    await acs.assert_logged_in(await acs.post_encoded(acs.mint_encoded(), browser))
    fresh = acs.engine.sessions.decode(browser.cookies[name])
    assert fresh is not None and fresh.session_id != planted.session_id


def _flip(value: str, index: int) -> str:
    return value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1 :]


def _tampered(value: str) -> list[str]:
    unsigned = base64.urlsafe_b64encode(
        json.dumps({"sid": "x", "iat": 0, "u": {"name_id": "admin@contoso.com"}}).encode()
    ).decode()
    return [
        _flip(value, len(value) - 2),  # a signature byte
        _flip(value, len(value) // 3),  # a payload byte
        value.rsplit(".", 1)[0],  # the signature removed
        unsigned,  # a payload nobody signed
        unsigned + "." + value.rsplit(".", 2)[-2] + "." + value.rsplit(".", 1)[-1],  # swapped
        value * 3,  # too long
        "",
    ]


async def test_tampered_session_cookie_is_anonymous(make_acs):
    """W5: a tampered cookie is no session: a login redirect, never a 500."""
    acs: Acs = make_acs()
    browser = Browser(acs.engine, acs.idp)
    await acs.assert_logged_in(await acs.post_encoded(acs.mint_encoded(), browser))
    name = acs.engine.settings.session.cookie_name
    for value in _tampered(browser.cookies[name]):
        reply = await acs.engine.handle(
            request("GET", RELAY, headers={"accept": "text/html"}, cookies={name: value})
        )
        assert isinstance(reply, Response) and reply.status == 303, value[:40]
        public = await acs.engine.handle(request("GET", "/saml-free", cookies={name: value}))
        assert isinstance(public, Response | PassThrough)


async def test_cookie_from_another_secret_is_anonymous(make_acs):
    acs: Acs = make_acs()
    other: Acs = make_acs(secret_key=SECRET[::-1])
    browser = Browser(other.engine, other.idp)
    await other.assert_logged_in(await other.post_encoded(other.mint_encoded(), browser))
    reply = await acs.engine.handle(
        request("GET", RELAY, headers={"accept": "text/html"}, cookies=browser.cookies)
    )
    assert isinstance(reply, Response) and reply.status == 303


async def test_session_cookie_flags(make_acs):
    """W6: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain."""
    acs: Acs = make_acs()
    reply = await acs.post_encoded(acs.mint_encoded())
    cookie = header(reply, "set-cookie") or ""
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "domain=" not in cookie.lower()


# -- W8: logout only by POST, and only from this site -----------------------------------------


async def _signed_in(acs: Acs) -> Browser:
    browser = Browser(acs.engine, acs.idp)
    await acs.assert_logged_in(await acs.post_encoded(acs.mint_encoded(), browser))
    return browser


async def _still_signed_in(browser: Browser) -> bool:
    return isinstance(await browser.get(RELAY), PassThrough)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_get_logout_does_not_end_the_session(make_acs, method):
    acs: Acs = make_acs()
    browser = await _signed_in(acs)
    reply = await acs.engine.handle(
        request(method, "/saml/logout/?next=/bye", cookies=browser.cookies)
    )
    assert reply.status == 200 and header(reply, "set-cookie") is None
    assert b"<form method=post action='/saml/logout/?next=/bye'>" in reply.body
    assert header(reply, "x-frame-options") == "DENY"
    assert "frame-ancestors 'none'" in (header(reply, "content-security-policy") or "")
    assert b"<script" not in reply.body  # never auto-submitted
    assert await _still_signed_in(browser)


async def test_get_logout_without_session_just_goes_on(make_acs):
    acs: Acs = make_acs()
    reply = await acs.engine.handle(request("GET", "/saml/logout/?next=/bye"))
    assert reply.status == 303 and header(reply, "location") == "/bye"
    assert header(reply, "set-cookie") is None


async def test_logout_page_drops_an_unsafe_next(make_acs):
    acs: Acs = make_acs()
    browser = await _signed_in(acs)
    reply = await acs.engine.handle(
        request("GET", "/saml/logout/?next=https://evil.test/", cookies=browser.cookies)
    )
    assert b"evil.test" not in reply.body
    assert b"action='/saml/logout/'" in reply.body


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": ORIGIN, "sec-fetch-site": "same-origin"}, {"sec-fetch-site": "same-site"}],
    ids=["no-origin", "same-origin", "same-site"],
)
async def test_post_logout_ends_the_session(make_acs, headers):
    acs: Acs = make_acs()
    browser = await _signed_in(acs)
    reply = await acs.engine.handle(
        request("POST", "/saml/logout/", headers=headers, cookies=browser.cookies)
    )
    # On to the IdP's Single Logout endpoint (its metadata has one).
    assert reply.status == 303 and "/slo?SAMLRequest=" in (header(reply, "location") or "")
    assert "Max-Age=0" in (header(reply, "set-cookie") or "")


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},
        {"origin": "null"},
        {"origin": "https://app.example.test.evil.test"},
        {"sec-fetch-site": "cross-site"},
        {"origin": ORIGIN, "sec-fetch-site": "cross-site"},
    ],
    ids=["evil-origin", "null-origin", "lookalike-origin", "cross-site", "cross-site-fetch"],
)
async def test_cross_site_post_logout_is_refused(make_acs, headers):
    acs: Acs = make_acs()
    browser = await _signed_in(acs)
    with refusal_log() as log:
        reply = await acs.engine.handle(
            request("POST", "/saml/logout/", headers=headers, cookies=browser.cookies)
        )
    assert reply.status == 403 and log.codes == ["csrf"]
    assert header(reply, "set-cookie") is None and header(reply, "location") is None
    assert await _still_signed_in(browser)


async def test_logout_refuses_other_methods(make_acs):
    acs: Acs = make_acs()
    reply = await acs.engine.handle(request("PUT", "/saml/logout/"))
    assert reply.status == 405


# -- W11: the ACS takes one form POST --------------------------------------------------------


async def test_acs_reads_the_form_body_only(make_acs):
    """A SAMLResponse in the query string is never read."""
    acs: Acs = make_acs()
    query = urlencode({"SAMLResponse": acs.mint_encoded()})
    get = await acs.engine.handle(request("GET", f"/saml/acs/?{query}"))
    assert get.status == 405
    post = await acs.engine.handle(request("POST", f"/saml/acs/?{query}", form={}))
    assert post.status == 400 and header(post, "set-cookie") is None


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=x", "application/json", "text/plain", ""],
)
async def test_acs_refuses_other_content_types(make_acs, content_type):
    acs: Acs = make_acs()
    body = b"SAMLResponse=" + acs.mint_encoded().encode()
    reply = await acs.engine.handle(
        request("POST", "/saml/acs/", body=body, headers={"content-type": content_type})
    )
    assert reply.status == 400 and header(reply, "x-saml-error") == "malformed"


async def test_acs_refuses_a_repeated_field(make_acs):
    acs: Acs = make_acs()
    encoded = acs.mint_encoded()
    body = f"SAMLResponse={encoded}&SAMLResponse={encoded}".replace("+", "%2B").encode()
    reply = await acs.engine.handle(
        request(
            "POST",
            "/saml/acs/",
            body=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    )
    assert reply.status == 400 and header(reply, "x-saml-error") == "malformed"


# -- W12: no oracle --------------------------------------------------------------------------


async def test_signature_and_decryption_failures_look_alike(make_acs, sp_keys, attacker_keys):
    """Each failure of the family gets byte-identical answers; only the log tells them apart."""
    acs: Acs = make_acs(sp__key_pem=sp_keys.key_pem, sp__cert_pem=sp_keys.cert_pem)

    def unsigned(root):
        forge.strip_signatures(root)

    def attacker(root):
        forge.set_name_id(root, "admin@contoso.com")
        forge.resign(root, attacker_keys)

    def sha1(root):
        forge.resign(root, acs.keys, algorithm="sha1")

    def reference(root):
        forge.one(forge.assertion(root), "ds:Signature/ds:SignedInfo/ds:Reference").set(
            "URI", "#elsewhere"
        )

    def undecryptable(root):
        forge.encrypt_assertion(root, attacker_keys.cert_pem)

    def unknown_issuer(root):
        forge.set_assertion_issuer(root, EVIL)
        forge.encrypt_assertion(root, sp_keys.cert_pem)  # the issuer is seen after decryption

    mutations: dict[str, Callable] = {
        "signature_required": unsigned,
        "invalid_signature": attacker,
        "disallowed_algorithm": sha1,
        "invalid_signed_element": reference,
        "decryption_failed": undecryptable,
        "untrusted_key": unknown_issuer,
    }
    assert set(mutations) == UNVERIFIABLE
    answers = {}
    for code, mutate in mutations.items():
        root = acs.mint()
        mutate(root)
        for accept in ("text/html", "application/json"):
            browser = Browser(acs.engine, acs.idp)
            with refusal_log() as log:
                reply = await acs.engine.handle(
                    request(
                        "POST",
                        "/saml/acs/",
                        form={"SAMLResponse": forge.encode(root)},
                        headers={"accept": accept},
                        cookies=browser.cookies,
                    )
                )
            assert log.codes == [code]
            answers.setdefault(accept, set()).add(
                (reply.status, tuple(sorted(reply.headers)), reply.body)
            )
    for accept, distinct in answers.items():
        assert len(distinct) == 1, accept
        ((status, headers, _),) = distinct
        assert status == 403 and ("x-saml-error", UNVERIFIABLE_CODE) in headers


# -- C12: replay, also under concurrency -----------------------------------------------------


async def test_twenty_parallel_posts_of_one_response_log_in_once(make_acs):
    acs: Acs = make_acs()
    encoded = acs.mint_encoded()
    browsers = [Browser(acs.engine, acs.idp) for _ in range(20)]
    with refusal_log() as log:
        replies = await asyncio.gather(*(b.post_acs(encoded, RELAY) for b in browsers))
    assert sorted(r.status for r in replies) == [303] + [403] * 19
    assert log.codes == ["replay"] * 19
    assert sum(1 for b in browsers if b.cookies) == 1


async def test_twenty_parallel_posts_of_a_solicited_response_log_in_once(make_acs):
    acs: Acs = make_acs()
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    encoded = acs.mint_encoded(request_id)
    # Copies of the browser that started it: only the marks refuse the others.
    browsers = [Browser(acs.engine, acs.idp, cookies=dict(browser.cookies)) for _ in range(20)]
    with refusal_log() as log:
        replies = await asyncio.gather(*(b.post_acs(encoded, RELAY) for b in browsers))
    assert sorted(r.status for r in replies) == [303] + [403] * 19
    assert set(log.codes) <= {"replay", "wrong_in_response_to"} and len(log.codes) == 19
    assert sum(1 for b in browsers if "saml_session" in b.cookies) == 1


async def test_replay_after_the_first_login_is_refused(make_acs):
    acs: Acs = make_acs()
    encoded = acs.mint_encoded()
    await acs.assert_logged_in(await acs.post_encoded(encoded))
    await acs.assert_refused(await acs.post_encoded(encoded), "replay")
