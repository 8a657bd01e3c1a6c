"""Property-based tests (hypothesis) of the engine's inputs: no 5xx, no escaped exception,
no session that a mutated response did not earn.

* ACS: random form posts (fields, values, content types), and random mutations
  of genuine responses — byte flips, element deletions and duplications,
  attribute and text changes — posted without re-signing.
* login `next` and the ACS RelayState: whatever they say, the browser is only
  ever sent to a same-origin path (or an allowed host, for `next`).
* any path, method and cookie: an answer or a pass-through, never a crash.

* the Single Logout Service: random Redirect queries and POST forms (random fields,
  deflated or plain XML fragments, signatures and algorithms): always a 4xx, never a
  session.

Budget: `SAML_FUZZ_EXAMPLES` examples in all (default 200, shared between the
tests in proportion to their cost), no deadline. A longer run:

    SAML_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_engine.py -q
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import zlib
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, HttpRequest, PassThrough, Response
from tests import forge
from tests.helpers import SP_BASE, fuzz_budget, header, request, settings_for

# Shares of the budget, by test (the ones that run xmlsec1 cost ~50-150 ms per example).
SHARES = {
    "sls": 0.10,
    "form": 0.15,
    "mutated_both_signed": 0.25,
    "mutated_assertion_signed": 0.15,
    "next": 0.15,
    "relay_state": 0.10,
    "anything": 0.10,
}


def budget(name: str) -> Any:
    return fuzz_budget(SHARES[name], at_least=5)


BSIMON = "B.Simon@contoso.com"


def make_engine(idp: DevIdP, **overrides: Any) -> Engine:
    """A fresh engine: a fresh replay cache, so no refusal is only a replay."""
    return Engine(settings_for(idp, **overrides))


@pytest.fixture(scope="module")
def baselines(idp: DevIdP) -> dict[str, bytes]:
    """Genuine responses (XML bytes): both signed, and assertion only (Entra's default)."""
    engine = make_engine(idp)
    idp.add_service_provider(engine.sp_metadata_xml())
    entity = engine.settings.sp.entity_id
    both = idp.create_response(
        "bsimon", sp_entity_id=entity, in_response_to=None, sign_response=True
    )
    assertion = idp.create_response("bsimon", sp_entity_id=entity, in_response_to=None)
    return {
        "both": etree.tostring(forge.decode(both)),
        "assertion": etree.tostring(forge.decode(assertion)),
    }


@pytest.fixture(scope="module")
def genuine_user(idp: DevIdP, baselines: dict[str, bytes]) -> tuple[Any, ...]:
    """Who the unmutated assertion-signed baseline signs in."""
    engine = make_engine(idp)
    user = session_user(engine, post_acs(engine, baselines["assertion"]))
    return (user.name_id, user.roles, user.attributes)


def run(engine: Engine, req: HttpRequest) -> Response | PassThrough:
    return asyncio.run(engine.handle(req))


def assert_sane(reply: Response | PassThrough) -> None:
    """Never a 5xx or a stack trace; a refusal never sets a cookie."""
    if isinstance(reply, PassThrough):
        return
    assert reply.status < 500, (reply.status, header(reply, "x-saml-error"))
    assert b"Traceback" not in reply.body
    if reply.status >= 400:
        assert header(reply, "set-cookie") is None
        assert header(reply, "location") is None


def post_acs(engine: Engine, saml_response: bytes, relay_state: str | None = None) -> Response:
    form = {"SAMLResponse": base64.b64encode(saml_response).decode()}
    if relay_state is not None:
        form["RelayState"] = relay_state
    reply = run(engine, request("POST", "/saml/acs/", form=form))
    assert isinstance(reply, Response)
    assert_sane(reply)
    return reply


def session_user(engine: Engine, reply: Response) -> Any:
    cookie = header(reply, "set-cookie") or ""
    session = engine.sessions.decode(cookie.split(";", 1)[0].split("=", 1)[1])
    assert session is not None
    return session.user


def is_local_path(location: str) -> bool:
    return (
        location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not re.search(r"[\x00-\x1f\x7f]", location)
        and not urlsplit(location).netloc
    )


# -- the ACS: random forms -----------------------------------------------------------------

field_names = st.sampled_from(["SAMLResponse", "RelayState", "SAMLRequest", "x", ""]) | st.text(
    max_size=10
)
field_values = (
    st.text(max_size=200)
    | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
    | st.sampled_from(["", "=", "%", "A" * 5000, "PHg+", "PD94bWwgdmVyc2lvbj0iMS4wIj8+"])
)
content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "multipart/form-data; boundary=x",
        "application/json",
        "text/xml",
        "",
    ]
)


