"""The speed work keeps behaviour: each shortcut gives what the long way gave.

Issue #8 (benchmarks/): the ACS verifies signatures on the tree `inspect_response`
already checked, compiles its XPath checks once, reads timestamps without
strptime and skips pysaml2's eager debug serialisation; the ASGI adapter
builds headers and cookies only when asked, and the cookie session codec
reuses its verified Session. Every test compares the shortcut with the path
it replaces, or shows that the replaced path is still taken when the shortcut
cannot promise the same answer.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from lxml import etree
from saml2 import BINDING_HTTP_POST
from saml2.response import AuthnResponse

from saml_middleware.asgi import _request
from saml_middleware.authn_requests import RequestToken
from saml_middleware.config import load_settings
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, HttpRequest
from saml_middleware.errors import SAMLError
from saml_middleware.identity import SAMLUser
from saml_middleware.login import Answer
from saml_middleware.metadata import IdPMetadata
from saml_middleware.saml import crypto, xml
from saml_middleware.saml.crypto import install
from saml_middleware.saml.sp import ServiceProvider, _AuthnResponse, inspect_response
from saml_middleware.saml.times import saml_instant
from saml_middleware.sessions import SessionCodec
from saml_middleware.stores import MemoryStore
from tests.helpers import settings_for

IDP_URL = "https://idp.example.test/speed-idp"


@pytest.fixture(scope="module")
def idp() -> DevIdP:
    return DevIdP(IDP_URL)


@pytest.fixture(scope="module")
def sp(idp: DevIdP) -> ServiceProvider:
    settings = load_settings(settings_for(idp, security={"allow_idp_initiated": True}))
    assert settings.idp is not None
    provider = ServiceProvider(settings, IdPMetadata(settings.idp).load())
    idp.add_service_provider(provider.metadata_xml())
    install(provider.client, reject_sha1=True)
    return provider


def fresh(idp: DevIdP, sp: ServiceProvider, **kwargs: Any) -> bytes:
    encoded = idp.create_response(
        "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to=None, **kwargs
    )
    return base64.b64decode(encoded)


def tampered(data: bytes) -> bytes:
    """The same Response naming another user (its signature no longer matches)."""
    root = etree.fromstring(data)
    name_id = root.find(".//{urn:oasis:names:tc:SAML:2.0:assertion}NameID")
    assert name_id is not None
    name_id.text = "admin@contoso.example"
    return etree.tostring(root)


# -- signatures verified on the tree inspect_response checked ---------------------------


def test_signatures_are_verified_on_the_tree_inspect_response_checked(idp, sp, monkeypatch):
    data = fresh(idp, sp, sign_response=True)
    envelope = inspect_response(data, reject_sha1=True)
    parsed = []
    original = crypto.parse_untrusted

    def spy(text: Any, *args: Any) -> Any:
        parsed.append(text)
        return original(text, *args)

    monkeypatch.setattr(crypto, "parse_untrusted", spy)
    login = sp.verify_response(envelope, outstanding_id=None)
    assert login.name_id == "B.Simon@contoso.com"
    assert parsed == []  # both signatures (Response, Assertion) on envelope.root


def test_a_tampered_response_is_refused_with_the_reused_tree(idp, sp):
    data = tampered(fresh(idp, sp))
    with pytest.raises(SAMLError) as refused:
        sp.verify_response(inspect_response(data, reject_sha1=True), outstanding_id=None)
    assert refused.value.code == "invalid_signature"


# -- the ACS's verify step: inspect, the request check, verify in one thread hop ---------


@pytest.fixture(scope="module")
def acs_engine(idp: DevIdP, sp: ServiceProvider) -> Engine:
    # The same settings as `sp`: the IdP already knows this SP.
    return Engine(settings_for(idp, security={"allow_idp_initiated": True}), store=MemoryStore())


def _answer(engine: Engine, data: bytes, cookies: dict[str, str] | None = None) -> Answer:
    tenant = engine.tenant
    assert tenant is not None
    acs = HttpRequest("POST", "/saml/acs/", cookies=cookies or {})
    return engine.login.verify(acs, tenant, tenant.service_provider_sync(), data)


def _started(engine: Engine, *, test: bool) -> tuple[RequestToken, dict[str, str]]:
    """A request of ours, and the cookies of the browser that started it."""
    binding, now = engine.login.binding, time.time()
    token = engine.login.requests.issue(None, test=test, now=now)
    header = binding.started(None, token, now)
    return token, {binding.cookie_name: header.split(";", 1)[0].split("=", 1)[1]}


def test_verify_is_inspect_then_verify(idp, sp, acs_engine):
    data = fresh(idp, sp)
    answer = _answer(acs_engine, data)
    assert answer.token is None  # IdP-initiated: no request answered
    expected = sp.verify_response(inspect_response(data, reject_sha1=True), outstanding_id=None)
    assert answer.login is not None and answer.login.name_id == expected.name_id
    assert answer.login.attributes == expected.attributes


def test_verify_stops_for_test_sso_and_refuses_before_crypto(idp, sp, acs_engine, monkeypatch):
    token, cookies = _started(acs_engine, test=True)
    encoded = idp.create_response(
        "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to=token.request_id
    )
    stopped = _answer(acs_engine, base64.b64decode(encoded), cookies)
    assert stopped.login is None and stopped.token == token  # the report verifies it

    tenant = acs_engine.tenant
    assert tenant is not None
    monkeypatch.setattr(
        tenant.service_provider_sync(), "verify_response", lambda *a, **k: pytest.fail("crypto ran")
    )
    unknown = idp.create_response(
        "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to="_req-1"
    )
    with pytest.raises(SAMLError) as refused:
        _answer(acs_engine, base64.b64decode(unknown))
    assert refused.value.code == "wrong_in_response_to"


def test_a_solicited_response_without_its_request_is_refused(idp, sp, acs_engine):
    encoded = idp.create_response(
        "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to="_req-1"
    )
    with pytest.raises(SAMLError) as refused:
        sp.verify_response(
            inspect_response(base64.b64decode(encoded), reject_sha1=True), outstanding_id=None
        )
    assert refused.value.code == "wrong_in_response_to"
    token, cookies = _started(acs_engine, test=False)
    encoded = idp.create_response(
        "bsimon", sp_entity_id=sp.settings.sp.entity_id, in_response_to=token.request_id
    )
    answer = _answer(acs_engine, base64.b64decode(encoded), cookies)
    assert answer.token == token and answer.login is not None
    assert answer.login.in_response_to == token.request_id


# -- pysaml2 without its eager debug serialisation ---------------------------------------


def test_get_identity_is_upstreams(idp, sp):
    encoded = base64.b64encode(fresh(idp, sp)).decode()
    ours = sp.client.parse_authn_request_response(encoded, BINDING_HTTP_POST)
    assert type(ours) is _AuthnResponse and isinstance(ours, AuthnResponse)
    assert ours.get_identity() == AuthnResponse.get_identity(ours)
    assert ours.ava == AuthnResponse.get_identity(ours)


# -- compiled checks on the structure ------------------------------------------------------


def _depth_by_walking(root: etree._Element, limit: int) -> bool:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node)
    return False


@pytest.mark.parametrize("limit", [1, 2, 3, 10, 64])
def test_depth_check_counts_as_walking_the_tree_did(limit):
    for depth in range(1, 70):
        for inside in ("", "<!--c-->", "<?pi x?>", "text", "<b/>text"):
            root = etree.fromstring("<a>" * depth + inside + "</a>" * depth)
            assert xml.depth_exceeds(root, limit) == _depth_by_walking(root, limit)


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-29T23:59:59Z",
        " 2024-01-01T01:02:03.123456+00:00 ",
        "2024-01-01T01:02:03",
        "9999-12-31T23:59:59Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:59:60Z",
        "2024-01-01T00:00:00-05:00",
        "24-01-01T00:00:00Z",
    ],
)
def test_saml_instant_reads_as_strptime_did(value):
    import re
    from datetime import datetime, timezone

    def by_strptime(text: str) -> Any:
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:00)?", text.strip())
        if not m:
            return "malformed"
        try:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:  # no such instant: a refusal too, never a 500
            return "malformed"
        return stamp.replace(tzinfo=timezone.utc).timestamp() + float(m.group(2) or 0)

    expected = by_strptime(value)
    if isinstance(expected, float):
        assert saml_instant(value) == pytest.approx(expected, abs=1e-6)
    else:
        with pytest.raises(SAMLError, match="invalid timestamp"):
            saml_instant(value)


# -- the ASGI adapter's lazy headers and cookies -------------------------------------------


def _eager(scope: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """What the adapter built before: every header, then Starlette's cookie parser."""
    from starlette.requests import cookie_parser

    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        joiner = "; " if name == "cookie" else ", "
        headers[name] = f"{headers[name]}{joiner}{value}" if name in headers else value
    return headers, cookie_parser(headers.get("cookie", ""))


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [(b"host", b"a.test"), (b"accept", b"text/html")],
        [(b"cookie", b"a=1; b=2"), (b"Cookie", b'b=3; c="q\\"x"'), (b"X-Y", b"1")],
        [(b"x-forwarded-for", b"1.2.3.4"), (b"X-Forwarded-For", b"5.6.7.8"), (b"cookie", b"=v")],
        [(b"COOKIE", b"s=\xe9t\xe9; ;k"), (b"host", b"h\xff")],
    ],
)
def test_lazy_headers_and_cookies_are_the_eager_ones(raw):
    scope = {"type": "http", "method": "GET", "path": "/", "headers": raw}
    headers, cookies = _eager(scope)
    for _ in range(2):  # the second time from the parsed-cookie cache
        request = _request(scope, lambda: None)  # type: ignore[arg-type,return-value]
        assert dict(request.cookies) == cookies
        assert dict(request.headers) == headers
        assert request.headers == headers and request.cookies == cookies
        assert len(request.headers) == len(headers) and list(request.headers) == list(headers)
        for name in ("cookie", "host", "x-forwarded-for", "missing"):
            assert request.headers.get(name) == headers.get(name)
            assert (name in request.headers) == (name in headers)


