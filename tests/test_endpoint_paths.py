"""Every endpoint URL settable (issue 13): `paths.*`, `tenant_options.paths`, several ACS URLs.

What an admin would notice: the URLs the middleware serves, sends and lists in
its metadata are the configured ones; a Response is accepted when its
Destination and Recipient name one of them (RFC 3986 normalisation only: scheme
and host case, the default port, an empty path as "/"), whichever slash variant
of the path it was posted to; the settings that would make two endpoints share a
path are refused at start-up, naming the key. And the SAML profiles' rule
(4.1.4.5): Destination is required when the Response is signed; an unsigned one
may leave it out when its signed assertion's Recipient names our ACS. The
Response tests run on both verification paths (SAML_TEST_CRYPTO_BACKEND).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from saml_middleware.config import ConfigError, load_settings
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.routing import normalized_url, url_in
from saml_middleware.saml.logout_messages import redirect_url
from tests import forge
from tests.forge import KeyPair
from tests.helpers import SP_BASE, header, remember_cookies, request, settings_for
from tests.security.harness import refusal_log
from tests.test_slo import logout_request_xml

pytestmark = pytest.mark.anyio

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
HTML = {"accept": "text/html"}


def authn_request(location: str) -> etree._Element:
    """The AuthnRequest carried by an HTTP-Redirect URL."""
    encoded = parse_qs(urlsplit(location).query)["SAMLRequest"][0]
    return etree.fromstring(zlib.decompress(base64.b64decode(encoded), -15))


async def post_response(engine: Engine, path: str, root: etree._Element) -> tuple[Response, str]:
    """Post a Response to `path`; the reply and the refusal code logged (or "")."""
    with refusal_log() as log:
        reply = await engine.handle(
            request("POST", path, form={"SAMLResponse": forge.encode(root), "RelayState": "/x"})
        )
    assert isinstance(reply, Response)
    return reply, (log.codes[-1] if log.codes else "")


def minted(
    engine: Engine, idp: DevIdP, keys: KeyPair, *, destination: str | None, recipient: str
) -> etree._Element:
    """An IdP-initiated Response for bsimon with this Destination and Recipient, assertion
    re-signed by the trusted key (the Response itself unsigned)."""
    root = forge.decode(
        idp.create_response(
            "bsimon",
            sp_entity_id=engine.settings.sp.entity_id,
            in_response_to=None,
            acs_url=recipient,
        )
    )
    forge.set_destination(root, destination)
    forge.set_recipient(root, recipient)
    forge.resign(root, keys)
    return root


def signed_in(reply: Response) -> bool:
    return reply.status == 303 and (header(reply, "set-cookie") or "").startswith("saml_session=")


# -- the settings -----------------------------------------------------------------------


def test_defaults_keep_todays_urls(idp: DevIdP) -> None:
    settings = load_settings(settings_for(idp))
    for name in ("acs", "sls", "metadata", "login", "logout", "test"):
        assert settings.endpoint_url(name) == f"{SP_BASE}/saml/{name}/"
    assert settings.acs_urls == (f"{SP_BASE}/saml/acs/",)
    assert settings.sp.entity_id == f"{SP_BASE}/saml/metadata/"


def test_each_path_is_used_as_given(idp: DevIdP) -> None:
    settings = load_settings(
        settings_for(
            idp,
            paths={
                "acs": ["/accounts/saml/acs", "/old/acs/"],
                "metadata": "/saml/metadata.xml",
                "sls": "/",
                "login": "/sso/start",
            },
        )
    )
    assert settings.acs_url == f"{SP_BASE}/accounts/saml/acs"
    assert settings.acs_urls == (f"{SP_BASE}/accounts/saml/acs", f"{SP_BASE}/old/acs/")
    assert settings.endpoint_url("sls") == f"{SP_BASE}/"
    assert settings.endpoint_url("login") == f"{SP_BASE}/sso/start"
    assert settings.endpoint_url("logout") == f"{SP_BASE}/saml/logout/"  # not set: default
    # The default entity ID is the metadata URL; any string may be given instead.
    assert settings.sp.entity_id == f"{SP_BASE}/saml/metadata.xml"
    given = load_settings(settings_for(idp, sp__entity_id="urn:contoso:app"))
    assert given.sp.entity_id == "urn:contoso:app"


@pytest.mark.parametrize(
    ("paths", "key", "problem"),
    [
        ({"acs": "saml/acs"}, "paths.acs", "URL path"),
        ({"acs": "/a//b"}, "paths.acs", "URL path"),
        ({"acs": "/a/../b"}, "paths.acs", "URL path"),
        ({"sls": "/sls?x=1"}, "paths.sls", "query only as an ACS path"),
        ({"acs": "/acs?x=1#f"}, "paths.acs", "query only as an ACS path"),
        ({"acs": "/acs//"}, "paths.acs", "URL path"),
        ({"acs": []}, "paths.acs", "non-empty list"),
        ({"sls": ["/a", "/b"]}, "paths.sls", "must be a path"),
        ({"acs": "/acs/{slug}/"}, "paths.acs", "organization"),
        ({"sls": "/saml/acs"}, "paths.sls", "same path as paths.acs"),
        ({"acs": ["/x/", "/y", "/x/"]}, "paths.acs", "twice"),
        ({"login": "/", "test": "/"}, "paths.test", "same path as paths.login"),
    ],
    ids=[
        "relative",
        "double-slash",
        "dot-dot",
        "query-not-acs",
        "query-with-fragment",
        "two-trailing",
        "empty-list",
        "list-not-acs",
        "slug-outside-organizations",
        "sls-is-acs",
        "acs-twice",
        "two-at-root",
    ],
)
def test_paths_that_cannot_work_are_refused_at_start_up(
    idp: DevIdP, paths: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(settings_for(idp, paths=paths))
    assert caught.value.key == key and problem in str(caught.value), str(caught.value)


def tenants_settings(idp: DevIdP, **options: Any) -> dict[str, Any]:
    return settings_for(
        idp,
        tenants={"acme": {"idp": {"metadata_xml": idp.metadata_xml()}}},
        tenant_options={"resolver": {"path_prefix": "/organizations/"}, **options},
    )


@pytest.mark.parametrize(
    ("paths", "key", "problem"),
    [
        ({"acs": "/accounts/saml/acs"}, "tenant_options.paths.acs", "{slug} once"),
        ({"acs": "/accounts/x{slug}/acs"}, "tenant_options.paths.acs", "{slug} once"),
        ({"acs": "/a/{slug}/{slug}"}, "tenant_options.paths.acs", "{slug} once"),
        ({"sls": "/saml/acs/{slug}"}, "tenant_options.paths.sls", "same path as tenant_options"),
        # /orgs/acs/acs would reach both
        (
            {"acs": "/orgs/{slug}/acs", "sls": "/orgs/acs/{slug}"},
            "tenant_options.paths.sls",
            "same",
        ),
        # organization "login" would be the app's own Test SSO
        ({"login": "/saml/{slug}/"}, "tenant_options.paths.login", "paths.login"),
    ],
    ids=["no-slug", "slug-in-a-segment", "slug-twice", "same", "overlap", "reaches-own"],
)
def test_organization_paths_need_their_slug_and_their_own_path(
    idp: DevIdP, paths: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tenants_settings(idp, paths=paths))
    assert caught.value.key == key and problem in str(caught.value), str(caught.value)


def test_organization_paths_default_to_todays_layout_and_take_the_slug(idp: DevIdP) -> None:
    default = load_settings(tenants_settings(idp))
    acme = default.tenants["acme"].settings  # type: ignore[index, union-attr]
    assert acme.acs_urls == (f"{SP_BASE}/saml/acs/acme/",)
    assert acme.sp.entity_id == f"{SP_BASE}/saml/metadata/acme/"
    chosen = load_settings(
        tenants_settings(
            idp,
            paths={
                "acs": ["/accounts/{slug}/saml/acs", "/saml/acs/{slug}/"],
                "metadata": "/accounts/{slug}/saml",
            },
        )
    )
    acme = chosen.tenants["acme"].settings  # type: ignore[index, union-attr]
    assert acme.acs_urls == (f"{SP_BASE}/accounts/acme/saml/acs", f"{SP_BASE}/saml/acs/acme/")
    assert acme.sp.entity_id == f"{SP_BASE}/accounts/acme/saml"
    assert acme.endpoint_url("sls") == f"{SP_BASE}/saml/sls/acme/"


# -- the URL comparison -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "configured", "same"),
    [
        ("HTTPS://App.Example.TEST/saml/acs", "https://app.example.test/saml/acs", True),
        ("https://app.example.test:443/saml/acs", "https://app.example.test/saml/acs", True),
        ("http://app.example.test:80/", "http://app.example.test", True),
        ("https://app.example.test", "https://app.example.test/", True),
        ("https://app.example.test/saml/acs/", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/SAML/acs", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/saml/%61cs", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/saml/./acs", "https://app.example.test/saml/acs", False),
        ("https://app.example.test:8443/saml/acs", "https://app.example.test/saml/acs", False),
        ("http://app.example.test/saml/acs", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/saml/acs#x", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/saml/acs?x", "https://app.example.test/saml/acs", False),
        ("https://app.example.test/saml/ac\ts", "https://app.example.test/saml/acs", False),
        ("https://app.example.test./saml/acs", "https://app.example.test/saml/acs", False),
        ("", "https://app.example.test/saml/acs", False),
    ],
)
def test_urls_are_compared_after_rfc3986_normalisation_only(
    received: str, configured: str, same: bool
) -> None:
    assert url_in(received, (configured,)) is same
    assert normalized_url(configured) is not None


# -- the endpoints at their paths -----------------------------------------------------------


async def test_a_reply_url_without_trailing_slash_signs_in(
    make_idp_engine: Callable[..., Engine], idp: DevIdP
) -> None:
    """Entra's Reply URL typed without the slash: the SP-initiated round trip works."""
    engine = make_idp_engine(paths={"acs": "/accounts/saml/acs", "login": "/sso/start"})
    page = await engine.handle(request("GET", "/dashboard", headers=HTML))
    assert isinstance(page, Response) and page.status == 303
    assert header(page, "location") == "/sso/start?next=/dashboard"
    to_idp = await engine.handle(request("GET", "/sso/start/?next=/dashboard", headers=HTML))
    assert isinstance(to_idp, Response) and to_idp.status == 303
    sent = authn_request(header(to_idp, "location") or "")
    assert sent.get("AssertionConsumerServiceURL") == f"{SP_BASE}/accounts/saml/acs"
    info = idp.parse_authn_request(
        parse_qs(urlsplit(header(to_idp, "location") or "").query)["SAMLRequest"][0], "redirect"
    )
    answer = idp.create_response(
        "bsimon",
        sp_entity_id=info.sp_entity_id,
        in_response_to=info.request_id,
        acs_url=info.acs_url,
    )
    relay = parse_qs(urlsplit(header(to_idp, "location") or "").query)["RelayState"][0]
    jar: dict[str, str] = {}
    remember_cookies(jar, to_idp)  # the login binding: the same browser comes back
    reply = await engine.handle(
        request(
            "POST",
            "/accounts/saml/acs",
            form={"SAMLResponse": answer, "RelayState": relay},
            cookies=jar,
        )
    )
    assert isinstance(reply, Response) and signed_in(reply), reply.body[:300]
    assert header(reply, "location") == "/dashboard"


