"""Browser tests' shared parts: where Chromium is, how it is launched, served commands.

Never a downloaded browser: Playwright launches /usr/bin/chromium. Servers are
the demo's and the examples' own commands, run as subprocesses on 127.0.0.1
with free ports (`--port 0`), read for the URLs they print, and stopped at the
end. Every wait is bounded.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import stop_process

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
START_SECONDS = 60
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
SIGN_IN_LINE = re.compile(r"open (http://127\.0\.0\.1:\d+)/profile and sign in as B\.Simon")
IDP_LINE = re.compile(r"IdP-initiated sign-in: (http://127\.0\.0\.1:\d+(?:/idp)?)/")


def browser_available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@contextmanager
def serve_printed(
    argv: list[str], log_path: Path, patterns: list[re.Pattern[str]], ready: list[str]
) -> Iterator[list[str]]:
    """Run a command on free ports; yield the first group of each pattern once it answers.

    The command's first `len(patterns)` stdout lines must match `patterns`, in
    order; then each of `ready` (formatted with the groups: `"{0}/"`) must answer
    200 before the servers are used.
    """
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)

        threading.Thread(target=drain, daemon=True).start()
        printed = []
        for _ in patterns:
            try:
                printed.append(lines.get(timeout=START_SECONDS))
            except queue.Empty:
                log_text = log_path.read_text()
                pytest.fail(f"{argv} printed too little in {START_SECONDS}s: {log_text}")
        found = [pattern.search(line) for pattern, line in zip(patterns, printed, strict=True)]
        assert all(found), printed
        groups = [match.group(1) for match in found if match]
        deadline = time.monotonic() + START_SECONDS
        with httpx.Client(timeout=5) as client:
            for url in (template.format(*groups) for template in ready):
                while True:
                    try:
                        if client.get(url).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{argv}: {url} did not answer: {log_path.read_text()}")
                    time.sleep(0.1)
        yield groups
    finally:
        stop_process(process, STOP_SECONDS)
        log.close()


@contextmanager
def serve_command(argv: list[str], log_path: Path) -> Iterator[tuple[str, str]]:
    """Run a demo/example command on free ports; yield (app URL, IdP URL) once it answers."""
    with serve_printed(argv, log_path, [SIGN_IN_LINE, IDP_LINE], ["{0}/", "{1}/"]) as urls:
        yield urls[0], urls[1]


def sign_out(page: Any) -> None:
    """Press the page's "Sign out" button: a form POSTing to the middleware's logout."""
    page.get_by_role("button", name="Sign out").first.click()
