"""The demo in a real browser: `python -m saml_middleware demo` driven by Chromium.

Uses Playwright's Python API with Debian's chromium (/usr/bin/chromium); the
module is skipped when either is missing. The demo runs as a subprocess on
127.0.0.1 (a free port) and is stopped at the end of the module.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):  # pragma: no cover
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
START_SECONDS = 30
STOP_SECONDS = 10
STEP_MS = 15_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory) -> Iterator[str]:
    """The demo served by `python -m saml_middleware demo --port 0`; its base URL."""
    log_path = tmp_path_factory.mktemp("demo") / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "saml_middleware", "demo", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)

        threading.Thread(target=drain, daemon=True).start()
        try:
            first = lines.get(timeout=START_SECONDS)
        except queue.Empty:
            pytest.fail(f"the demo printed nothing in {START_SECONDS}s: {log_path.read_text()}")
        found = re.search(r"open (http://127\.0\.0\.1:\d+)/profile and sign in as B\.Simon", first)
        assert found, first
        base = found.group(1)
        deadline = time.monotonic() + START_SECONDS
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(base + "/").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the demo did not answer: {log_path.read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(STEP_MS)
    context.set_default_navigation_timeout(STEP_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


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
    page.get_by_role("link", name="Sign out").first.click()
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