@budget("form")
@given(
    fields=st.lists(st.tuples(field_names, field_values), max_size=6),
    content_type=content_types,
    raw=st.none() | st.binary(max_size=500),
)
def test_fuzz_acs_random_forms(idp, fields, content_type, raw):
    engine = make_engine(idp)
    body = raw if raw is not None else urlencode(fields).encode()
    reply = run(
        engine,
        request("POST", "/saml/acs/", body=body, headers={"content-type": content_type}),
    )
    assert isinstance(reply, Response)
    assert_sane(reply)
    assert 400 <= reply.status < 500


# -- the ACS: mutated genuine responses -------------------------------------------------------


def _equivalent_form(xml: bytes) -> bytes | None:
    """What the signatures see, and nothing they leave out; None when not XML.

    Exclusive c14n without comments (the signatures' transform) of the whole
    document, where each ds:Signature (which the enveloped transform cuts out)
    keeps only its SignedInfo and its SignatureValue (whitespace taken out: its
    Base64 decoding ignores it), and any other child but KeyInfo (never used:
    keys come from the metadata). Its attributes (Id) and the whitespace
    between its children are not signed either.
    """
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except (etree.XMLSyntaxError, ValueError):
        return None
    for signature in root.xpath("//ds:Signature", namespaces=forge.NS):
        signature.attrib.clear()
        signature.text = None
        for child in list(signature):
            child.tail = None
            if child.tag == f"{{{forge.DS}}}KeyInfo":
                signature.remove(child)
            elif child.tag == f"{{{forge.DS}}}SignatureValue":
                child.text = re.sub(r"\s+", "", child.text or "")
    return etree.tostring(root, method="c14n", exclusive=True, with_comments=False)


# Characters lxml can put in a document (no controls, no surrogates).
XML_TEXT = st.characters(categories=["L", "M", "N", "P", "S", "Zs"])


