"""The demo in a real browser: `python -m saml_middleware demo` driven by Chromium.

Uses Playwright's Python API with Debian's chromium (/usr/bin/chromium); the
module is skipped when either is missing. The demo runs as a subprocess on
127.0.0.1 (a free port) and is stopped at the end of the module. The browser
and page fixtures are in conftest.py, the server runner in servers.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.servers import ARTIFACTS, browser_available, serve_command

if (_why := browser_available()) is not None:  # pragma: no cover - depends on the machine
    pytest.skip(_why, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory) -> Iterator[str]:
    """The demo served by `python -m saml_middleware demo --port 0`; its base URL."""
    log_path = tmp_path_factory.mktemp("demo") / "server.log"
    argv = ["-m", "saml_middleware", "demo", "--host", "127.0.0.1", "--port", "0"]
    with serve_command(argv, log_path) as (base, idp):
        assert idp == f"{base}/idp"
        yield base


def expect_signed_in_as_b_simon(page: Page, base: str) -> None:
    expect(page).to_have_url(f"{base}/profile")
    expect(page.locator("h1")).to_have_text("B.Simon")
    user = page.locator("table#user")
    expect(user).to_contain_text("B.Simon@contoso.com")
    expect(user.locator("tr", has_text="Roles")).to_contain_text("Admin")


def test_sp_initiated_login_profile_and_sign_out(page: Page, demo_url: str) -> None:
    page.goto(f"{demo_url}/profile")
    # /profile -> /saml/login/ -> the IdP's sign-in page
    expect(page).to_have_url(re.compile(re.escape(f"{demo_url}/idp/sso/redirect?") + ".*"))
    button = page.get_by_role("button", name="Sign in as B.Simon")
    expect(button).to_be_visible()
    button.click()  # -> auto-posted SAMLResponse -> /saml/acs/ -> /profile

    expect_signed_in_as_b_simon(page, demo_url)
    expect(page.locator("table#attributes")).to_contain_text(
        "http://schemas.microsoft.com/identity/claims/objectidentifier"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-profile.png"), full_page=True)

    admin = page.goto(f"{demo_url}/admin")
    assert admin is not None and admin.status == 200
    expect(page.locator("h1")).to_have_text("Admin")

    page.goto(f"{demo_url}/profile")
    page.get_by_role("button", name="Sign out").first.click()  # a POST form
    expect(page).to_have_url(f"{demo_url}/")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()

    page.goto(f"{demo_url}/profile")  # signed out: sign-in is asked for again
    expect(page).to_have_url(re.compile(re.escape(f"{demo_url}/idp/sso/redirect?") + ".*"))
    expect(page.get_by_role("button", name="Sign in as B.Simon")).to_be_visible()


def test_idp_initiated_from_my_apps(page: Page, demo_url: str) -> None:
    page.goto(f"{demo_url}/idp/")
    expect(page.locator("h1")).to_have_text("My Apps")
    tile = page.locator("form", has_text=f"{demo_url}/saml/metadata/")
    tile.get_by_label("User").select_option("bsimon")
    tile.get_by_label("RelayState").fill("/profile")
    tile.get_by_role("button", name="Open").click()

    expect_signed_in_as_b_simon(page, demo_url)


def test_member_gets_403_on_admin(page: Page, demo_url: str) -> None:
    page.goto(f"{demo_url}/idp/")
    tile = page.locator("form", has_text=f"{demo_url}/saml/metadata/")
    tile.get_by_label("User").select_option("ajones")
    tile.get_by_role("button", name="Open").click()
    expect(page).to_have_url(f"{demo_url}/")
    expect(page.locator("h1")).to_have_text("Hello, A.Jones")

    admin = page.goto(f"{demo_url}/admin")
    assert admin is not None and admin.status == 403
