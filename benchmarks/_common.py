"""Shared by the benchmarks: the timing method, the development IdP and the SP around it.

The method: every row runs one batch per round, rows are shuffled inside each
round, figures are medians over rounds, and a ratio is the median of the
per-round ratios (both numbers of a ratio come from the same round, so a noisy
moment on a shared machine moves them together).
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from a checkout, not installed
    sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

logging.disable(logging.CRITICAL)  # refusals are logged on purpose; logging is not measured

from saml_middleware.devidp import DevIdP  # noqa: E402
from saml_middleware.engine import HttpRequest  # noqa: E402

SP_BASE = "https://app.example.test"
IDP_BASE = "https://idp.example.test/idp"
SECRET = "benchmark-secret-key-0123456789abcdef"
ACS_PATH = "/saml/acs/"


def settings(idp: DevIdP, **security: Any) -> dict[str, Any]:
    """An Entra-like SP: assertions signed, unsolicited (IdP-initiated) logins allowed."""
    return {
        "base_url": SP_BASE,
        "secret_key": SECRET,
        "idp": {"metadata_xml": idp.metadata_xml()},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
        "security": {"allow_idp_initiated": True, **security},
    }


def service_provider(engine: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """The engine's `saml.sp.ServiceProvider` for its top-level IdP."""
    # `tenant` now; `realm` and the engine itself in older checkouts (for before/after runs).
    source = getattr(engine, "tenant", None) or getattr(engine, "realm", None) or engine
    return loop.run_until_complete(source.service_provider())


def new_idp() -> DevIdP:
    return DevIdP(IDP_BASE)


def acs_form(saml_response: str) -> bytes:
    """The body of the IdP's auto-posted form (built by the browser: never timed)."""
    return urlencode({"SAMLResponse": saml_response}).encode()


def acs_request(body: bytes) -> HttpRequest:
    """A POST of `body` (see `acs_form`) to the ACS, as the engine sees it."""

    async def read_body(limit: int) -> bytes:
        return body

    return HttpRequest(
        method="POST",
        path=ACS_PATH,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "content-length": str(len(body)),
            "host": "app.example.test",
        },
        read_body=read_body,
        scheme="https",
    )


@dataclass
class Row:
    """One line of a table: `run()` does one batch and returns how many operations it did."""

    key: str
    label: str
    run: Callable[[], int]
    seconds: list[float] = field(default_factory=list)  # per operation, one per round


def measure(rows: list[Row], rounds: int, seed: int = 1) -> None:
    """Run every row once per round, in a shuffled order; collect seconds per operation."""
    order = list(rows)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for row in order:
            gc.collect()
            start = time.perf_counter()
            count = row.run()
            row.seconds.append((time.perf_counter() - start) / count)


def ratio(row: Row, reference: Row) -> float:
    """Median over rounds of row/reference (time per operation)."""
    return statistics.median(a / b for a, b in zip(row.seconds, reference.seconds, strict=True))


def report(
    title: str,
    rows: list[Row],
    reference: Row,
    *,
    unit: str,
    extra: list[tuple[str, Row, Row]] = (),  # type: ignore[assignment]
) -> None:
    """Print a Markdown table: median us per operation, ops/s, ratio to the reference."""
    print(f"\n### {title}\n")
    print(f"| row | us / {unit} | {unit}s/s | x ref ({reference.key}) |")
    print("|---|---:|---:|---:|")
    for row in rows:
        median = statistics.median(row.seconds)
        print(
            f"| {row.key}  {row.label} | {median * 1e6:,.1f} | {1 / median:,.0f} "
            f"| {ratio(row, reference):.2f} |"
        )
    for text, slow, fast in extra:
        print(f"\n{text}: {ratio(slow, fast):.1f}x (median of per-round ratios)")


def environment() -> str:
    import cryptography
    import lxml.etree
    import saml2
    import starlette
    import xmlsec

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {load:.2f}; pysaml2 {saml2.__version__}; xmlsec {xmlsec.__version__} "
        f"(libxmlsec1 {'.'.join(map(str, xmlsec.get_libxmlsec_version()))}); "
        f"lxml {lxml.etree.__version__} (libxml2 "
        f"{'.'.join(map(str, lxml.etree.LIBXML_VERSION))}); cryptography "
        f"{cryptography.__version__}; starlette {starlette.__version__}"
    )


def run_async(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def rss_bytes() -> int:
    """This process's resident set size now (Linux), not the peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