@st.composite
def mutated(draw: st.DrawFn, xml: bytes) -> bytes:
    """1-3 random mutations of `xml`: byte flips, deletions, duplications, attribute/text edits."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "delete", "duplicate", "attribute", "text"]))
        if kind == "flip":
            at = draw(st.integers(0, len(xml) - 1))
            xml = xml[:at] + bytes([xml[at] ^ draw(st.integers(1, 255))]) + xml[at + 1 :]
            continue
        try:
            root = etree.fromstring(xml)
        except etree.XMLSyntaxError:
            continue  # an earlier flip broke it: flips only from here
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        node = elements[draw(st.integers(0, len(elements) - 1))]
        parent = node.getparent()
        if kind == "delete" and parent is not None:
            parent.remove(node)
        elif kind == "duplicate" and parent is not None:
            node.addnext(copy.deepcopy(node))
        elif kind == "attribute":
            names = sorted(node.attrib) + ["ID", "Version", "Destination", "Algorithm", "URI"]
            name = draw(st.sampled_from(names))
            if draw(st.booleans()) and name in node.attrib:
                del node.attrib[name]
            else:
                node.set(name, draw(st.text(alphabet=XML_TEXT, max_size=40)))
        elif kind == "text":
            node.text = draw(st.text(alphabet=XML_TEXT, max_size=40))
        xml = etree.tostring(root)
    return xml


@budget("mutated_both_signed")
@given(data=st.data())
def test_fuzz_acs_mutated_signed_response_never_logs_in(idp, baselines, data):
    """Response and assertion signed: any real change breaks a signature, so no session."""
    original = baselines["both"]
    xml = data.draw(mutated(original))
    engine = make_engine(idp, security__want_response_signed=True)
    reply = post_acs(engine, xml)
    if reply.status == 303:  # only a change the signatures cannot see may pass
        assert _equivalent_form(xml) == _equivalent_form(original), "a forged change logged in"
        assert session_user(engine, reply).name_id == BSIMON


@budget("mutated_assertion_signed")
@given(data=st.data())
def test_fuzz_acs_mutated_assertion_signed_response_never_changes_the_user(
    idp, baselines, genuine_user, data
):
    """Assertion signed only: the unsigned envelope may change; who signs in may not."""
    original = baselines["assertion"]
    xml = data.draw(mutated(original))
    engine = make_engine(idp)
    reply = post_acs(engine, xml)
    if reply.status == 303:
        user = session_user(engine, reply)
        assert (user.name_id, user.roles, user.attributes) == genuine_user


# -- where the browser is sent ------------------------------------------------------------------

HOSTS = [
    "app.example.test",
    "evil.test",
    "app.example.test.evil.test",
    "app.example.test@evil.test",
    "",
]
targets = (
    st.text(max_size=120)
    | st.from_regex(r"\A[/\\]{0,3}[a-z.:@%0-9/\\?#&=-]{0,40}\Z")
    | st.builds(
        lambda scheme, host, path: f"{scheme}{host}{path}",
        st.sampled_from(["https://", "http://", "//", "/\\", "\\\\", "https:", "javascript:", ""]),
        st.sampled_from(
            [
                "app.example.test",
                "evil.test",
                "app.example.test.evil.test",
                "app.example.test@evil.test",
                "",
            ]
        ),
        st.text(alphabet="/\\?#%.:@ \t\r\nab", max_size=20),
    )
)


@budget("next")
@given(target=targets)
def test_fuzz_login_next_only_ever_leads_to_this_site(idp, target):
    engine = make_engine(idp)
    reply = run(engine, request("GET", f"/saml/login/?next={quote(target, safe='')}"))
    assert isinstance(reply, Response)
    assert_sane(reply)
    assert reply.status == 303
    stored = stored_next(engine, reply)
    assert is_local_path(stored) or urlsplit(stored)[:2] == urlsplit(SP_BASE)[:2], stored


def stored_next(engine: Engine, reply: Response) -> str:
    """The page the engine signed into the RelayState of the AuthnRequest it just sent."""
    query = parse_qs(urlsplit(header(reply, "location") or "").query)
    relay = URLSafeSerializer(engine.settings.secret_key, salt="saml_middleware.relay")
    return str(relay.loads(query["RelayState"][0]))


@budget("relay_state")
@given(relay_state=targets)
def test_fuzz_relay_state_only_ever_leads_to_this_site(idp, baselines, relay_state):
    engine = make_engine(idp)
    reply = post_acs(engine, baselines["assertion"], relay_state)
    assert reply.status == 303
    assert is_local_path(header(reply, "location") or "")


# -- anything else -------------------------------------------------------------------------


ENDPOINTS = ["/saml/login", "/saml/logout/", "/saml/metadata/", "/saml/acs/", "/saml/x"]


@budget("anything")
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=st.sampled_from(
        ["/saml/login", "/saml/logout/", "/saml/metadata/", "/saml/acs/", "/saml/x"]
    )
    | st.text(max_size=30).map(lambda s: "/" + s),
    query=st.text(max_size=60),
    cookie=st.text(max_size=100),
    headers=st.dictionaries(
        st.sampled_from(["accept", "origin", "sec-fetch-site", "content-length", "host"]),
        st.text(max_size=40),
        max_size=3,
    ),
)
def test_fuzz_any_request_is_answered(idp, method, path, query, cookie, headers):
    engine = make_engine(idp)
    reply = run(
        engine,
        request(
            method,
            path + "?" + quote(query, safe="=&"),
            headers=headers,
            cookies={"saml_session": cookie},
        ),
    )
    assert_sane(reply)
    if isinstance(reply, PassThrough):
        assert not reply.user.is_authenticated  # a random cookie is never a session


_SLS_XML = st.sampled_from(
    [
        b"<samlp:LogoutRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>",
        b"<samlp:LogoutResponse xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol' ID='x'/>",
        b"<!DOCTYPE x [<!ENTITY e 'e'>]><x>&e;</x>",
        b"<a>" * 500,
        b"",
    ]
) | st.binary(max_size=300)


def _encoded(xml: bytes, deflate: bool) -> str:
    data = zlib.compress(xml)[2:-4] if deflate else xml
    return base64.b64encode(data).decode()


@budget("sls")
@given(
    method=st.sampled_from(["GET", "POST"]),
    name=st.sampled_from(["SAMLRequest", "SAMLResponse", "samlrequest", "RelayState"]),
    xml=_SLS_XML,
    deflate=st.booleans(),
    extra=st.dictionaries(
        st.sampled_from(["RelayState", "SigAlg", "Signature", "SAMLRequest", "x"]),
        st.text(max_size=60),
        max_size=4,
    ),
)
def test_fuzz_sls_is_always_a_4xx_and_never_a_session(idp, method, name, xml, deflate, extra):
    engine = make_engine(idp)
    fields = {**extra, name: _encoded(xml, deflate)}
    if method == "GET":
        req = request("GET", "/saml/sls/?" + urlencode(fields))
    else:
        req = request("POST", "/saml/sls/", form=fields)
    reply = run(engine, req)
    assert isinstance(reply, Response)
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])
    cookie = header(reply, "set-cookie") or ""
    assert not re.match(r"saml_session=[^;]", cookie)