def test_the_body_reader_still_reads_and_limits():
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = _request({"type": "http", "headers": []}, receive)
    assert request.read_body is not None
    assert asyncio.run(request.read_body(10)) == b"abcd"


# -- the session codec's cached Session ----------------------------------------------------


def test_a_cached_session_is_refreshed_on_time():
    now = [1_000_000.0]
    settings = load_settings(
        {
            "base_url": "https://app.example.test",
            "secret_key": "speed-secret-key-0123456789abcdef",
            "idp": {"entity_id": IDP_URL, "sso_url": f"{IDP_URL}/sso", "x509cert": _cert()},
            "session": {"idle_timeout_seconds": 100},
        }
    )
    codec = SessionCodec(settings.session, settings.secret_key, clock=lambda: now[0])
    user = SAMLUser(name_id="u@example.test", issuer=IDP_URL)
    value = codec.encode(user)
    first = codec.decode(value)
    assert first is not None and not first.refresh and first.last_active == now[0]
    assert codec.decode(value) is first  # the cached, immutable Session
    now[0] += 10  # a tenth of the idle window: re-issue the cookie
    again = codec.decode(value)
    assert again is not None and again.refresh and again.session_id == first.session_id
    assert (again.user, again.login_time, again.last_active) == (
        first.user,
        first.login_time,
        first.last_active,
    )
    now[0] += 91  # idle too long
    assert codec.decode(value) is None


def _cert() -> str:
    from saml_middleware.keys import generate_key_pair

    _key, cert = generate_key_pair("speed test IdP", days=1, kind="ec")
    return "".join(cert.strip().splitlines()[1:-1])
