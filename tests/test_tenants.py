"""Organizations: per-organization SSO with two development IdPs (issue 7).

Acme signs in at IdP A, Globex at IdP B; both share the app's SP key pair and
store. What a user or an admin would notice: each organization has its own SP
entity ID and ACS; an answer meant for one is refused at the other; a session
of one grants nothing in the other's paths; disabling an organization ends its
sessions; strict decides whether anonymous requests pass.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
import zlib
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import lxml.html
import pytest
from lxml import etree

from saml_middleware.config import ConfigError, load_settings
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from tests import forge
from tests.helpers import SECRET, SP_BASE, header, remember_cookies, request, set_cookies
from tests.test_idp_config import MetadataServer

pytestmark = pytest.mark.anyio

MD = "urn:oasis:names:tc:SAML:2.0:metadata"


@pytest.fixture(scope="module")
def idp_b() -> DevIdP:
    return DevIdP("https://idp-b.example.test/idp")


def org(idp: DevIdP, **extra: Any) -> dict[str, Any]:
    return {
        "idp": {"metadata_xml": idp.metadata_xml()},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
        **extra,
    }


def tenant_settings(tenants: Any, **extra: Any) -> dict[str, Any]:
    backend = os.environ.get("SAML_TEST_CRYPTO_BACKEND", "inprocess")  # as settings_for
    return {
        "base_url": SP_BASE,
        "secret_key": SECRET,
        "tenants": tenants,
        "security": {"crypto_backend": backend},
        **extra,
    }


async def register(engine: Engine, slug: str, idp: DevIdP) -> None:
    idp.add_service_provider(await engine.sp_metadata_for(slug))


@pytest.fixture
def orgs(devidp: DevIdP, idp_b: DevIdP) -> dict[str, dict[str, Any]]:
    """The organizations' rows, as an app's database would hold them (mutable)."""
    return {"acme": org(devidp, name="Acme Inc."), "globex": org(idp_b, name="Globex")}


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def engine(
    orgs: dict[str, dict[str, Any]], calls: list[str], devidp: DevIdP, idp_b: DevIdP
) -> Engine:
    def load(slug: str) -> dict[str, Any] | None:
        calls.append(slug)
        return orgs.get(slug)

    engine = Engine(tenant_settings(load, tenant_options={"cache_seconds": 60}))
    for slug, idp in (("acme", devidp), ("globex", idp_b)):
        idp.add_service_provider(_metadata_sync(engine, slug))
    return engine


def _metadata_sync(engine: Engine, slug: str) -> str:
    return asyncio.run(engine.sp_metadata_for(slug))


class OrgBrowser:
    """A browser visiting organization paths, with its cookie jar."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cookies: dict[str, str] = {}
        self.name = engine.settings.session.cookie_name

    async def send(self, method: str, url: str, **kwargs: Any) -> Response | PassThrough:
        headers = kwargs.pop("headers", {"accept": "text/html"})
        reply = await self.engine.handle(
            request(method, url, headers=headers, cookies=self.cookies, **kwargs)
        )
        remember_cookies(self.cookies, reply)
        return reply

    async def to_idp(self, url: str) -> tuple[str, str | None]:
        """Follow `url` (a login or test endpoint) to the IdP: (SAMLRequest, RelayState)."""
        reply = await self.send("GET", url)
        assert isinstance(reply, Response) and reply.status == 303, reply
        query = parse_qs(urlsplit(header(reply, "location") or "").query)
        return query["SAMLRequest"][0], query.get("RelayState", [None])[0]

    async def answer(
        self, idp: DevIdP, saml_request: str, relay: str | None, *, at: str, user: str = "bsimon"
    ) -> Response:
        info = idp.parse_authn_request(saml_request, "redirect")
        saml_response = idp.create_response(
            user, sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
        )
        form = {"SAMLResponse": saml_response, **({"RelayState": relay} if relay else {})}
        reply = await self.send("POST", at, form=form)
        assert isinstance(reply, Response)
        return reply

    async def login(self, slug: str, idp: DevIdP, user: str = "bsimon") -> Response:
        reply = await self.send("GET", f"/organizations/{slug}/projects")
        assert isinstance(reply, Response) and reply.status == 303
        saml_request, relay = await self.to_idp(header(reply, "location") or "")
        return await self.answer(idp, saml_request, relay, at=f"/saml/acs/{slug}/", user=user)


