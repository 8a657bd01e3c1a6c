"""examples/multi_tenant.py: the organizations admin and per-organization SSO, in process.

The admin views are driven through httpx's ASGI transport, first on the plain
app (`create_app`, a recording stand-in for the settings check) and then behind
the middleware (`build`), where a whole organization is set up the way the
admin page tells a person to: create it, give it the development IdP, Test SSO,
enable it, sign in, disable it. The command itself is started in tests/e2e/.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import lxml.html
import pytest

from examples import multi_tenant as mt
from saml_middleware import ConfigError
from saml_middleware.devidp import DevIdP
from tests.adapter_apps import client_for, login

REPO = Path(__file__).resolve().parent.parent
BASE = "http://app.example.test"
SECRET = "multi-tenant-test-secret-0123456789"
HTML = {"accept": "text/html"}
SESSION_COOKIE = "saml_session"


def csrf_token(client: httpx.Client) -> str:
    """The admin pages' form token (and its cookie, now in the client's jar)."""
    page = client.get("/admin/")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def errors_in(html: str) -> dict[str, str]:
    """The form errors a page shows, by field."""
    return dict(re.findall(r'<p class="error" id="error-([a-z0-9_]+)">(.*?)</p>', html))


def sso_form(token: str, **fields: str) -> dict[str, str]:
    form = {"csrf_token": token, "strict": "on", "role_map": "admins -> Admin"}
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


def manual_idp(idp: DevIdP) -> dict[str, str]:
    """The SSO form's manual IdP fields for the development IdP (Contentstack's way)."""
    return {
        "sso_url": idp.sso_redirect_url,
        "idp_entity_id": idp.entity_id,
        "x509cert": idp.cert_pem,
    }


# -- the plain app: admin views with a stand-in settings check --------------------------


class Recorder:
    def __init__(self) -> None:
        self.checked: list[tuple[str, dict[str, Any]]] = []
        self.changed: list[str] = []
        self.refuse: ConfigError | None = None

    def check(self, slug: str, tenant: Mapping[str, Any]) -> None:
        self.checked.append((slug, dict(tenant)))
        if self.refuse is not None:
            raise self.refuse

    def on_change(self, slug: str) -> None:
        self.changed.append(slug)


@pytest.fixture
def store(tmp_path: Path) -> mt.OrganizationStore:
    return mt.OrganizationStore(tmp_path / "orgs.sqlite3")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def admin(store: mt.OrganizationStore, recorder: Recorder) -> Iterator[httpx.Client]:
    app = mt.create_app(store, BASE, recorder.check, recorder.on_change)
    with client_for(app, "asgi", BASE) as client:
        yield client


@pytest.mark.parametrize("slug", ["acme", "a", "acme-inc", "2048", "a" * 63, "x-1-y"])
def test_valid_sso_names(slug: str) -> None:
    assert mt.check_slug(f"  {slug} ") == slug


@pytest.mark.parametrize(
    ("slug", "says"),
    [
        ("", "Enter an SSO name"),
        ("Acme", "must be lowercase: 'acme'?"),
        ("-acme", "must not start or end with a hyphen"),
        ("acme-", "must not start or end with a hyphen"),
        ("acme inc", "may not contain ' '"),
        ("acme_inc", "may not contain '_'"),
        ("acmé", "may not contain 'é'"),
        ("../x", "may not contain '.' '/'"),
        ("a" * 64, "64 characters long"),
    ],
)
def test_invalid_sso_names_say_why(slug: str, says: str) -> None:
    with pytest.raises(mt.FormError) as caught:
        mt.check_slug(slug)
    assert says in caught.value.errors["slug"]
    assert "lowercase letters (a-z), digits (0-9) and hyphens" in caught.value.errors["slug"]


def test_role_mapping_lines() -> None:
    text = "# Entra app roles\nadmins -> Admin\n\n developers ->Member, Viewer \n"
    assert mt.parse_role_map(text) == {"admins": ["Admin"], "developers": ["Member", "Viewer"]}
    assert mt.role_map_text(mt.parse_role_map(text)) == (
        "admins -> Admin\ndevelopers -> Member, Viewer"
    )
    for bad, says in [
        ("admins Admin", "write it as"),
        ("-> Admin", "write it as"),
        ("admins ->", "write it as"),
        ("admins -> <b>", "not a role name"),
        ("admins -> Admin\nadmins -> Member", "mapped twice"),
    ]:
        with pytest.raises(mt.FormError) as caught:
            mt.parse_role_map(bad)
        assert says in caught.value.errors["role_map"], bad


def test_create_an_organization(admin: httpx.Client, store: mt.OrganizationStore) -> None:
    token = csrf_token(admin)
    created = admin.post(
        "/admin/organizations", data={"slug": "acme", "name": "Acme, Inc.", "csrf_token": token}
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/organizations/acme/"
    org = store.get("acme")
    assert org is not None and org.name == "Acme, Inc."
    assert (org.enabled, org.strict, org.idp) == (False, True, None)
    assert store.tenant("acme") is None  # no IdP yet: the middleware sees no organization

    page = admin.get("/admin/organizations/acme/")
    assert page.status_code == 200
    values = dict(
        re.findall(r'<tr data-value="([a-z_]+)"><th>.*?</th><td><code>(.*?)</code>', page.text)
    )
    assert values == {
        "entity_id": f"{BASE}/saml/metadata/acme/",
        "acs_url": f"{BASE}/saml/acs/acme/",
        "sign_on_url": f"{BASE}/saml/login/acme/",
        "logout_url": f"{BASE}/saml/sls/acme/",
        "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "metadata": f"{BASE}/saml/metadata/acme/",
    }
    claims = page.text.split('id="claims"', 1)[1]
    for uri in (
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    ):
        assert uri in claims
    assert 'id="demo-warning"' in page.text and "no login" in page.text
    assert 'id="test-sso-missing"' in page.text and "Enable SSO" not in page.text
    assert "admins -&gt; Admin" in page.text  # the suggested role mapping
    listing = admin.get("/admin/")
    assert 'data-slug="acme"' in listing.text and "Acme, Inc." in listing.text


@pytest.mark.parametrize(
    ("slug", "status"),
    [("Acme Inc", 400), ("-x", 400), ("", 400), ("a" * 64, 400)],
)
def test_a_bad_sso_name_is_a_400_with_the_reason(
    admin: httpx.Client, store: mt.OrganizationStore, slug: str, status: int
) -> None:
    token = csrf_token(admin)
    refused = admin.post("/admin/organizations", data={"slug": slug, "csrf_token": token})
    assert refused.status_code == status
    assert "lowercase letters (a-z)" in errors_in(refused.text)["slug"]
    assert f'value="{slug}"' in refused.text  # what was typed stays in the field
    assert store.all() == []


def test_a_taken_sso_name_is_a_409(admin: httpx.Client) -> None:
    token = csrf_token(admin)
    assert admin.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    again = admin.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    assert again.status_code == 409 and "already taken" in errors_in(again.text)["slug"]


def test_forms_without_the_token_or_from_another_site_are_refused(
    admin: httpx.Client, store: mt.OrganizationStore, recorder: Recorder
) -> None:
    token = csrf_token(admin)
    attempts = [
        ({"slug": "acme"}, {}),  # no token
        ({"slug": "acme", "csrf_token": "x" * 43}, {}),  # a wrong token
        ({"slug": "acme", "csrf_token": token}, {"origin": "https://evil.example"}),
        ({"slug": "acme", "csrf_token": token}, {"origin": "null"}),
        ({"slug": "acme", "csrf_token": token}, {"referer": "https://evil.example/page"}),
    ]
    for data, headers in attempts:
        refused = admin.post("/admin/organizations", data=data, headers=headers)
        assert refused.status_code == 403, (data, headers)
        assert "Refused" in refused.text
    # A browser without the cookie (a cross-site form posting a stolen token).
    with client_for(
        mt.create_app(store, BASE, recorder.check, recorder.on_change), "asgi", BASE
    ) as stranger:
        refused = stranger.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
        assert refused.status_code == 403
    assert store.all() == []
    # The same form from the app's own page goes through.
    ok = admin.post(
        "/admin/organizations",
        data={"slug": "acme", "csrf_token": token},
        headers={"origin": BASE, "referer": f"{BASE}/admin/"},
    )
    assert ok.status_code == 303


def test_the_csrf_cookie_is_strict_and_http_only(admin: httpx.Client) -> None:
    page = admin.get("/admin/")
    cookie = page.headers["set-cookie"].lower()
    assert "admin_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/admin" in cookie
    assert "set-cookie" not in admin.get("/admin/").headers  # kept, not renewed


def test_bad_or_huge_forms_are_4xx(admin: httpx.Client) -> None:
    token = csrf_token(admin)
    huge = admin.post(
        "/admin/organizations", data={"slug": "a", "csrf_token": token, "name": "x" * 70_000}
    )
    assert huge.status_code == 413
    garbage = admin.post(
        "/admin/organizations",
        content=b"--x\r\nnonsense",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert garbage.status_code in (400, 403)
    long_name = admin.post(
        "/admin/organizations", data={"slug": "acme", "name": "n" * 101, "csrf_token": token}
    )
    assert long_name.status_code == 400


def test_save_sso_settings_builds_the_tenant_dict(
    admin: httpx.Client, store: mt.OrganizationStore, recorder: Recorder
) -> None:
    token = csrf_token(admin)
    admin.post("/admin/organizations", data={"slug": "acme", "name": "Acme", "csrf_token": token})
    saved = admin.post(
        "/admin/organizations/acme/sso",
        data=sso_form(
            token,
            metadata_url="https://login.microsoftonline.com/t/federationmetadata/2007-06/"
            "federationmetadata.xml?appid=a",
            role_map="admins -> Admin\ndevelopers -> Member",
            strict=None,
            session_minutes="60",
        ),
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/admin/organizations/acme/?done=saved"
    expected = {
        "name": "Acme",
        "idp": {
            "metadata_url": "https://login.microsoftonline.com/t/federationmetadata/2007-06/"
            "federationmetadata.xml?appid=a"
        },
        "enabled": False,
        "strict": False,
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
        "session": {"max_age_seconds": 3600},
    }
    assert recorder.checked == [("acme", expected)]
    assert store.tenant("acme") == expected
    assert recorder.changed == ["acme"]
    page = admin.get(saved.headers["location"])
    assert (
        'id="notice">Saved.' in page.text and 'id="test-sso" href="/saml/test/acme/"' in page.text
    )
    assert "Enable SSO" in page.text


def test_manual_idp_and_the_loader(store: mt.OrganizationStore) -> None:
    store.create("globex")
    config = mt.parse_sso_form(
        {
            "sso_url": "https://login.example/sso",
            "idp_entity_id": "https://sts.example/t/",
            "x509cert": "MIIB...",
            "role_map": "",
            "strict": "on",
        }
    )
    store.save_sso("globex", config)
    assert store.tenant("globex") == {
        "name": "globex",
        "idp": {
            "entity_id": "https://sts.example/t/",
            "sso_url": "https://login.example/sso",
            "x509cert": "MIIB...",
        },
        "enabled": False,
        "strict": True,
    }
    store.set_enabled("globex", True)
    assert store.tenant("globex")["enabled"] is True  # type: ignore[index]
    assert store.tenant("nobody") is None
    assert store.tenant("Not a slug!") is None


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({}, "metadata_url", "Paste the App Federation Metadata URL"),
        ({"metadata_url": "not a url"}, "metadata_url", "must be an http(s) URL"),
        ({"metadata_url": "ftp://x/md"}, "metadata_url", "must be an http(s) URL"),
        (
            {"metadata_url": "https://x/md", "sso_url": "https://x/sso"},
            "metadata_url",
            "not both",
        ),
        ({"sso_url": "https://x/sso"}, "x509cert", "Certificate (Base64) is needed"),
        ({"sso_url": "https://x/sso", "x509cert": "M"}, "idp_entity_id", "Identifier is needed"),
        ({"metadata_url": "https://x/md", "role_map": "nonsense"}, "role_map", "write it as"),
        ({"metadata_url": "https://x/md", "session_minutes": "0"}, "session_minutes", "1 to 480"),
        ({"metadata_url": "https://x/md", "session_minutes": "481"}, "session_minutes", "480"),
        ({"metadata_url": "https://x/md", "session_minutes": "1h"}, "session_minutes", "minutes"),
    ],
)
def test_sso_form_errors_are_400_and_nothing_is_saved(
    admin: httpx.Client,
    store: mt.OrganizationStore,
    recorder: Recorder,
    fields: dict[str, str],
    field: str,
    says: str,
) -> None:
    token = csrf_token(admin)
    admin.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    refused = admin.post("/admin/organizations/acme/sso", data=sso_form(token, **fields))
    assert refused.status_code == 400
    assert says in errors_in(refused.text)[field]
    assert 'id="form-errors"' in refused.text
    for value in fields.values():  # what was typed is shown again
        assert value.replace("'", "&#x27;") in refused.text
    assert recorder.checked == [] and recorder.changed == []
    assert store.get("acme").idp is None  # type: ignore[union-attr]


def test_a_settings_problem_the_middleware_finds_is_shown_by_its_field(
    admin: httpx.Client, store: mt.OrganizationStore, recorder: Recorder
) -> None:
    token = csrf_token(admin)
    admin.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    recorder.refuse = ConfigError("idp.metadata_url", "could not fetch metadata (HTTP 404)")
    refused = admin.post(
        "/admin/organizations/acme/sso", data=sso_form(token, metadata_url="https://x/md")
    )
    assert refused.status_code == 400
    assert errors_in(refused.text)["metadata_url"] == (
        "App Federation Metadata URL: could not fetch metadata (HTTP 404)."
    )
    assert store.get("acme").idp is None  # type: ignore[union-attr]


def test_enable_and_disable(
    admin: httpx.Client, store: mt.OrganizationStore, recorder: Recorder
) -> None:
    token = csrf_token(admin)
    admin.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    early = admin.post("/admin/organizations/acme/enable", data={"csrf_token": token})
    assert early.status_code == 409 and "before enabling" in early.text
    admin.post("/admin/organizations/acme/sso", data=sso_form(token, metadata_url="https://x/md"))
    assert store.get("acme").enabled is False  # type: ignore[union-attr]

    on = admin.post("/admin/organizations/acme/enable", data={"csrf_token": token})
    assert on.status_code == 303 and on.headers["location"].endswith("?done=enabled")
    assert store.get("acme").enabled is True  # type: ignore[union-attr]
    page = admin.get("/admin/organizations/acme/")
    assert "Disable SSO" in page.text and 'data-enabled="true"' in page.text

    refused = admin.post("/admin/organizations/acme/disable", data={})
    assert refused.status_code == 403 and store.get("acme").enabled is True  # type: ignore[union-attr]
    off = admin.post("/admin/organizations/acme/disable", data={"csrf_token": token})
    assert off.status_code == 303 and store.get("acme").enabled is False  # type: ignore[union-attr]
    assert recorder.changed == ["acme", "acme", "acme"]  # save, enable, disable


def test_unknown_organizations_are_404(admin: httpx.Client) -> None:
    token = csrf_token(admin)
    for method, path in [
        ("GET", "/admin/organizations/nobody/"),
        ("POST", "/admin/organizations/nobody/sso"),
        ("POST", "/admin/organizations/nobody/enable"),
        ("GET", "/admin/organizations/Not%20a%20slug/"),
        ("GET", "/organizations/nobody/"),
    ]:
        reply = admin.request(
            method, path, data={"csrf_token": token} if method == "POST" else None
        )
        assert reply.status_code == 404, path


def test_what_the_admin_types_is_escaped(admin: httpx.Client) -> None:
    token = csrf_token(admin)
    admin.post(
        "/admin/organizations",
        data={"slug": "acme", "name": "<script>alert(1)</script>", "csrf_token": token},
    )
    for path in ("/admin/", "/admin/organizations/acme/", "/organizations/acme/", "/"):
        text = admin.get(path).text
        assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text, path


# -- behind the middleware: the whole organization story -----------------------------


@pytest.fixture
def org_app(tmp_path: Path) -> Iterator[tuple[httpx.Client, mt.OrganizationStore]]:
    app, store = mt.build(BASE, SECRET, tmp_path / "orgs.sqlite3", session={"https_only": False})
    with client_for(app, "asgi", BASE) as client:
        yield client, store


def set_up(client: httpx.Client, idp: DevIdP, slug: str = "acme", **fields: str) -> str:
    """Create an organization with `idp` (manual form) and trust its SP at the IdP."""
    token = csrf_token(client)
    assert client.post("/admin/organizations", data={"slug": slug, "csrf_token": token})
    saved = client.post(
        f"/admin/organizations/{slug}/sso", data=sso_form(token, **{**manual_idp(idp), **fields})
    )
    assert saved.status_code == 303, errors_in(saved.text) or saved.text
    metadata = client.get(f"/saml/metadata/{slug}/")
    assert metadata.status_code == 200
    assert idp.add_service_provider(metadata.text) == f"{BASE}/saml/metadata/{slug}/"
    return token


def switch(client: httpx.Client, token: str, slug: str, action: str) -> None:
    reply = client.post(f"/admin/organizations/{slug}/{action}", data={"csrf_token": token})
    assert reply.status_code == 303


def run_test_sso(
    client: httpx.Client, idp: DevIdP, slug: str, user: str = "bsimon"
) -> httpx.Response:
    """Press Test SSO and sign in at the IdP; the answer of the organization's ACS."""
    started = client.get(f"/saml/test/{slug}/", headers=HTML)
    assert started.status_code in (302, 303), started.text
    query = parse_qs(urlsplit(started.headers["location"]).query)
    info = idp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    assert info.acs_url == f"{BASE}/saml/acs/{slug}/"
    answer = idp.create_response(
        user, sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    form = {"SAMLResponse": answer}
    if "RelayState" in query:
        form["RelayState"] = query["RelayState"][0]
    return client.post(urlsplit(info.acs_url).path, data=form, headers=HTML)


def element(html: str, element_id: str) -> Any:
    """The element with this id (lxml), or a failed test showing the page."""
    found = lxml.html.fromstring(html).get_element_by_id(element_id, None)
    assert found is not None, html
    return found


def summary_result(html: str) -> str:
    """The Test SSO page's verdict: `<section id="summary" data-result="...">`."""
    return str(element(html, "summary").get("data-result"))


def items(html: str, list_id: str) -> list[str]:
    return [li.text_content().strip() for li in element(html, list_id).iter("li")]


def test_an_organization_from_creation_to_sign_in_and_disable(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, store = org_app
    token = set_up(client, devidp)

    # Test SSO while disabled: a passing diagnostics page, and no session.
    diagnostics = run_test_sso(client, devidp, "acme")
    assert diagnostics.status_code == 200
    assert summary_result(diagnostics.text) == "pass"
    assert items(diagnostics.text, "roles") == ["Admin"]
    assert f"{SESSION_COOKIE}=" not in diagnostics.headers.get("set-cookie", "")
    assert SESSION_COOKIE not in client.cookies

    # Disabled: members cannot sign in yet.
    refused = client.get("/saml/login/acme/", headers=HTML)
    assert refused.status_code == 403 and refused.headers["x-saml-error"] == "tenant_disabled"

    switch(client, token, "acme", "enable")
    signed_in = login(client, devidp, "bsimon", "/organizations/acme/")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/organizations/acme/"
    home = client.get("/organizations/acme/", headers=HTML)
    assert home.status_code == 200
    assert element(home.text, "user-name").text_content() == "B.Simon"
    assert element(home.text, "user-org").text_content() == "acme"
    assert items(home.text, "user-roles") == ["Admin"]

    # Sign out (the page's button), and in again.
    out = client.post("/saml/logout/", headers=HTML)
    assert out.status_code == 303, out.text
    assert client.get("/organizations/acme/", headers=HTML).status_code == 303
    assert login(client, devidp, "bsimon", "/organizations/acme/").status_code == 303

    # Disable: the session ends at its next request.
    switch(client, token, "acme", "disable")
    after = client.get("/organizations/acme/", headers=HTML)
    assert after.status_code in (303, 403), after.text
    assert "B.Simon" not in after.text
    assert store.get("acme").enabled is False  # type: ignore[union-attr]


def test_role_mapping_changes_apply_at_once(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, _ = org_app
    token = set_up(client, devidp)
    first = run_test_sso(client, devidp, "acme")
    assert items(first.text, "roles") == ["Admin"]
    saved = client.post(
        "/admin/organizations/acme/sso",
        data=sso_form(token, **manual_idp(devidp), role_map="admins -> Owner"),
    )
    assert saved.status_code == 303  # invalidate_tenant: no waiting for the cache
    second = run_test_sso(client, devidp, "acme")
    assert items(second.text, "roles") == ["Owner"]


def test_strict_mode_off_lets_anonymous_visitors_in(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, _ = org_app
    token = set_up(client, devidp, strict=None)
    switch(client, token, "acme", "enable")
    page = client.get("/organizations/acme/", headers=HTML)
    assert page.status_code == 200 and 'id="anonymous"' in page.text
    assert 'href="/saml/login/acme/?next=/organizations/acme/"' in page.text


def test_strict_mode_on_sends_visitors_to_sign_in(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, _ = org_app
    token = set_up(client, devidp)
    switch(client, token, "acme", "enable")
    page = client.get("/organizations/acme/", headers=HTML)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/saml/login/acme/?next=")


def test_a_session_of_one_organization_is_none_in_another(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, _ = org_app
    token = set_up(client, devidp, slug="acme")
    set_up(client, devidp, slug="globex")
    switch(client, token, "acme", "enable")
    switch(client, token, "globex", "enable")
    assert login(client, devidp, "bsimon", "/organizations/acme/").status_code == 303
    assert client.get("/organizations/acme/", headers=HTML).status_code == 200
    other = client.get("/organizations/globex/", headers=HTML)
    assert other.status_code == 303
    assert other.headers["location"].startswith("/saml/login/globex/")


def test_a_bad_certificate_is_a_400_naming_the_field(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, store = org_app
    token = csrf_token(client)
    client.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    fields = {**manual_idp(devidp), "x509cert": "-----BEGIN CERTIFICATE-----\nnot base64\n"}
    refused = client.post("/admin/organizations/acme/sso", data=sso_form(token, **fields))
    assert refused.status_code == 400
    assert "Certificate (Base64)" in errors_in(refused.text)["x509cert"]
    assert store.tenant("acme") is None


def test_a_session_timeout_is_kept_with_the_organization(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP
) -> None:
    client, store = org_app
    token = csrf_token(client)
    client.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    ok = client.post(
        "/admin/organizations/acme/sso",
        data=sso_form(token, **manual_idp(devidp), session_minutes="30"),
    )
    assert ok.status_code == 303, errors_in(ok.text)
    assert store.tenant("acme")["session"] == {"max_age_seconds": 1800}  # type: ignore[index]


# -- a metadata URL, fetched when saving ------------------------------------------------


@pytest.fixture
def served_metadata(devidp: DevIdP) -> Iterator[str]:
    """The development IdP's metadata at a loopback URL (the IdP itself stays in process)."""
    body = devidp.metadata_xml().encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status = 200 if self.path == "/metadata" else 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_metadata_url_is_checked_when_saving(
    org_app: tuple[httpx.Client, mt.OrganizationStore], devidp: DevIdP, served_metadata: str
) -> None:
    client, store = org_app
    token = csrf_token(client)
    client.post("/admin/organizations", data={"slug": "acme", "csrf_token": token})
    wrong = client.post(
        "/admin/organizations/acme/sso", data=sso_form(token, metadata_url=f"{served_metadata}/x")
    )
    assert wrong.status_code == 400
    assert "HTTP 404" in errors_in(wrong.text)["metadata_url"]
    saved = client.post(
        "/admin/organizations/acme/sso",
        data=sso_form(token, metadata_url=f"{served_metadata}/metadata"),
    )
    assert saved.status_code == 303
    assert store.tenant("acme")["idp"] == {"metadata_url": f"{served_metadata}/metadata"}  # type: ignore[index]
    devidp.add_service_provider(client.get("/saml/metadata/acme/").text)
    assert summary_result(run_test_sso(client, devidp, "acme").text) == "pass"


# -- the command ------------------------------------------------------------------------


def test_help_and_a_bad_port() -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "examples.multi_tenant", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "--idp-port" in done.stdout and "--db" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "examples.multi_tenant", "--port", "http"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert bad.returncode == 2 and "not a port number" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_default_database_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MULTI_TENANT_DB", str(tmp_path / "x.sqlite3"))
    assert mt.default_db_path() == str(tmp_path / "x.sqlite3")
    monkeypatch.delenv("MULTI_TENANT_DB")
    path = Path(mt.default_db_path())
    assert path.name == "organizations.sqlite3" and path.parent.is_dir()
