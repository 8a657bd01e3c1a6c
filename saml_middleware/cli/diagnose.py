"""`diagnose`: a captured SAML Response judged offline as the ACS would (Test SSO's
checks, the real refusal code)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable

from .common import CLIError
from .settings_source import _load, _quiet_library_logs, _tenant

# A captured Response file larger than this is not read (the ACS refuses far less).
MAX_RESPONSE_FILE_BYTES = 16 * 1024 * 1024


def _read_response(name: str) -> bytes:
    """The bytes of `--response FILE` (`-`: standard input), bounded."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_RESPONSE_FILE_BYTES + 1)
        else:
            with open(name, "rb") as fh:
                data = fh.read(MAX_RESPONSE_FILE_BYTES + 1)
    except OSError as exc:
        raise CLIError(f"--response {name}: cannot read ({exc.strerror or exc})", 2) from None
    if len(data) > MAX_RESPONSE_FILE_BYTES:
        raise CLIError(f"--response {name}: larger than {MAX_RESPONSE_FILE_BYTES} bytes", 2)
    return data


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from ..diagnostics.offline import parse_instant, render_text, response_value
    from ..engine import Engine
    from ..errors import ConfigError
    from ..stores import MemoryStore

    clock: Callable[[], float] = time.time
    if args.at is not None:
        try:
            at = parse_instant(args.at)
        except ValueError as exc:
            raise CLIError(f"--at: {exc}", 2) from None
        clock = lambda: at  # noqa: E731 - every time-dependent check judges at --at
    try:
        _, settings = _load(args.settings)
        enabled, name = True, None
        if args.tenant is not None:
            tenant = _tenant(settings, args.tenant)
            settings, enabled, name = tenant.settings, tenant.enabled, tenant.name
        elif settings.idp is None:
            raise CLIError("--tenant: the IdPs are per organization here: give --tenant SLUG")
        if args.at is not None and settings.security.crypto_backend == "xmlsec1":
            raise CLIError(
                "--at needs security.crypto_backend 'inprocess': pysaml2's xmlsec1 path "
                "judges times by this machine's clock"
            )
        # The organizations' IdPs are not this command's business; the store is not
        # touched (Engine.diagnose stores nothing), so a throwaway one stands in for it.
        settings = dataclasses.replace(settings, tenants=None, tenant_options=None)
        value = response_value(_read_response(args.response))
        with _quiet_library_logs():
            engine = Engine(settings, store=MemoryStore(), clock=clock)
            assert engine.tenant is not None
            engine.tenant.enabled = enabled
            engine.tenant.name = name or engine.tenant.name
            diagnosis = asyncio.run(engine.diagnose(value, request_id=args.request_id))
    except CLIError as exc:
        raise CLIError(str(exc), 2) from None
    except ConfigError as exc:
        raise CLIError(f"settings: {exc}", 2) from None
    if args.json:
        sys.stdout.write(json.dumps(diagnosis.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(diagnosis))
    return 0 if diagnosis.would_sign_in else 1