# -- settings ---------------------------------------------------------------------------


def test_each_organization_has_its_own_sp(engine: Engine) -> None:
    for slug in ("acme", "globex"):
        root = etree.fromstring(_metadata_sync(engine, slug).encode())
        assert root.get("entityID") == f"{SP_BASE}/saml/metadata/{slug}/"
        acs = root.find(f".//{{{MD}}}AssertionConsumerService")
        assert acs is not None and acs.get("Location") == f"{SP_BASE}/saml/acs/{slug}/"
        sls = root.find(f".//{{{MD}}}SingleLogoutService")
        assert sls is not None and sls.get("Location") == f"{SP_BASE}/saml/sls/{slug}/"


@pytest.mark.parametrize(
    ("tenants", "extra", "key"),
    [
        ({"Acme": {}}, {}, "tenants.Acme"),
        ({"-acme": {}}, {}, "tenants.-acme"),
        ({"acme": {"enabled": True}}, {}, "tenants.acme.idp"),
        ({"acme": {"idp": {"metadata_xml": "<x/>"}, "colour": "red"}}, {}, "tenants.acme.colour"),
        ("not a dict", {}, "tenants"),
        (None, {"tenant_options": {}}, "tenant_options"),
        (lambda slug: None, {"paths": {"protect": ["/"]}}, "paths.protect"),
        (lambda slug: None, {"tenant_options": {"resolver": {"host": "example.com"}}}, "resolver"),
        (lambda slug: None, {"tenant_options": {"cache_seconds": -1}}, "cache_seconds"),
        (lambda slug: None, {"tenant_options": {"base_url": "https://x.example"}}, "base_url"),
        (
            lambda slug: None,
            {"tenant_options": {"base_url": "https://app.example/{slug}"}},
            "tenant_options.base_url",
        ),
    ],
)
def test_bad_organization_settings_name_their_key(tenants: Any, extra: Any, key: str) -> None:
    settings = tenant_settings(tenants, **extra)
    if tenants is None:
        settings["idp"] = {"metadata_xml": "<x/>"}
    with pytest.raises(ConfigError) as caught:
        Engine(settings)
    assert key in caught.value.key


def test_dict_organizations_are_checked_at_start_up(devidp: DevIdP) -> None:
    bad = org(devidp)
    bad["idp"] = {"entity_id": "x", "sso_url": "https://idp.example.test/sso", "x509cert": "nope"}
    with pytest.raises(ConfigError) as caught:
        Engine(tenant_settings({"acme": org(devidp), "globex": bad}))
    assert caught.value.key.startswith("idp.x509cert")


def test_an_organization_may_only_shorten_the_session(devidp: DevIdP) -> None:
    settings = tenant_settings({"acme": org(devidp, session={"max_age_seconds": 99999})})
    with pytest.raises(ConfigError) as caught:
        load_settings(settings)
    assert caught.value.key == "tenants.acme.session.max_age_seconds"


# -- signing in -------------------------------------------------------------------------


