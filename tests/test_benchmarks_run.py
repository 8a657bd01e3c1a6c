"""The benchmark scripts still run against the current code (their figures are read by
people, never asserted: this only catches a script the code moved away from)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "args", "shows"),
    [
        ("request_overhead.py", ["--quick"], "SAMLMiddleware, valid session cookie"),
        ("acs.py", ["--rounds", "1", "--responses", "2"], "Engine.handle ACS"),
        ("memory.py", ["--logins", "200"], "RSS growth"),
    ],
)
def test_benchmark_script_runs(script: str, args: list[str], shows: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shows in done.stdout
