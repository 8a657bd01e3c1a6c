"""The Flask, FastAPI and Django examples in a real browser, started with their own commands.

Each example runs as `python -m examples.<name> --port 0 --idp-port 0` (the
command in its docstring): the app and the development IdP on two loopback
ports. Chromium signs in SP-initiated (from a protected page) and
IdP-initiated (from the IdP's My Apps tile), signs out, and a member is
refused the admin page. The landing page after sign-in is saved as
test-artifacts/<name>-landing.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.servers import ARTIFACTS, browser_available, serve_command, sign_out

if (_why := browser_available()) is not None:  # pragma: no cover - depends on the machine
    pytest.skip(_why, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

EXAMPLES = ["flask_app", "fastapi_app", "django_project"]


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[dict[str, str]]:
    """One example served by its own command; its name, app URL and IdP URL."""
    name = str(request.param)
    if name == "django_project":
        pytest.importorskip("django")
    log_path = tmp_path_factory.mktemp(name) / "server.log"
    argv = ["-m", f"examples.{name}", "--host", "127.0.0.1", "--port", "0", "--idp-port", "0"]
    with serve_command(argv, log_path) as (app, idp):
        yield {"name": name, "app": app, "idp": idp}


def sign_in_page(idp: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"{idp}/sso/redirect?") + ".*")


def expect_signed_in_as_b_simon(page: Page, app: str) -> None:
    expect(page).to_have_url(f"{app}/profile")
    expect(page.locator("h1")).to_have_text("B.Simon")
    user = page.locator("table#user")
    expect(user).to_contain_text("B.Simon@contoso.com")
    expect(user.locator("tr", has_text="Roles")).to_contain_text("Admin")


def open_tile(page: Page, example: dict[str, str], user: str, relay_state: str = "") -> None:
    """IdP-initiated: pick `user` on the app's tile in the IdP's My Apps page and open it."""
    page.goto(f"{example['idp']}/")
    expect(page.locator("h1")).to_have_text("My Apps")
    tile = page.locator("form", has_text=f"{example['app']}/saml/metadata/")
    tile.get_by_label("User").select_option(user)
    if relay_state:
        tile.get_by_label("RelayState").fill(relay_state)
    tile.get_by_role("button", name="Open").click()


def test_sp_initiated_login_admin_and_sign_out(page: Page, example: dict[str, str]) -> None:
    app, idp = example["app"], example["idp"]
    page.goto(f"{app}/")
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(sign_in_page(idp))
    page.get_by_role("button", name="Sign in as B.Simon").click()  # -> ACS -> /profile

    expect_signed_in_as_b_simon(page, app)
    expect(page.locator("table#attributes")).to_contain_text(
        "http://schemas.microsoft.com/identity/claims/objectidentifier"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{example['name']}-landing.png"), full_page=True)

    admin = page.goto(f"{app}/admin")
    assert admin is not None and admin.status == 200
    expect(page.locator("h1")).to_have_text("Admin")

    page.goto(f"{app}/profile")
    sign_out(page)  # a POST form
    expect(page).to_have_url(f"{app}/")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()

    page.goto(f"{app}/profile")  # signed out: the IdP is asked again
    expect(page).to_have_url(sign_in_page(idp))


def test_idp_initiated_from_my_apps(page: Page, example: dict[str, str]) -> None:
    open_tile(page, example, "bsimon", "/profile")
    expect_signed_in_as_b_simon(page, example["app"])


def test_member_is_refused_the_admin_page(page: Page, example: dict[str, str]) -> None:
    open_tile(page, example, "ajones")
    expect(page).to_have_url(f"{example['app']}/")
    expect(page.locator("h1")).to_have_text("Hello, A.Jones")
    admin = page.goto(f"{example['app']}/admin")
    assert admin is not None and admin.status == 403