async def test_sign_in_to_an_organization(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    reply = await browser.send("GET", "/organizations/acme/projects?tab=1")
    assert isinstance(reply, Response) and reply.status == 303
    assert (
        header(reply, "location") == "/saml/login/acme/?next=/organizations/acme/projects%3Ftab%3D1"
    )
    saml_request, relay = await browser.to_idp(header(reply, "location") or "")
    reply = await browser.answer(devidp, saml_request, relay, at="/saml/acs/acme/")
    assert reply.status == 303, reply.body
    assert header(reply, "location") == "/organizations/acme/projects?tab=1"
    page = await browser.send("GET", "/organizations/acme/projects")
    assert isinstance(page, PassThrough)
    assert page.user.tenant == "acme" and page.user.roles == ("Admin",)
    assert page.user.issuer == devidp.entity_id
    # The app's own pages see the user too (the app decides what a tenant user may do).
    elsewhere = await browser.send("GET", "/")
    assert isinstance(elsewhere, PassThrough) and elsewhere.user.tenant == "acme"


async def test_login_without_next_lands_on_the_organization(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    saml_request, relay = await browser.to_idp("/saml/login/acme/")
    reply = await browser.answer(devidp, saml_request, relay, at="/saml/acs/acme/")
    assert header(reply, "location") == "/organizations/acme/"


async def test_a_session_of_one_organization_grants_nothing_in_another(
    engine: Engine, devidp: DevIdP, orgs: dict[str, Any]
) -> None:
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    reply = await browser.send("GET", "/organizations/globex/billing")
    assert isinstance(reply, Response) and reply.status == 303
    assert (header(reply, "location") or "").startswith("/saml/login/globex/?next=")
    api = await browser.send("GET", "/organizations/globex/api", headers={"accept": "*/*"})
    assert isinstance(api, Response) and api.status == 401
    orgs["globex"]["strict"] = False
    engine.invalidate_tenant("globex")
    reply = await browser.send("GET", "/organizations/globex/billing")
    assert isinstance(reply, PassThrough) and not reply.user.is_authenticated
    # ... and the acme session is still there for acme.
    mine = await browser.send("GET", "/organizations/acme/")
    assert isinstance(mine, PassThrough) and mine.user.tenant == "acme"


async def test_an_answer_for_one_organization_is_refused_at_another(
    engine: Engine, devidp: DevIdP, idp_b: DevIdP
) -> None:
    browser = OrgBrowser(engine)
    saml_request, relay = await browser.to_idp("/saml/login/acme/")
    info = devidp.parse_authn_request(saml_request, "redirect")
    response = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    stolen = await browser.send("POST", "/saml/acs/globex/", form={"SAMLResponse": response})
    assert isinstance(stolen, Response) and stolen.status == 403
    assert header(stolen, "x-saml-error") == "wrong_in_response_to"
    assert header(stolen, "set-cookie") is None
    # The genuine answer still works where it belongs (nothing was spoilt).
    reply = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(reply, Response) and reply.status == 303


async def test_same_idp_for_two_organizations_audience_keeps_them_apart(
    devidp: DevIdP,
) -> None:
    engine = Engine(tenant_settings({"acme": org(devidp), "initech": org(devidp)}))
    for slug in ("acme", "initech"):
        await register(engine, slug, devidp)
    browser = OrgBrowser(engine)
    # An IdP-initiated answer addressed to acme, posted to initech's ACS.
    response = devidp.create_response(
        "bsimon", sp_entity_id=f"{SP_BASE}/saml/metadata/acme/", in_response_to=None
    )
    reply = await browser.send("POST", "/saml/acs/initech/", form={"SAMLResponse": response})
    assert isinstance(reply, Response) and reply.status == 403
    assert header(reply, "x-saml-error") in ("wrong_destination", "wrong_audience")
    assert header(reply, "set-cookie") is None
    reply = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(reply, Response) and reply.status == 303
    assert header(reply, "location") == "/organizations/acme/"


async def test_unknown_organizations_are_404(engine: Engine) -> None:
    browser = OrgBrowser(engine)
    for url in ("/saml/login/initech/", "/saml/metadata/initech/", "/saml/test/initech/"):
        reply = await browser.send("GET", url)
        assert isinstance(reply, Response) and reply.status == 404, url
        assert header(reply, "x-saml-error") == "unknown_tenant"
    for url in ("/saml/login/", "/saml/login/Not_A_Slug/", "/saml/login/acme/extra/"):
        reply = await browser.send("GET", url)
        assert isinstance(reply, Response) and reply.status == 404, url
    # An unknown organization's paths are the app's business (its own 404).
    reply = await browser.send("GET", "/organizations/initech/")
    assert isinstance(reply, PassThrough) and not reply.user.is_authenticated


# -- enable / disable, strict -------------------------------------------------------------


async def test_disabling_an_organization_ends_its_sessions(
    engine: Engine, devidp: DevIdP, orgs: dict[str, Any]
) -> None:
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    orgs["acme"]["enabled"] = False
    engine.invalidate_tenant("acme")
    reply = await browser.send("GET", "/organizations/acme/projects")
    assert isinstance(reply, Response) and reply.status == 403
    assert header(reply, "x-saml-error") == "tenant_disabled"
    assert (header(reply, "set-cookie") or "").startswith("saml_session=;")
    assert b"switched off for Acme Inc." in reply.body
    assert not browser.cookies
    login = await browser.send("GET", "/saml/login/acme/")
    assert isinstance(login, Response) and login.status == 403
    assert header(login, "x-saml-error") == "tenant_disabled"
    # The admin can still configure the IdP and test before enabling.
    metadata = await browser.send("GET", "/saml/metadata/acme/")
    assert isinstance(metadata, Response) and metadata.status == 200
    test = await browser.send("GET", "/saml/test/acme/")
    assert isinstance(test, Response) and test.status == 303
    # Not strict: the app's own login serves the organization's pages.
    orgs["acme"]["strict"] = False
    engine.invalidate_tenant()
    reply = await browser.send("GET", "/organizations/acme/projects")
    assert isinstance(reply, PassThrough) and not reply.user.is_authenticated


async def test_an_idp_initiated_answer_to_a_disabled_organization_is_refused(
    engine: Engine, devidp: DevIdP, orgs: dict[str, Any]
) -> None:
    orgs["acme"]["enabled"] = False
    engine.invalidate_tenant("acme")
    response = devidp.create_response(
        "bsimon", sp_entity_id=f"{SP_BASE}/saml/metadata/acme/", in_response_to=None
    )
    reply = await OrgBrowser(engine).send(
        "POST", "/saml/acs/acme/", form={"SAMLResponse": response}
    )
    assert isinstance(reply, Response) and reply.status == 403
    assert header(reply, "x-saml-error") == "tenant_disabled"
    assert header(reply, "set-cookie") is None


async def test_strict_off_lets_anonymous_requests_through(
    engine: Engine, orgs: dict[str, Any]
) -> None:
    orgs["acme"]["strict"] = False
    engine.invalidate_tenant("acme")
    reply = await OrgBrowser(engine).send("GET", "/organizations/acme/")
    assert isinstance(reply, PassThrough) and not reply.user.is_authenticated


async def test_an_organizations_shorter_session_ends_first(devidp: DevIdP) -> None:
    now = [time.time()]
    rows = {"acme": org(devidp, session={"max_age_seconds": 600})}
    engine = Engine(tenant_settings(rows), clock=lambda: now[0])
    await register(engine, "acme", devidp)
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    now[0] += 500
    assert isinstance(await browser.send("GET", "/organizations/acme/"), PassThrough)
    now[0] += 200
    reply = await browser.send("GET", "/organizations/acme/")
    assert isinstance(reply, Response) and reply.status == 303
    assert (header(reply, "set-cookie") or "").startswith("saml_session=;")


async def test_an_organizations_idle_timeout_slides_with_use(devidp: DevIdP) -> None:
    now = [time.time()]
    rows = {"acme": org(devidp, session={"idle_timeout_seconds": 600})}
    engine = Engine(tenant_settings(rows), clock=lambda: now[0])
    await register(engine, "acme", devidp)
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    for _ in range(4):  # active: 4 x 400 s > 600 s, but never 600 s idle
        now[0] += 400
        assert isinstance(await browser.send("GET", "/organizations/acme/"), PassThrough)
    now[0] += 700
    reply = await browser.send("GET", "/organizations/acme/")
    assert isinstance(reply, Response) and reply.status == 303


# -- the loader ---------------------------------------------------------------------------


async def test_loader_answers_are_cached_until_invalidated(
    engine: Engine, devidp: DevIdP, calls: list[str]
) -> None:
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    for _ in range(5):
        await browser.send("GET", "/organizations/acme/")
    assert calls.count("acme") == 1
    engine.invalidate_tenant("acme")
    await browser.send("GET", "/organizations/acme/")
    assert calls.count("acme") == 2


async def test_an_async_loader_and_a_host_resolver(devidp: DevIdP) -> None:
    async def load(slug: str) -> dict[str, Any] | None:
        return org(devidp) if slug == "acme" else None

    engine = Engine(
        tenant_settings(load, tenant_options={"resolver": {"host": "{slug}.app.example.test"}})
    )
    await register(engine, "acme", devidp)
    browser = OrgBrowser(engine)
    reply = await browser.send(
        "GET", "/projects", headers={"accept": "text/html", "host": "acme.app.example.test:443"}
    )
    assert isinstance(reply, Response) and reply.status == 303
    assert (header(reply, "location") or "").startswith("/saml/login/acme/?next=/projects")
    reply = await browser.send("GET", "/projects", headers={"host": "www.app.example.test"})
    assert isinstance(reply, PassThrough) and not reply.user.is_authenticated


async def test_a_callable_resolver_that_fails_is_a_503_not_an_open_door(devidp: DevIdP) -> None:
    def resolver(path: str, host: str) -> str | None:
        if path.startswith("/boom"):
            raise RuntimeError("database down")
        return "acme" if path.startswith("/a/") else None

    engine = Engine(tenant_settings({"acme": org(devidp)}, tenant_options={"resolver": resolver}))
    browser = OrgBrowser(engine)
    reply = await browser.send("GET", "/a/page")
    assert isinstance(reply, Response) and reply.status == 303
    reply = await browser.send("GET", "/boom")
    assert isinstance(reply, Response) and reply.status == 503
    assert header(reply, "x-saml-error") == "tenant_unavailable"


async def test_a_failing_loader_is_503_then_keeps_the_last_good_settings(
    devidp: DevIdP, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"down": True}

    def load(slug: str) -> dict[str, Any] | None:
        if state["down"]:
            raise OSError("database unreachable")
        return org(devidp)

    engine = Engine(tenant_settings(load, tenant_options={"cache_seconds": 0}))
    browser = OrgBrowser(engine)
    reply = await browser.send("GET", "/saml/login/acme/")
    assert isinstance(reply, Response) and reply.status == 503
    assert header(reply, "x-saml-error") == "tenant_unavailable"
    assert b"Traceback" not in reply.body
    page = await browser.send("GET", "/organizations/acme/")  # not "anonymous, come in"
    assert isinstance(page, Response) and page.status == 503
    state["down"] = False
    engine.invalidate_tenant()
    await register(engine, "acme", devidp)
    assert (await browser.login("acme", devidp)).status == 303
    state["down"] = True
    engine.invalidate_tenant()
    with caplog.at_level(logging.WARNING, logger="saml_middleware.tenants"):
        page = await browser.send("GET", "/organizations/acme/")
    assert isinstance(page, PassThrough) and page.user.tenant == "acme"
    assert "keeping its last known settings" in caplog.text


async def test_an_invalid_loader_answer_is_a_clear_503(devidp: DevIdP) -> None:
    engine = Engine(tenant_settings(lambda slug: {"idp": {"metadata_url": "not a url"}}))
    reply = await OrgBrowser(engine).send("GET", "/saml/login/acme/")
    assert isinstance(reply, Response) and reply.status == 503
    assert header(reply, "x-saml-error") == "tenant_misconfigured"
    assert b"not set up correctly" in reply.body


async def test_a_top_level_idp_and_organizations_side_by_side(
    devidp: DevIdP, idp_b: DevIdP
) -> None:
    settings = tenant_settings({"globex": org(idp_b)}, idp={"metadata_xml": devidp.metadata_xml()})
    engine = Engine(settings)
    devidp.add_service_provider(engine.sp_metadata_xml())
    await register(engine, "globex", idp_b)
    browser = OrgBrowser(engine)
    reply = await browser.send("GET", "/dashboard")
    assert (
        isinstance(reply, Response) and header(reply, "location") == "/saml/login/?next=/dashboard"
    )
    saml_request, relay = await browser.to_idp("/saml/login/?next=/dashboard")
    reply = await browser.answer(devidp, saml_request, relay, at="/saml/acs/")
    assert header(reply, "location") == "/dashboard"
    page = await browser.send("GET", "/dashboard")
    assert isinstance(page, PassThrough) and page.user.tenant is None
    # The app's own session is not a Globex session.
    reply = await browser.send("GET", "/organizations/globex/")
    assert isinstance(reply, Response) and reply.status == 303


# -- Single Logout ------------------------------------------------------------------------


async def test_single_logout_per_organization(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    entity = f"{SP_BASE}/saml/metadata/acme/"
    _, outbound = devidp.create_logout_request(entity, "B.Simon@contoso.com")
    assert urlsplit(outbound.url).path == "/saml/sls/acme/"
    query = urlsplit(outbound.url).query
    # The same message at another organization's SLS is refused (issuer, destination).
    wrong = await browser.send("GET", f"/saml/sls/globex/?{query}")
    assert isinstance(wrong, Response) and wrong.status == 403
    assert isinstance(await browser.send("GET", "/organizations/acme/"), PassThrough)
    reply = await browser.send("GET", f"/saml/sls/acme/?{query}")
    assert isinstance(reply, Response) and reply.status == 303
    assert not browser.cookies


async def test_logout_asks_the_organizations_idp(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    reply = await browser.send("POST", "/saml/logout/", headers={"origin": SP_BASE})
    assert isinstance(reply, Response) and reply.status == 303
    location = header(reply, "location") or ""
    assert location.startswith(devidp.slo_url)
    parsed = devidp.parse_logout_request("redirect", raw_query=urlsplit(location).query)
    assert parsed.sp_entity_id == f"{SP_BASE}/saml/metadata/acme/"
    answer = devidp.create_logout_response(parsed, binding="redirect")
    assert urlsplit(answer.url).path == "/saml/sls/acme/"
    done = await browser.send("GET", f"/saml/sls/acme/?{urlsplit(answer.url).query}")
    assert isinstance(done, Response) and done.status == 303


# -- Test SSO -----------------------------------------------------------------------------


def checks(reply: Response) -> dict[str, str]:
    page = lxml.html.fromstring(reply.body)
    return {
        row.get("data-check"): row.get("data-result")
        for row in page.xpath("//table[@id='checks']//tr[@data-check]")
    }


def summary(reply: Response) -> str:
    return lxml.html.fromstring(reply.body).get_element_by_id("summary").get("data-result")


async def test_test_sso_passes_without_a_session_while_disabled(
    engine: Engine, devidp: DevIdP, orgs: dict[str, Any]
) -> None:
    orgs["acme"]["enabled"] = False
    engine.invalidate_tenant("acme")
    browser = OrgBrowser(engine)
    saml_request, relay = await browser.to_idp("/saml/test/acme/")
    info = devidp.parse_authn_request(saml_request, "redirect")
    response = devidp.create_response(
        "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    started = dict(browser.cookies)  # the login binding, as the browser had it
    reply = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(reply, Response) and reply.status == 200
    assert set_cookies(reply, "saml_session") == [] and not browser.cookies
    assert summary(reply) == "pass"
    assert checks(reply)["signature"] == "pass" and checks(reply)["audience"] == "pass"
    page = lxml.html.fromstring(reply.body)
    assert [li.text_content() for li in page.xpath("//ul[@id='roles']/li")] == ["Admin"]
    assert "Acme Inc." in page.get_element_by_id("summary").text_content()
    # The tested answer can sign no one in afterwards, here or as a login.
    again = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(again, Response) and again.status == 403
    assert header(again, "set-cookie") is None
    # Even from a browser that kept its binding cookie: the test request is used.
    browser.cookies = started
    again = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(again, Response) and again.status == 403
    assert header(again, "x-saml-error") == "wrong_in_response_to"
    assert set_cookies(again) == []


async def test_test_sso_shows_what_is_wrong(
    engine: Engine, devidp: DevIdP, orgs: dict[str, Any]
) -> None:
    orgs["acme"]["roles"] = {"map": {"admins": ["Admin"]}, "require_mapped_role": True}
    engine.invalidate_tenant("acme")
    browser = OrgBrowser(engine)
    saml_request, relay = await browser.to_idp("/saml/test/acme/")
    info = devidp.parse_authn_request(saml_request, "redirect")
    # C.Norole has no role claim; the IdP also answers with the wrong Reply URL.
    response = devidp.create_response(
        "cnoroles",
        sp_entity_id=info.sp_entity_id,
        in_response_to=info.request_id,
        acs_url=f"{SP_BASE}/saml/acs/",
    )
    reply = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": response})
    assert isinstance(reply, Response) and reply.status == 200
    assert summary(reply) == "fail" and set_cookies(reply, "saml_session") == []
    results = checks(reply)
    assert results["destination"] == "fail" and results["audience"] == "pass"
    fixes = lxml.html.fromstring(reply.body).xpath("//section[@id='fixes']//li[@data-fix]")
    assert "reply_url" in {li.get("data-fix") for li in fixes}


async def test_test_sso_diagnoses_an_idp_error_status(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    saml_request, _ = await browser.to_idp("/saml/test/acme/")
    info = devidp.parse_authn_request(saml_request, "redirect")
    root = forge.decode(
        devidp.create_response(
            "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
        )
    )
    forge.set_status(root, "urn:oasis:names:tc:SAML:2.0:status:Responder")
    reply = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": forge.encode(root)})
    assert isinstance(reply, Response) and reply.status == 200
    assert summary(reply) == "fail" and checks(reply)["response"] == "fail"
    # Without an outstanding test request the same answer is an ordinary refusal.
    again = await browser.send("POST", "/saml/acs/acme/", form={"SAMLResponse": forge.encode(root)})
    assert isinstance(again, Response) and again.status == 403


async def test_a_login_answer_is_never_taken_for_a_test(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    reply = await browser.login("acme", devidp)
    assert reply.status == 303 and browser.cookies


async def test_test_sso_for_the_apps_own_idp(make_engine: Any, devidp: DevIdP) -> None:
    engine = make_engine()
    browser = OrgBrowser(engine)
    saml_request, relay = await browser.to_idp("/saml/test/")
    reply = await browser.answer(devidp, saml_request, relay, at="/saml/acs/")
    assert reply.status == 200 and summary(reply) == "pass"
    assert set_cookies(reply, "saml_session") == []


async def test_an_organizations_metadata_url_is_read_once_and_kept(devidp: DevIdP) -> None:
    with MetadataServer(devidp.metadata_xml()) as server:
        row = {"idp": {"metadata_url": server.url}, "enabled": True}
        engine = Engine(tenant_settings(lambda slug: dict(row) if slug == "acme" else None))
        assert server.hits == 0  # nothing is fetched before the organization is used
        await register(engine, "acme", devidp)
        browser = OrgBrowser(engine)
        assert (await browser.login("acme", devidp)).status == 303
        assert server.hits == 1
        # An admin switches strict off: new settings, same IdP, no new fetch.
        row["strict"] = False
        engine.invalidate_tenant("acme")
        assert isinstance(await browser.send("GET", "/organizations/acme/"), PassThrough)
        assert server.hits == 1
        # The IdP's metadata endpoint fails: the last good copy keeps serving.
        server.document = None
        engine.invalidate_tenant("acme")
        page = await browser.send("GET", "/saml/metadata/acme/")
        assert isinstance(page, Response) and page.status == 200
        assert server.hits == 2


async def test_organizations_on_their_own_hosts(devidp: DevIdP) -> None:
    """With a host resolver, tenant_options.base_url puts each organization's SP (and
    so its session cookie) on the organization's own host."""
    engine = Engine(
        tenant_settings(
            {"acme": org(devidp)},
            tenant_options={
                "resolver": {"host": "{slug}.app.example.test"},
                "base_url": "https://{slug}.app.example.test",
            },
        )
    )
    metadata = etree.fromstring((await engine.sp_metadata_for("acme")).encode())
    assert metadata.get("entityID") == "https://acme.app.example.test/saml/metadata/acme/"
    devidp.add_service_provider(await engine.sp_metadata_for("acme"))
    browser = OrgBrowser(engine)
    on_acme = {"accept": "text/html", "host": "acme.app.example.test"}
    reply = await browser.send("GET", "/projects", headers=on_acme)
    assert isinstance(reply, Response) and reply.status == 303
    saml_request, relay = await browser.to_idp(header(reply, "location") or "")
    info = devidp.parse_authn_request(saml_request, "redirect")
    assert info.acs_url == "https://acme.app.example.test/saml/acs/acme/"
    reply = await browser.answer(devidp, saml_request, relay, at="/saml/acs/acme/")
    assert reply.status == 303 and header(reply, "location") == "/projects"
    page = await browser.send("GET", "/projects", headers=on_acme)
    assert isinstance(page, PassThrough) and page.user.tenant == "acme"
    # Signing out from the organization's own pages is not cross-site.
    out = await browser.send(
        "POST", "/saml/logout/", headers={"origin": "https://acme.app.example.test"}
    )
    assert isinstance(out, Response) and out.status == 303
    evil = await browser.send(
        "POST", "/saml/logout/", headers={"origin": "https://acme.app.example.test.evil.test"}
    )
    assert isinstance(evil, Response) and evil.status == 403


async def test_websockets_follow_the_organizations_rules(engine: Engine, devidp: DevIdP) -> None:
    browser = OrgBrowser(engine)
    assert await engine.websocket_user(request("GET", "/organizations/acme/ws")) is None
    assert (await browser.login("acme", devidp)).status == 303
    mine = await engine.websocket_user(
        request("GET", "/organizations/acme/ws", cookies=browser.cookies)
    )
    assert mine is not None and mine.tenant == "acme"
    other = request("GET", "/organizations/globex/ws", cookies=browser.cookies)
    assert await engine.websocket_user(other) is None


async def test_a_logout_answer_for_one_organization_is_refused_at_another(devidp: DevIdP) -> None:
    """Two organizations on one IdP, unsigned logout messages allowed: an answer without a
    Destination is told apart only by the organization its LogoutRequest was for."""
    rows = {"acme": org(devidp), "initech": org(devidp)}
    engine = Engine(tenant_settings(rows, security={"want_logout_signed": False}))
    for slug in rows:
        await register(engine, slug, devidp)
    browser = OrgBrowser(engine)
    assert (await browser.login("acme", devidp)).status == 303
    reply = await browser.send("POST", "/saml/logout/", headers={"origin": SP_BASE})
    location = header(reply, "location") or ""
    parsed = devidp.parse_logout_request("redirect", raw_query=urlsplit(location).query)
    answer = parse_qs(urlsplit(devidp.create_logout_response(parsed, binding="redirect").url).query)
    root = etree.fromstring(zlib.decompress(base64.b64decode(answer["SAMLResponse"][0]), -15))
    del root.attrib["Destination"]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    unsigned = deflate.compress(etree.tostring(root)) + deflate.flush()
    query = urlencode({"SAMLResponse": base64.b64encode(unsigned).decode()})
    elsewhere = await browser.send("GET", f"/saml/sls/initech/?{query}")
    assert isinstance(elsewhere, Response) and elsewhere.status == 403
    assert header(elsewhere, "x-saml-error") == "wrong_in_response_to"


async def test_a_test_answer_for_one_organization_is_no_test_at_another(devidp: DevIdP) -> None:
    rows = {"acme": org(devidp), "initech": org(devidp)}
    engine = Engine(tenant_settings(rows))
    for slug in rows:
        await register(engine, slug, devidp)
    browser = OrgBrowser(engine)
    saml_request, _ = await browser.to_idp("/saml/test/acme/")
    info = devidp.parse_authn_request(saml_request, "redirect")
    root = forge.decode(
        devidp.create_response(
            "bsimon", sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
        )
    )
    forge.set_status(root, "urn:oasis:names:tc:SAML:2.0:status:Responder")
    form = {"SAMLResponse": forge.encode(root)}
    elsewhere = await browser.send("POST", "/saml/acs/initech/", form=form)
    assert isinstance(elsewhere, Response) and elsewhere.status == 403  # no diagnostics page
    mine = await browser.send("POST", "/saml/acs/acme/", form=form)  # still its own to use
    assert isinstance(mine, Response) and mine.status == 200
