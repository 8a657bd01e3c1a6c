"""The organizations admin example in a real browser: the "Done when" of the Organizations issue.

`python -m examples.multi_tenant --port 0 --idp-port 0 --db <tmp>` serves the
app and the development IdP on two loopback ports. Chromium does what a person
does: create the organization "acme", paste the development IdP's metadata URL
the command printed, press Test SSO and sign in as B.Simon (the diagnostics
page passes and shows the mapped role), enable SSO, sign in at the
organization's page, then disable SSO and reload: the session has ended.
Screenshots: test-artifacts/multi-tenant-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.servers import ARTIFACTS, browser_available, serve_printed

if (_why := browser_available()) is not None:  # pragma: no cover - depends on the machine
    pytest.skip(_why, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

ADMIN_LINE = re.compile(r"open (http://127\.0\.0\.1:\d+)/admin/ and create an organization")
METADATA_LINE = re.compile(r"metadata URL to paste: (http://127\.0\.0\.1:\d+/metadata)\b")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: Any) -> Iterator[dict[str, str]]:
    """The example and its development IdP: the app URL and the IdP metadata URL."""
    folder = tmp_path_factory.mktemp("multi_tenant")
    argv = [
        "-m",
        "examples.multi_tenant",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--idp-port",
        "0",
        "--db",
        str(folder / "organizations.sqlite3"),
    ]
    patterns = [ADMIN_LINE, METADATA_LINE]
    with serve_printed(argv, folder / "server.log", patterns, ["{0}/admin/", "{1}"]) as found:
        yield {"app": found[0], "metadata_url": found[1], "idp": found[1].rsplit("/", 1)[0]}


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"multi-tenant-{name}.png"), full_page=True)


def sign_in_at_the_idp(page: Page, idp: str) -> None:
    expect(page).to_have_url(re.compile(re.escape(f"{idp}/sso/redirect?") + ".*"))
    page.get_by_role("button", name="Sign in as B.Simon").click()


def test_create_test_enable_sign_in_disable(page: Page, servers: dict[str, str]) -> None:
    app, idp = servers["app"], servers["idp"]
    admin_page = f"{app}/admin/organizations/acme/"

    # Create the SSO configuration from an SSO name.
    page.goto(f"{app}/admin/")
    expect(page.locator("#demo-warning")).to_contain_text("no login")
    page.get_by_label("SSO name").fill("acme")
    page.get_by_label("Organization name (optional)").fill("Acme, Inc.")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(admin_page)
    expect(page.locator('#entra-values tr[data-value="entity_id"] code')).to_have_text(
        f"{app}/saml/metadata/acme/"
    )
    expect(page.locator('#entra-values tr[data-value="acs_url"] code')).to_have_text(
        f"{app}/saml/acs/acme/"
    )

    # Paste the development IdP's metadata URL; save.
    page.get_by_label("App Federation Metadata URL").fill(servers["metadata_url"])
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#notice")).to_have_text("Saved.")
    expect(page.locator("#sso-status")).to_contain_text("disabled")
    shot(page, "admin")

    # Test SSO: the IdP has never heard of this organization's SP, and trusts it anyway.
    page.get_by_role("link", name="Test SSO").click()
    sign_in_at_the_idp(page, idp)
    expect(page).to_have_url(f"{app}/saml/acs/acme/")
    expect(page.locator("section#summary")).to_have_attribute("data-result", "pass")
    expect(page.locator("ul#roles")).to_contain_text("Admin")
    expect(page.locator("table#attributes")).to_contain_text("B.Simon@contoso.com")
    for check in ("issuer", "signature", "audience", "destination"):
        expect(page.locator(f'#checks tr[data-check="{check}"]')).to_have_attribute(
            "data-result", "pass"
        )
    shot(page, "test-sso")

    # Test SSO started no session (and SSO is still off: strict mode refuses the page).
    reply = page.goto(f"{app}/organizations/acme/")
    assert reply is not None and reply.status == 403
    assert reply.headers.get("x-saml-error") == "tenant_disabled"
    expect(page.locator("#user-name")).to_have_count(0)

    # Enable SSO, then sign in from the organization's page.
    page.goto(admin_page)
    page.get_by_role("button", name="Enable SSO").click()
    expect(page.locator("#sso-status")).to_contain_text("enabled")
    page.goto(f"{app}/organizations/acme/")
    sign_in_at_the_idp(page, idp)
    expect(page).to_have_url(f"{app}/organizations/acme/")
    expect(page.locator("#user-name")).to_have_text("B.Simon")
    expect(page.locator("#user-org")).to_have_text("acme")
    expect(page.locator("ul#user-roles")).to_contain_text("Admin")
    shot(page, "signed-in")

    # Disable SSO: the session ends at its next request.
    page.goto(admin_page)
    page.get_by_role("button", name="Disable SSO").click()
    expect(page.locator("#sso-status")).to_contain_text("disabled")
    reply = page.goto(f"{app}/organizations/acme/")
    assert reply is not None
    expect(page.locator("#user-name")).to_have_count(0)
    assert reply.status == 403, (reply.status, page.url)
    assert reply.headers.get("x-saml-error") == "tenant_disabled"
    shot(page, "disabled")


def test_a_bad_sso_name_is_explained(page: Page, servers: dict[str, str]) -> None:
    page.goto(f"{servers['app']}/admin/")
    page.get_by_label("SSO name").fill("Acme Inc")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#error-slug")).to_contain_text("lowercase letters (a-z)")
    expect(page.get_by_label("SSO name")).to_have_value("Acme Inc")
