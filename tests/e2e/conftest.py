"""Browser fixtures: one Chromium (Debian's, never a download) per module, a page per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.servers import CHROMIUM, CHROMIUM_ARGS, STEP_MS


# Module scope, not session: while Playwright's sync API is running, the main
# thread counts as inside an event loop, which the async tests after it would trip on.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in a fresh context (no cookies), with bounded waits."""
    context = browser.new_context()
    context.set_default_timeout(STEP_MS)
    context.set_default_navigation_timeout(STEP_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
