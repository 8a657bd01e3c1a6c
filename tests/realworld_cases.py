"""Genuine production Responses (the shared real-world corpus), for the protocol unit tests.

The corpus lives outside the repository: `SAML_REALWORLD_DIR`, else the first
`shared/realworld` beside the checkout or one of its parents. Tests that need it
skip, saying why, when it is absent. A case's exact ACS URL is rarely this
SP's, so `service_provider` builds the ServiceProvider for the case's own ACS URL
and audience; pysaml2 reads the wall clock, so its time slack is widened and the
shared checks run at the case's own IssueInstant (`verify`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from saml_middleware.assertions import saml_instant
from saml_middleware.config import Settings, load_settings
from saml_middleware.metadata import manual_metadata_xml, parse_idp_metadata
from saml_middleware.protocol import ServiceProvider, VerifiedLogin, inspect_response


def corpus_dir() -> Path | None:
    configured = os.environ.get("SAML_REALWORLD_DIR")
    if configured:
        return Path(configured) if Path(configured).is_dir() else None
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "realworld"
        if candidate.is_dir():
            return candidate
    return None


def case_dir(name: str, kind: str = "corpus") -> Path:
    root = corpus_dir()
    if root is None or not (root / kind / name).is_dir():
        pytest.skip(f"the real-world case {kind}/{name} is not here (set SAML_REALWORLD_DIR)")
    return root / kind / name


def facts(case: Path) -> dict[str, Any]:
    return json.loads((case / "case.json").read_text())  # type: ignore[no-any-return]


def _settings_at(acs_url: str, settings: Settings) -> Settings:
    """`settings` whose `acs_url` is the case's own (the class keeps every other field)."""

    class CaseSettings(Settings):
        @property
        def acs_url(self) -> str:
            return acs_url

    object.__setattr__(settings, "__class__", CaseSettings)
    return settings


def service_provider(case: Path, backend: str, **security: Any) -> ServiceProvider:
    """A ServiceProvider for `case` (its IdP certificate, audience, ACS URL, SP key)."""
    known = facts(case)
    metadata = manual_metadata_xml(
        known["issuer"], "https://idp.invalid/sso", (case / "idp-cert.pem").read_text()
    )
    raw: dict[str, Any] = {
        "base_url": "https://sp.invalid",
        "secret_key": "realworld-corpus-secret-0123456789",
        "sp": {"entity_id": known["audience"]},
        "idp": {"metadata_xml": metadata},
        "security": {
            "crypto_backend": backend,
            "reject_sha1": not known["uses_sha1"],
            "want_assertions_signed": "assertion" in known["signed_parts"],
            "want_response_signed": "response" in known["signed_parts"],
            **security,
        },
    }
    if (case / "sp-key.pem").is_file():
        raw["sp"]["key_pem"] = (case / "sp-key.pem").read_text()
        raw["sp"]["cert_pem"] = (case / "sp-cert.pem").read_text()
    settings = _settings_at(known["acs_url"], load_settings(raw))
    sp = ServiceProvider(settings, parse_idp_metadata(metadata))
    sp.client.config.accepted_time_diff = 10**10  # pysaml2's clock is now, not the case's
    return sp


def verify(sp: ServiceProvider, case: Path, *, native: bool | None = None) -> VerifiedLogin:
    """The case's Response through `sp` at its own IssueInstant; `native=False`: pysaml2."""
    data = (case / "response.xml").read_bytes()
    now = (saml_instant(facts(case)["issue_instant"]) or 0) + 1
    saved = sp._native
    if native is False:
        sp._native = None
    try:
        envelope = inspect_response(data, reject_sha1=sp.settings.security.reject_sha1)
        return sp.verify_response(envelope, outstanding_id=envelope.in_response_to, now=now)
    finally:
        sp._native = saved
