"""No input gives a 500, and none leaves a traceback in the log.

Impossible xs:dateTime values (hour 24, second 60, 30 February, year 0, huge
years, bad offsets, other scripts' digits) in every time of a Response and of a
LogoutRequest / LogoutResponse, unsigned and signed with the IdP's key; URLs
`urlsplit` cannot read (an unclosed IPv6 bracket, a bracketed non-address, a
netloc NFKC changes, a bad port) in `next`, RelayState, Origin, Host and the
forwarded headers; at every endpoint (ACS, SLS both bindings, login, logout,
Test SSO, metadata) and on protected and unprotected app paths, through the
engine and once through each adapter (ASGI, WSGI).

First one example per fixed 500 (each failed before the fix), then the
properties (hypothesis). Budget: `SAML_FUZZ_EXAMPLES` (default 200, as
test_fuzz_engine.py) shared between the properties, at least 10 each, no
deadline, derandomized (the same examples on every run) unless
SAML_FUZZ_RANDOM=1. A longer, random run:

    SAML_FUZZ_EXAMPLES=3000 SAML_FUZZ_RANDOM=1 python -m pytest tests/test_no_server_error.py
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import io
import logging
import os
import uuid
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree

from saml_middleware import SAMLMiddleware, SAMLWSGIMiddleware
from saml_middleware import engine as engine_module
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import (
    Endpoint,
    Engine,
    HttpRequest,
    PassThrough,
    Response,
    UnexpectedErrors,
)
from saml_middleware.saml.logout_messages import redirect_url
from tests import forge
from tests.forge import KeyPair
from tests.helpers import (
    SP_BASE,
    fuzz_budget,
    header,
    remember_cookies,
    request,
    set_cookies,
    settings_for,
)
from tests.security.harness import IDP_URL

SLS_URL = f"{SP_BASE}/saml/sls/"
BSIMON = "B.Simon@contoso.com"

# Shares of the budget, by property (ACS and SLS examples verify signatures).
SHARES = {
    "acs_times": 0.22,
    "test_sso_times": 0.10,
    "sls_times": 0.18,
    "urls": 0.22,
    "hosts": 0.13,
    "metadata_times": 0.05,
    "asgi": 0.05,
    "wsgi": 0.05,
}


def budget(name: str) -> Any:
    return fuzz_budget(
        SHARES[name], at_least=10, derandomize=os.environ.get("SAML_FUZZ_RANDOM") != "1"
    )


# -- what hostile input looks like --------------------------------------------------------

# The known 500s, each a valid-looking xs:dateTime that names no instant.
IMPOSSIBLE_TIMES = [
    "2026-12-03T24:00:00Z",
    "2026-12-03T10:00:60Z",
    "2026-02-30T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "99999-01-01T00:00:00Z",
    "2026-12-03T10:00:00+25:00",
]
# Characters lxml can put in an attribute (no controls, no surrogates).
XML_TEXT = st.characters(categories=["L", "M", "N", "P", "S", "Zs"])

hostile_times = st.one_of(
    st.builds(
        "{}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
        st.sampled_from(["0000", "0001", "1969", "1970", "2026", "9999", "10000", "-0001"])
        | st.integers(0, 10**15).map(str)
        | st.just("\u0662\u0660\u0662\u0666"),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".", ".5", ".1234567"]) | st.from_regex(r"\A\.[0-9]{1,40}\Z"),
        st.sampled_from(
            ["", "Z", "z", "+00:00", "-00:00", "+14:00", "-14:01", "+25:00", "+05:30", "-00:60"]
            + ["+0000", "Z+00:00", " Z", "GMT", "+99:99"]
        ),
    ),
    st.sampled_from(IMPOSSIBLE_TIMES),
    st.text(alphabet=XML_TEXT, max_size=40),
)

# Authorities `urlsplit` refuses, or that normalization changes, and plain ones.
AUTHORITIES = [
    "app.example.test",
    "evil.test",
    "[::1",
    "[::1]",
    "[:::::]",
    "[v1.x]",
    "[::1]:99999",
    "app.example.test:99999",
    "app.example.test:-1",
    "app.example.test:x",
    "\uff41pp.example.test",  # fullwidth "a"
    "a\u2100b",  # NFKC "a/c"
    "evil\uff03.test",  # NFKC "#"
    "evil\u2047.test",  # NFKC "??"
    "app.example.test@evil.test",
    "xn--",
    "\u0130.example.test",
    "app.example.test.",
    "",
]
URL_CHARS = "abz09.-_~/\\?#%@:[] \t\uff0f\uff03\u2100\u2047\u00e9"
hostile_hosts = st.sampled_from(AUTHORITIES) | st.text(alphabet=URL_CHARS, max_size=30)
hostile_urls = st.one_of(
    st.builds(
        "{}{}{}".format,
        st.sampled_from(["https://", "http://", "//", "///", "/\\", "HTTPS://", "javascript:", ""]),
        hostile_hosts,
        st.text(alphabet=URL_CHARS, max_size=20),
    ),
    st.text(alphabet=XML_TEXT, max_size=60),
)


# -- the parts ------------------------------------------------------------------------------


def _engine(idp: DevIdP, **overrides: Any) -> Engine:
    engine = Engine(settings_for(idp, paths__exempt=["/public"], **overrides))
    idp.add_service_provider(engine.sp_metadata_xml())
    return engine


@pytest.fixture(scope="module")
def engine(idp: DevIdP) -> Engine:
    """One engine for a whole property: every example uses fresh message IDs."""
    return _engine(idp)


@pytest.fixture(scope="module")
def forwarded_engine(idp: DevIdP) -> Engine:
    """Behind a proxy: X-Forwarded-Proto/Host and Host are read."""
    return _engine(
        idp,
        security__trust_forwarded_headers=True,
        security__allowed_redirect_hosts=["allowed.example.test"],
    )


@pytest.fixture(scope="module")
def tenants_engine(idp: DevIdP) -> Engine:
    """Organizations on their own hosts: the Host header names the organization."""
    organization = {"idp": {"metadata_xml": idp.metadata_xml()}}  # strict: the default
    settings = settings_for(
        idp,
        tenants={"acme": organization},
        tenant_options={
            "resolver": {"host": "{slug}.app.example.test"},
            "base_url": "https://{slug}.app.example.test",
        },
        security__trust_forwarded_headers=True,
    )
    del settings["idp"]
    return Engine(settings)


@pytest.fixture(scope="module")
def baseline(idp: DevIdP, engine: Engine) -> bytes:
    """A genuine IdP-initiated Response, the assertion signed (Entra's default)."""
    saml_response = idp.create_response(
        "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
    )
    return etree.tostring(forge.decode(saml_response))


@pytest.fixture(scope="module")
def logout_request(idp: DevIdP, engine: Engine) -> bytes:
    """A LogoutRequest from the IdP for B.Simon, unsigned (signed per example)."""
    _, outbound = idp.create_logout_request(
        engine.settings.sp.entity_id, BSIMON, binding="post", sign=False
    )
    return base64.b64decode(outbound.form["SAMLRequest"])


@pytest.fixture(scope="module")
def session_cookie(engine: Engine, baseline: bytes, idp_keys: KeyPair) -> dict[str, str]:
    """B.Simon's session cookie (cookie sessions: valid for the whole module)."""
    reply = post_acs(engine, fresh(baseline, idp_keys))
    assert reply.status == 303
    name = engine.settings.session.cookie_name
    value = (header(reply, "set-cookie") or "").split(";", 1)[0].split("=", 1)[1]
    return {name: value}


def run(engine: Engine, req: HttpRequest) -> Response | PassThrough:
    return asyncio.run(engine.handle(req))


def post_acs(
    engine: Engine,
    root: etree._Element,
    relay_state: str | None = None,
    cookies: dict[str, str] | None = None,
) -> Response:
    form = {"SAMLResponse": forge.encode(root)}
    if relay_state is not None:
        form["RelayState"] = relay_state
    reply = run(engine, request("POST", "/saml/acs/", form=form, cookies=cookies))
    assert isinstance(reply, Response)
    return reply


def new_id() -> str:
    return "_" + uuid.uuid4().hex


def fresh(xml: bytes, keys: KeyPair) -> etree._Element:
    """`xml` with new Response and Assertion IDs, signed again: never a replay."""
    root = etree.fromstring(xml)
    root.set("ID", new_id())
    forge.assertion(root).set("ID", new_id())
    forge.resign(root, keys)
    return root


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def no_traceback_logged() -> Iterator[list[logging.LogRecord]]:
    """Every warning and error logged meanwhile (any logger); none may carry a traceback."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
    tracebacks = [
        f"{r.name}: {r.getMessage()[:200]}"
        for r in handler.records
        if r.exc_info or "Traceback" in r.getMessage()
    ]
    assert tracebacks == []


def assert_answered(reply: Response | PassThrough) -> None:
    """An answer (or the app's), never a 5xx, a traceback, or a refusal that sets state."""
    if isinstance(reply, PassThrough):
        return
    assert reply.status < 500, (reply.status, header(reply, "x-saml-error"))
    assert b"Traceback" not in reply.body
    if reply.status >= 400:
        assert header(reply, "location") is None


def refused_as(reply: Response | PassThrough) -> tuple[int, str | None]:
    assert isinstance(reply, Response)
    return reply.status, header(reply, "x-saml-error")


# -- where the times are ----------------------------------------------------------------------


def _authn_statement(root: etree._Element) -> etree._Element:
    return forge.one(forge.assertion(root), "saml:AuthnStatement")


RESPONSE_TIMES: dict[str, Any] = {
    "Response IssueInstant": (lambda root: root, "IssueInstant"),
    "Assertion IssueInstant": (forge.assertion, "IssueInstant"),
    "Conditions NotBefore": (forge.conditions, "NotBefore"),
    "Conditions NotOnOrAfter": (forge.conditions, "NotOnOrAfter"),
    "SubjectConfirmationData NotOnOrAfter": (forge.subject_confirmation_data, "NotOnOrAfter"),
    "SubjectConfirmationData NotBefore": (forge.subject_confirmation_data, "NotBefore"),
    "AuthnStatement SessionNotOnOrAfter": (_authn_statement, "SessionNotOnOrAfter"),
    "AuthnStatement AuthnInstant": (_authn_statement, "AuthnInstant"),
}


def with_time(
    xml: bytes, keys: KeyPair, place: str, value: str, signing: str, in_response_to: str | None
) -> etree._Element:
    """The Response with one time set to `value`, then signed as `signing` says:

    "as sent" (not signed again: a changed assertion's signature breaks, a changed
    Response envelope keeps the genuine assertion valid), "stripped" (no
    signature at all), "assertion" or "both" (signed again by the IdP's key).
    """
    root = etree.fromstring(xml)
    if signing != "as sent":
        root.set("ID", new_id())
        forge.assertion(root).set("ID", new_id())
    if in_response_to is not None:
        forge.set_response_in_response_to(root, in_response_to)
        forge.set_scd_in_response_to(root, in_response_to)
    element, attribute = RESPONSE_TIMES[place]
    element(root).set(attribute, value)
    if signing == "stripped":
        forge.strip_signatures(root)
    elif signing in ("assertion", "both"):
        forge.resign(root, keys, response=signing == "both")
    return root


def logout_message(logout_request: bytes, kind: str, attribute: str, value: str) -> bytes:
    """A LogoutRequest (the IdP's) or a LogoutResponse with `attribute` set to `value`."""
    if kind == "LogoutRequest":
        root = etree.fromstring(logout_request)
    else:
        root = etree.fromstring(
            f'<samlp:LogoutResponse xmlns:samlp="{forge.SAMLP}" xmlns:saml="{forge.SAML}" '
            f'ID="x" Version="2.0" IssueInstant="x" Destination="{SLS_URL}" '
            f'InResponseTo="_unknown"><saml:Issuer>{IDP_URL}</saml:Issuer><samlp:Status>'
            f'<samlp:StatusCode Value="{forge.STATUS_SUCCESS}"/></samlp:Status>'
            "</samlp:LogoutResponse>".encode()
        )
        root.set("IssueInstant", forge.from_now(0))
    root.set("ID", new_id())
    root.set(attribute, value)
    return etree.tostring(root)


def sls_request(
    xml: bytes, kind: str, binding: str, keys: KeyPair | None, relay_state: str | None = None
) -> HttpRequest:
    """The SLS request carrying `xml`, signed by `keys` (query or enveloped) when given."""
    field = "SAMLRequest" if kind == "LogoutRequest" else "SAMLResponse"
    if binding == "redirect":
        url = redirect_url(SLS_URL, field, xml, relay_state, keys.key_pem if keys else None)
        parts = urlsplit(url)
        return request("GET", f"{parts.path}?{parts.query}")
    root = etree.fromstring(xml)
    if keys is not None:
        forge.sign(root, keys)
    form = {field: forge.encode(root)}
    if relay_state is not None:
        form["RelayState"] = relay_state
    return request("POST", "/saml/sls/", form=form)


def start_test_sso(engine: Engine) -> tuple[str, dict[str, str]]:
    """Start a Test SSO round trip: the ID of the AuthnRequest sent to the IdP, and the
    browser's cookies (the login binding the answer must come back with)."""
    reply = run(engine, request("GET", "/saml/test/"))
    assert isinstance(reply, Response) and reply.status == 303
    query = parse_qs(urlsplit(header(reply, "location") or "").query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    cookies: dict[str, str] = {}
    remember_cookies(cookies, reply)
    return str(etree.fromstring(xml).get("ID")), cookies


# -- the 500s found, one example each ---------------------------------------------------------


@pytest.mark.parametrize("value", ["2026-12-03T24:00:00Z", "2026-12-03T10:00:60Z"])
def test_a_genuine_assertion_in_an_envelope_with_an_impossible_time_is_refused_each_time(
    engine: Engine, baseline: bytes, idp_keys: KeyPair, value: str
) -> None:
    """The 500 that needed a genuine signed assertion: the unsigned Response around it
    names an impossible IssueInstant, read after the assertion's signature is checked
    and before its replay mark is written, so it could be posted again and again, each
    time a 500 and a traceback. Now each post is a 4xx, logged as one line; the
    assertion was never accepted, so it signs in once, once only, when sent as issued.
    (Hour 24 passes the in-process backend's schema check, second 60 pysaml2's parser:
    each reached the middleware's own parser on one backend.)"""
    genuine = fresh(baseline, idp_keys)
    for _ in range(5):
        root = copy.deepcopy(genuine)
        root.set("IssueInstant", value)  # the envelope is unsigned: the assertion stays valid
        with no_traceback_logged() as records:
            status, _ = refused_as(post_acs(engine, root))
        assert 400 <= status < 500
        assert len([r for r in records if r.name.startswith("saml_middleware")]) == 1
    assert post_acs(engine, genuine).status == 303
    assert refused_as(post_acs(engine, genuine)) == (403, "replay")


@pytest.mark.parametrize("value", IMPOSSIBLE_TIMES)
@pytest.mark.parametrize("place", sorted(set(RESPONSE_TIMES) - {"AuthnStatement AuthnInstant"}))
def test_an_impossible_time_signed_by_the_idp_is_a_4xx(
    engine: Engine, baseline: bytes, idp_keys: KeyPair, place: str, value: str
) -> None:
    root = with_time(baseline, idp_keys, place, value, "assertion", None)
    with no_traceback_logged():
        status, code = refused_as(post_acs(engine, root))
    assert 400 <= status < 500, code


@pytest.mark.parametrize("value", IMPOSSIBLE_TIMES)
def test_test_sso_reports_an_impossible_time_instead_of_a_500(
    engine: Engine, baseline: bytes, idp_keys: KeyPair, value: str
) -> None:
    request_id, cookies = start_test_sso(engine)
    root = with_time(
        baseline, idp_keys, "AuthnStatement SessionNotOnOrAfter", value, "assertion", request_id
    )
    with no_traceback_logged():
        reply = post_acs(engine, root, cookies=cookies)
    assert reply.status == 200, header(reply, "x-saml-error")
    assert b"Test SSO: failed" in reply.body
    assert not set_cookies(reply, "saml_session")  # Test SSO never signs anyone in


@pytest.mark.parametrize("value", IMPOSSIBLE_TIMES)
@pytest.mark.parametrize(
    ("kind", "attribute"),
    [
        ("LogoutRequest", "IssueInstant"),
        ("LogoutRequest", "NotOnOrAfter"),
        ("LogoutResponse", "IssueInstant"),
    ],
)
@pytest.mark.parametrize("binding", ["redirect", "post"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_an_impossible_time_in_a_logout_message_is_malformed(
    engine: Engine,
    logout_request: bytes,
    idp_keys: KeyPair,
    value: str,
    kind: str,
    attribute: str,
    binding: str,
    signed: bool,
) -> None:
    """Read before any signature check: unsigned or signed, a 400, never a 500."""
    xml = logout_message(logout_request, kind, attribute, value)
    with no_traceback_logged():
        reply = run(engine, sls_request(xml, kind, binding, idp_keys if signed else None))
    assert refused_as(reply) == (400, "malformed")


def with_valid_until(metadata_xml: str, value: str) -> str:
    """The IdP's metadata, its EntityDescriptor carrying validUntil=`value`."""
    root = etree.fromstring(metadata_xml.encode())
    root.set("validUntil", value)
    return etree.tostring(root, encoding="unicode")


def organization_login(idp: DevIdP, valid_until: str) -> Response | PassThrough:
    """Sign-in at an organization whose IdP metadata (from the app's loader) has `valid_until`."""
    metadata = with_valid_until(idp.metadata_xml(), valid_until)
    settings = settings_for(
        idp,
        tenants=lambda slug: {"idp": {"metadata_xml": metadata}},
        tenant_options={"resolver": {"path_prefix": "/org/"}},
    )
    del settings["idp"]
    return run(Engine(settings), request("GET", "/saml/login/acme/"))


# At the ends of what datetime holds: in range, but UTC is not (OverflowError).
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_organization_whose_metadata_has_an_impossible_valid_until_is_a_503(
    idp: DevIdP, value: str
) -> None:
    with no_traceback_logged():
        reply = organization_login(idp, value)
    assert refused_as(reply) == (503, "tenant_misconfigured")


UNREADABLE_URLS = ["http://[::1/x", "https://[:::::]/", "https://a\u2100b/x", "https://x:99999/"]


@pytest.mark.parametrize("url", UNREADABLE_URLS)
def test_a_next_urlsplit_cannot_read_is_ignored(engine: Engine, idp: DevIdP, url: str) -> None:
    with no_traceback_logged():
        login = run(engine, request("GET", f"/saml/login/?next={quote(url, safe='')}"))
        test = run(engine, request("GET", f"/saml/test/?next={quote(url, safe='')}"))
        logout = run(engine, request("GET", f"/saml/logout/?next={quote(url, safe='')}"))
    assert refused_as(login)[0] == refused_as(test)[0] == 303
    assert str(header(login, "location")).startswith(idp.sso_redirect_url)  # type: ignore[arg-type]
    assert refused_as(logout)[0] == 303
    assert header(logout, "location") == "/"  # type: ignore[arg-type]


@pytest.mark.parametrize("url", UNREADABLE_URLS)
def test_a_sign_out_from_an_origin_urlsplit_cannot_read_is_refused(
    engine: Engine, session_cookie: dict[str, str], url: str
) -> None:
    with no_traceback_logged():
        reply = run(
            engine,
            request(
                "POST", "/saml/logout/", form={}, headers={"origin": url}, cookies=session_cookie
            ),
        )
    assert refused_as(reply) == (403, "csrf")


@pytest.mark.parametrize("host", ["[:::::]", "[v1.x]", "[::1]:99999"])
def test_a_forwarded_host_urlsplit_cannot_read_is_ignored(
    forwarded_engine: Engine, host: str
) -> None:
    """It raised out of the engine (not even the catch-all saw it) on every endpoint."""
    headers = {"x-forwarded-host": host, "x-forwarded-proto": "https"}
    with no_traceback_logged():
        reply = run(forwarded_engine, request("GET", "/saml/login/", headers=headers))
    assert refused_as(reply)[0] == 303


# -- the properties -----------------------------------------------------------------------


@budget("acs_times")
@given(
    place=st.sampled_from(sorted(RESPONSE_TIMES)),
    value=hostile_times,
    signing=st.sampled_from(["as sent", "stripped", "assertion", "both"]),
)
@example(place="Response IssueInstant", value="2026-12-03T24:00:00Z", signing="as sent")
@example(place="Conditions NotOnOrAfter", value="2026-12-03T10:00:60Z", signing="both")
def test_property_no_time_in_a_response_gives_a_500(
    engine, baseline, idp_keys, place, value, signing
):
    root = with_time(baseline, idp_keys, place, value, signing, None)
    with no_traceback_logged():
        reply = post_acs(engine, root)
    assert_answered(reply)


@budget("test_sso_times")
@given(
    place=st.sampled_from(sorted(RESPONSE_TIMES)),
    value=hostile_times,
    signing=st.sampled_from(["assertion", "both"]),
)
def test_property_no_time_in_a_test_sso_answer_gives_a_500(
    engine, baseline, idp_keys, place, value, signing
):
    request_id, cookies = start_test_sso(engine)
    root = with_time(baseline, idp_keys, place, value, signing, request_id)
    with no_traceback_logged():
        reply = post_acs(engine, root, cookies=cookies)
    assert_answered(reply)
    assert header(reply, "x-saml-error") != "wrong_browser"  # it reached the checks
    assert not set_cookies(reply, "saml_session")


@budget("sls_times")
@given(
    message=st.sampled_from(
        [
            ("LogoutRequest", "IssueInstant"),
            ("LogoutRequest", "NotOnOrAfter"),
            ("LogoutResponse", "IssueInstant"),
        ]
    ),
    value=hostile_times,
    binding=st.sampled_from(["redirect", "post"]),
    signed=st.booleans(),
    relay_state=st.none() | hostile_urls,
)
def test_property_no_time_or_relay_state_in_a_logout_message_gives_a_500(
    engine, logout_request, idp_keys, message, value, binding, signed, relay_state
):
    kind, attribute = message
    xml = logout_message(logout_request, kind, attribute, value)
    req = sls_request(xml, kind, binding, idp_keys if signed else None, relay_state)
    with no_traceback_logged():
        reply = run(engine, req)
    assert_answered(reply)


@budget("metadata_times")
@given(value=hostile_times)
def test_property_no_valid_until_in_an_organizations_metadata_gives_a_500(idp, value):
    with no_traceback_logged():
        reply = organization_login(idp, value)
    # Accepted (a valid future validUntil), or the organization is misconfigured.
    assert refused_as(reply) in ((303, None), (503, "tenant_misconfigured"))


URL_INPUTS = [
    "login next",
    "test next",
    "logout next",
    "logout POST next and Origin",
    "acs RelayState",
    "sls RelayState",
]


@budget("urls")
@given(where=st.sampled_from(URL_INPUTS), url=hostile_urls, signed_in=st.booleans())
@example(where="login next", url="http://[::1/x", signed_in=False)
@example(where="logout POST next and Origin", url="https://a\u2100b/x", signed_in=True)
def test_property_no_url_gives_a_500(
    engine, baseline, logout_request, idp_keys, session_cookie, where, url, signed_in
):
    cookies = session_cookie if signed_in else {}
    query = f"?next={quote(url, safe='')}"
    if where == "acs RelayState":
        with no_traceback_logged():
            reply = post_acs(engine, fresh(baseline, idp_keys), relay_state=url)
        assert_answered(reply)
        if reply.status == 303:  # only ever to a path of this site
            location = header(reply, "location") or ""
            assert location.startswith("/") and not location.startswith("//"), location
        return
    if where == "sls RelayState":
        xml = logout_message(logout_request, "LogoutRequest", "IssueInstant", forge.from_now(0))
        req = sls_request(xml, "LogoutRequest", "redirect", idp_keys, url)
    elif where == "logout POST next and Origin":
        req = request(
            "POST", "/saml/logout/" + query, form={}, headers={"origin": url}, cookies=cookies
        )
    else:
        path = {"login next": "/saml/login/", "test next": "/saml/test/"}.get(
            where, "/saml/logout/"
        )
        req = request("GET", path + query, headers={"accept": "text/html"}, cookies=cookies)
    with no_traceback_logged():
        reply = run(engine, req)
    assert_answered(reply)


HOST_PATHS = [
    "/dashboard",
    "/public",
    "/saml/login/",
    "/saml/metadata/",
    "/saml/logout/",
    "/saml/login/acme/",
    "/saml/metadata/acme/",
]


@budget("hosts")
@given(
    which=st.sampled_from(["plain", "forwarded", "tenants"]),
    path=st.sampled_from(HOST_PATHS),
    headers=st.dictionaries(
        st.sampled_from(["host", "x-forwarded-host", "x-forwarded-proto", "origin"]),
        hostile_hosts | hostile_urls | st.sampled_from(["https", "http", "HTTPS, http", ""]),
        min_size=1,
    ),
    scheme=st.sampled_from(["https", "http", ""]),
)
@example(
    which="forwarded",
    path="/saml/metadata/",
    headers={"x-forwarded-host": "[:::::]", "x-forwarded-proto": "https"},
    scheme="https",
)
def test_property_no_host_or_forwarded_header_gives_a_500(
    engine, forwarded_engine, tenants_engine, which, path, headers, scheme
):
    chosen = {"plain": engine, "forwarded": forwarded_engine, "tenants": tenants_engine}[which]
    req = request("GET", path, headers={"accept": "text/html", **headers})
    req.scheme = scheme
    with no_traceback_logged():
        reply = run(chosen, req)
    assert_answered(reply)


# -- through the adapters -------------------------------------------------------------------


def _adapter_input(
    kind: str, value: str, baseline: bytes, logout_request: bytes, keys: KeyPair
) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """(method, path, query, headers, body) of one hostile request, as a server gets it."""
    form = [("content-type", "application/x-www-form-urlencoded")]
    if kind == "next":
        return "GET", "/saml/login/", urlencode({"next": value}), [], b""
    if kind == "origin":
        return "POST", "/saml/logout/", "", [*form, ("origin", value)], b""
    if kind == "host":
        return "GET", "/dashboard", "", [("host", value), ("accept", "text/html")], b""
    if kind == "x-forwarded-host":  # read on the middleware's own paths
        headers = [("x-forwarded-host", value), ("x-forwarded-proto", "https")]
        return "GET", "/saml/metadata/", "", headers, b""
    if kind == "acs time":
        root = with_time(baseline, keys, "Conditions NotOnOrAfter", value, "assertion", None)
        body = urlencode({"SAMLResponse": forge.encode(root)}).encode()
        return "POST", "/saml/acs/", "", form, body
    xml = logout_message(logout_request, "LogoutRequest", "IssueInstant", value)
    query = urlsplit(redirect_url(SLS_URL, "SAMLRequest", xml, None, keys.key_pem)).query
    return "GET", "/saml/sls/", query, [], b""


ADAPTER_INPUTS = ["next", "origin", "host", "x-forwarded-host", "acs time", "sls time"]


async def _hello_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _hello_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"hello"]


def _latin1(value: str) -> str:
    """A header as a server hands it on: bytes, read as latin-1."""
    return value.encode("utf-8").decode("latin-1")


@pytest.fixture(scope="module")
def asgi_app(idp: DevIdP) -> SAMLMiddleware:
    return SAMLMiddleware(
        _hello_asgi, settings=settings_for(idp, security__trust_forwarded_headers=True)
    )


@pytest.fixture(scope="module")
def wsgi_app(idp: DevIdP) -> SAMLWSGIMiddleware:
    return SAMLWSGIMiddleware(
        _hello_wsgi, settings=settings_for(idp, security__trust_forwarded_headers=True)
    )


def asgi_status(app: Any, method: str, path: str, query: str, headers: Any, body: bytes) -> int:
    """The status the ASGI middleware answers, called as a server calls it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.encode(), _latin1(v).encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("app.example.test", 443),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def wsgi_status(app: Any, method: str, path: str, query: str, headers: Any, body: bytes) -> int:
    """The status the WSGI middleware answers, called as a server calls it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "app.example.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = _latin1(value)
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)

    b"".join(app(environ, start_response))
    return int(statuses[0].split()[0])


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("next", "http://[::1/x"),
        ("origin", "https://a\u2100b/x"),
        ("x-forwarded-host", "[:::::]"),
        ("acs time", "2026-12-03T24:00:00Z"),
        ("sls time", "2026-02-30T10:00:00Z"),
    ],
)
@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_the_adapters_answer_the_500s_found_with_a_4xx_or_a_redirect(
    asgi_app, wsgi_app, baseline, logout_request, idp_keys, adapter, kind, value
):
    hostile = _adapter_input(kind, value, baseline, logout_request, idp_keys)
    with no_traceback_logged():
        if adapter == "asgi":
            status = asgi_status(asgi_app, *hostile)
        else:
            status = wsgi_status(wsgi_app, *hostile)
    assert status in (200, 303, 400, 403), status


@budget("asgi")
@given(kind=st.sampled_from(ADAPTER_INPUTS), data=st.data())
def test_property_no_hostile_input_gives_a_500_through_asgi(
    asgi_app, baseline, logout_request, idp_keys, kind, data
):
    value = data.draw(hostile_times if kind.endswith("time") else hostile_urls | hostile_hosts)
    hostile = _adapter_input(kind, value, baseline, logout_request, idp_keys)
    with no_traceback_logged():
        assert asgi_status(asgi_app, *hostile) < 500


@budget("wsgi")
@given(kind=st.sampled_from(ADAPTER_INPUTS), data=st.data())
def test_property_no_hostile_input_gives_a_500_through_wsgi(
    wsgi_app, baseline, logout_request, idp_keys, kind, data
):
    value = data.draw(hostile_times if kind.endswith("time") else hostile_urls | hostile_hosts)
    hostile = _adapter_input(kind, value, baseline, logout_request, idp_keys)
    with no_traceback_logged():
        assert wsgi_status(wsgi_app, *hostile) < 500


# -- the last resort ----------------------------------------------------------------------


class _Bug(Exception):
    """An exception no check anticipated (a bug the catch-all must contain)."""


def test_an_unexpected_error_logs_its_traceback_once_then_a_counted_line(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine_module, "unexpected_errors", UnexpectedErrors())

    async def broken(req: HttpRequest, realm: Any) -> Response:
        raise _Bug("a bug")

    async def other_bug(req: HttpRequest, realm: Any) -> Response:
        return {}["missing"]  # a KeyError, elsewhere

    monkeypatch.setitem(engine._endpoints, "metadata", Endpoint(broken))
    monkeypatch.setitem(engine._endpoints, "test", Endpoint(other_bug))
    caplog.set_level(logging.ERROR, logger="saml_middleware.engine")
    for _ in range(20):
        assert refused_as(run(engine, request("GET", "/saml/metadata/"))) == (
            500,
            "internal_error",
        )
    run(engine, request("GET", "/saml/test/"))
    records = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert len(records) == 21  # one line per request
    with_traceback = [r for r in records if r.exc_info]
    assert [r.exc_info[0] for r in with_traceback] == [_Bug, KeyError]  # type: ignore[index]
    assert "20 times in this process" in records[19].getMessage()
    assert "test_no_server_error.py" in records[0].getMessage()  # where it was raised


def test_past_the_bound_of_kinds_no_more_tracebacks_are_logged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Distinct causes are bounded too: a bug raising from ever new places cannot flood."""
    monkeypatch.setattr(engine_module, "unexpected_errors", UnexpectedErrors(max_causes=1))

    async def first(req: HttpRequest, realm: Any) -> Response:
        raise _Bug("one")

    async def second(req: HttpRequest, realm: Any) -> Response:
        raise KeyError("two")

    monkeypatch.setitem(engine._endpoints, "metadata", Endpoint(first))
    monkeypatch.setitem(engine._endpoints, "test", Endpoint(second))
    caplog.set_level(logging.ERROR, logger="saml_middleware.engine")
    run(engine, request("GET", "/saml/metadata/"))
    run(engine, request("GET", "/saml/test/"))
    records = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert [bool(r.exc_info) for r in records] == [True, False]
    assert "too many kinds" in records[1].getMessage()
