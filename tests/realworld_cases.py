"""Genuine production Responses (the shared real-world corpus), for the tests.

The corpus lives beside the repository, never in it: `../shared/realworld/` from
the repository root, or `$SAML_REALWORLD_DIR`. Tests that need it skip, saying
why, when it is absent. Each case is configured as its SP was (`case_settings`):
`base_url` and `paths.acs` from the ACS URL it was issued for, `sp.entity_id`
from its Audience, the IdP from its metadata or certificate, SHA-1 allowed only
where the IdP signed with it, and a signature required on exactly the parts the
IdP signs. Every certificate has long expired or will: each Response is judged at
its own IssueInstant (`verify`; pysaml2 reads the wall clock, so its time slack
is widened).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from saml_middleware.config import load_settings
from saml_middleware.metadata import IdPMetadata
from saml_middleware.saml.rules import VerifiedLogin
from saml_middleware.saml.sp import ServiceProvider, inspect_response
from saml_middleware.saml.times import saml_instant

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("SAML_REALWORLD_DIR") or REPO.parent / "shared" / "realworld")
ABSENT = f"the real-world Responses are not at {CORPUS} (set SAML_REALWORLD_DIR)"


def cases(kind: str) -> list[Any]:
    """One pytest parameter per case folder of `kind` ("corpus" or "rejects")."""
    folder = CORPUS / kind
    if not folder.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT), id=f"{kind}-absent")]
    return [pytest.param(path, id=path.name) for path in sorted(folder.iterdir()) if path.is_dir()]


def case_dir(name: str, kind: str = "corpus") -> Path:
    if not (CORPUS / kind / name).is_dir():
        pytest.skip(ABSENT)
    return CORPUS / kind / name


def facts(case: Path) -> dict[str, Any]:
    return json.loads((case / "case.json").read_text())  # type: ignore[no-any-return]


def case_settings(
    folder: Path,
    *,
    secret_key: str = "realworld-corpus-secret-0123456789",
    backend: str = "inprocess",
    **security: Any,
) -> dict[str, Any]:
    """The settings of the SP the Response was issued for (see the module docstring)."""
    case = facts(folder)
    acs = urlsplit(case["acs_url"])
    path = (acs.path or "/") + (f"?{acs.query}" if acs.query else "")
    idp: dict[str, Any]
    if case.get("idp_metadata_file"):
        idp = {"metadata_xml": (folder / case["idp_metadata_file"]).read_text()}
    else:
        idp = {
            "entity_id": case["issuer"],
            # Not used by the ACS (no AuthnRequest is sent); manual settings require one.
            "sso_url": case.get("idp_sso_url") or "https://idp.invalid/sso",
            "x509cert": (folder / "idp-cert.pem").read_text(),
        }
    sp: dict[str, Any] = {"entity_id": case["audience"]}
    if case.get("sp_key_file"):
        sp["key_pem"] = (folder / case["sp_key_file"]).read_text()
        sp["cert_pem"] = (folder / case["sp_cert_file"]).read_text()
    return {
        "base_url": f"{acs.scheme}://{acs.netloc}",
        "secret_key": secret_key,
        "paths": {"acs": path},
        "sp": sp,
        "idp": idp,
        "security": {
            "crypto_backend": backend,
            "reject_sha1": not case["uses_sha1"],
            "want_assertions_signed": "assertion" in case["signed_parts"],
            "want_response_signed": "response" in case["signed_parts"],
            **security,
        },
    }


def service_provider(case: Path, backend: str, **security: Any) -> ServiceProvider:
    """A ServiceProvider for `case` (its IdP, audience, ACS URL, SP key)."""
    settings = load_settings(case_settings(case, backend=backend, **security))
    assert settings.idp is not None
    sp = ServiceProvider(settings, IdPMetadata(settings.idp).load())
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