async def test_either_slash_variant_reaches_the_acs_and_destination_decides(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": "/accounts/saml/acs"})
    configured = f"{SP_BASE}/accounts/saml/acs"
    for path in ("/accounts/saml/acs", "/accounts/saml/acs/"):
        root = minted(engine, idp, idp_keys, destination=configured, recipient=configured)
        reply, code = await post_response(engine, path, root)
        assert signed_in(reply), (path, code)
    # Addressed to the other variant (Destination and Recipient alike): not ours.
    other = configured + "/"
    for path in ("/accounts/saml/acs", "/accounts/saml/acs/"):
        root = minted(engine, idp, idp_keys, destination=other, recipient=configured)
        reply, code = await post_response(engine, path, root)
        assert (reply.status, code) == (403, "wrong_destination"), path
        root = minted(engine, idp, idp_keys, destination=configured, recipient=other)
        reply, code = await post_response(engine, path, root)
        assert (reply.status, code) == (403, "wrong_recipient"), path


async def test_an_acs_url_with_a_query_is_routed_by_its_path_and_named_whole(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    """Auth0-style Reply URLs (`/login/callback?connection=x`): the IdP posts to the
    whole URL; the Destination must name it, query included."""
    engine = make_idp_engine(paths={"acs": "/login/callback?connection=adfs"})
    configured = f"{SP_BASE}/login/callback?connection=adfs"
    assert engine.settings.acs_url == configured
    root = minted(engine, idp, idp_keys, destination=configured, recipient=configured)
    reply, code = await post_response(engine, "/login/callback", root)
    assert signed_in(reply), code
    other = f"{SP_BASE}/login/callback?connection=other"
    root = minted(engine, idp, idp_keys, destination=other, recipient=configured)
    reply, code = await post_response(engine, "/login/callback", root)
    assert (reply.status, code) == (403, "wrong_destination")


async def test_both_slash_variants_may_be_listed_during_a_move(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": ["/saml/acs", "/saml/acs/"]})
    for url in (f"{SP_BASE}/saml/acs", f"{SP_BASE}/saml/acs/"):
        root = minted(engine, idp, idp_keys, destination=url, recipient=url)
        reply, code = await post_response(engine, "/saml/acs", root)
        assert signed_in(reply), (url, code)


async def test_destination_is_normalised_as_rfc3986_says(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": "/"})
    # An empty path is "/", the default port and the host's case do not count...
    root = minted(
        engine, idp, idp_keys, destination="HTTPS://APP.example.test:443", recipient=f"{SP_BASE}"
    )
    reply, code = await post_response(engine, "/", root)
    assert signed_in(reply), code
    # ...the path's case does.
    engine = make_idp_engine(paths={"acs": "/saml/acs"})
    root = minted(
        engine, idp, idp_keys, destination=f"{SP_BASE}/SAML/acs", recipient=f"{SP_BASE}/saml/acs"
    )
    reply, code = await post_response(engine, "/saml/acs", root)
    assert (reply.status, code) == (403, "wrong_destination")


async def test_several_acs_urls_are_listed_and_accepted(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    """Migration: the URLs registered at the customers' IdPs keep working."""
    engine = make_idp_engine(paths={"acs": ["/saml/acs/", "/accounts/saml/acs"]})
    first, second = f"{SP_BASE}/saml/acs/", f"{SP_BASE}/accounts/saml/acs"
    metadata = etree.fromstring(engine.sp_metadata_xml().encode())
    listed = [
        (s.get("Location"), s.get("index"), s.get("isDefault"))
        for s in metadata.iter(f"{MD}AssertionConsumerService")
    ]
    assert listed == [(first, "1", "true"), (second, "2", None)]
    to_idp = await engine.handle(request("GET", "/saml/login/", headers=HTML))
    assert isinstance(to_idp, Response)
    assert (
        authn_request(header(to_idp, "location") or "").get("AssertionConsumerServiceURL") == first
    )
    for url, path in ((first, "/saml/acs/"), (second, "/accounts/saml/acs")):
        reply, code = await post_response(
            engine, path, minted(engine, idp, idp_keys, destination=url, recipient=url)
        )
        assert signed_in(reply), (url, code)
    unlisted = f"{SP_BASE}/old/acs"
    reply, code = await post_response(
        engine, "/saml/acs/", minted(engine, idp, idp_keys, destination=unlisted, recipient=first)
    )
    assert (reply.status, code) == (403, "wrong_destination")
    reply, code = await post_response(
        engine, "/saml/acs/", minted(engine, idp, idp_keys, destination=first, recipient=unlisted)
    )
    assert (reply.status, code) == (403, "wrong_recipient")


async def test_metadata_logout_and_test_sso_at_their_paths(
    make_idp_engine: Callable[..., Engine],
) -> None:
    engine = make_idp_engine(
        paths={"metadata": "/saml/metadata.xml", "logout": "/signout", "test": "/admin/sso-test"}
    )
    metadata = await engine.handle(request("GET", "/saml/metadata.xml"))
    assert isinstance(metadata, Response) and metadata.status == 200
    assert b"EntityDescriptor" in metadata.body
    test_sso = await engine.handle(request("GET", "/admin/sso-test/", headers=HTML))
    assert isinstance(test_sso, Response) and test_sso.status == 303
    assert (header(test_sso, "location") or "").startswith("https://idp.example.test/")
    signout = await engine.handle(request("GET", "/signout", headers=HTML))
    assert isinstance(signout, Response) and signout.status == 303  # no session: on to "/"
    # The old default paths are no longer endpoints (under the prefix: 404).
    old = await engine.handle(request("GET", "/saml/metadata/"))
    assert isinstance(old, Response) and old.status == 404


async def test_organization_endpoints_at_their_template(idp: DevIdP) -> None:
    settings = tenants_settings(
        idp,
        paths={"acs": "/accounts/{slug}/saml/acs", "login": "/accounts/{slug}/saml/login"},
    )
    settings["paths"] = {"protect": []}
    settings.pop("idp")
    engine = Engine(settings)
    idp.add_service_provider(await engine.sp_metadata_for("acme"))
    page = await engine.handle(request("GET", "/organizations/acme/x", headers=HTML))
    assert isinstance(page, Response)
    assert header(page, "location") == "/accounts/acme/saml/login?next=/organizations/acme/x"
    to_idp = await engine.handle(request("GET", "/accounts/acme/saml/login", headers=HTML))
    assert isinstance(to_idp, Response) and to_idp.status == 303
    location = header(to_idp, "location") or ""
    sent = authn_request(location)
    assert sent.get("AssertionConsumerServiceURL") == f"{SP_BASE}/accounts/acme/saml/acs"
    info = idp.parse_authn_request(parse_qs(urlsplit(location).query)["SAMLRequest"][0], "redirect")
    answer = idp.create_response(
        "bsimon",
        sp_entity_id=info.sp_entity_id,
        in_response_to=info.request_id,
        acs_url=info.acs_url,
    )
    relay = parse_qs(urlsplit(location).query)["RelayState"][0]
    # The slug in another case reaches acme's ACS (Destination must still be acme's URL).
    jar: dict[str, str] = {}
    remember_cookies(jar, to_idp)  # the login binding: the same browser comes back
    reply = await engine.handle(
        request(
            "POST",
            "/accounts/ACME/saml/acs/",
            form={"SAMLResponse": answer, "RelayState": relay},
            cookies=jar,
        )
    )
    assert isinstance(reply, Response) and signed_in(reply), reply.body[:300]
    unknown = await engine.handle(request("GET", "/accounts/a_b/saml/login"))
    assert isinstance(unknown, Response) and unknown.status == 404


# -- Destination per the SAML profiles (4.1.4.5) ---------------------------------------------


async def test_unsigned_response_without_destination_signs_in_on_the_recipient(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": "/accounts/saml/acs"})
    acs = f"{SP_BASE}/accounts/saml/acs"
    reply, code = await post_response(
        engine, "/accounts/saml/acs", minted(engine, idp, idp_keys, destination=None, recipient=acs)
    )
    assert signed_in(reply), code


async def test_unsigned_response_without_destination_needs_our_recipient(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": "/accounts/saml/acs"})
    root = minted(
        engine, idp, idp_keys, destination=None, recipient="https://evil.test/accounts/saml/acs"
    )
    reply, code = await post_response(engine, "/accounts/saml/acs", root)
    assert (reply.status, code) == (403, "wrong_recipient")
    assert header(reply, "set-cookie") is None


async def test_signed_response_without_destination_is_refused(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, idp_keys: KeyPair
) -> None:
    engine = make_idp_engine(paths={"acs": "/accounts/saml/acs"})
    acs = f"{SP_BASE}/accounts/saml/acs"
    root = forge.decode(
        idp.create_response(
            "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
        )
    )
    forge.set_destination(root, None)
    forge.set_recipient(root, acs)
    forge.resign(root, idp_keys, response=True)
    reply, code = await post_response(engine, "/accounts/saml/acs", root)
    assert (reply.status, code) == (403, "wrong_destination")
    # The same Response addressed to the ACS signs in (the refusal is about Destination).
    root = forge.decode(
        idp.create_response(
            "bsimon", sp_entity_id=engine.settings.sp.entity_id, in_response_to=None
        )
    )
    forge.set_destination(root, acs)
    forge.set_recipient(root, acs)
    forge.resign(root, idp_keys, response=True)
    reply, code = await post_response(engine, "/accounts/saml/acs", root)
    assert signed_in(reply), code


# -- Single Logout at its path -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "accepted"),
    [
        (f"{SP_BASE}/auth/slo", True),
        ("HTTPS://APP.EXAMPLE.TEST:443/auth/slo", True),
        (f"{SP_BASE}/auth/slo/", False),
        (f"{SP_BASE}/saml/sls/", False),
    ],
    ids=["configured", "normalised", "other-slash", "old-default"],
)
async def test_logout_request_destination_is_the_configured_sls(
    make_idp_engine: Callable[..., Engine], idp: DevIdP, destination: str, accepted: bool
) -> None:
    engine = make_idp_engine(paths={"sls": "/auth/slo"})
    xml = logout_request_xml(issuer=idp.entity_id, destination=destination)
    url = redirect_url(f"{SP_BASE}/auth/slo/", "SAMLRequest", xml, None, idp._key_pem)
    reply = await engine.handle(request("GET", f"/auth/slo/?{urlsplit(url).query}"))
    assert isinstance(reply, Response)
    if accepted:
        assert reply.status in (200, 303), reply.body[:300]
        assert header(reply, "x-saml-error") is None
    else:
        assert (reply.status, header(reply, "x-saml-error")) == (403, "wrong_destination")


async def test_endpoints_are_not_protected_pages(make_idp_engine: Callable[..., Engine]) -> None:
    engine = make_idp_engine(paths={"acs": "/app/acs", "protect": ["/app"]})
    assert not engine.is_protected("/app/acs") and not engine.is_protected("/app/acs/")
    assert engine.is_protected("/app/other")
    reply = await engine.handle(request("GET", "/app/acs"))
    assert isinstance(reply, Response) and reply.status == 405  # the ACS, not a login redirect
    assert not isinstance(reply, PassThrough)


def test_check_lists_every_reply_url(
    idp: DevIdP, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from saml_middleware.cli import main
    from tests.test_cli_commands import report_lines

    spec = tmp_path / "settings.json"
    spec.write_text(json.dumps(settings_for(idp, paths={"acs": ["/accounts/saml/acs", "/old/"]})))
    main(["check", "--settings", str(spec)])
    lines = report_lines(capsys.readouterr().out)
    assert lines["Reply URL (ACS URL)"] == f"{SP_BASE}/accounts/saml/acs"
    assert lines["Also a Reply URL"] == f"{SP_BASE}/old/"
