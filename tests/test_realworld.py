"""Genuine Responses from production IdPs: `diagnose` accepts the good ones and refuses
the broken ones for the reason they are broken; the IdP-initiated ones sign in
through the ASGI middleware.

The Responses are test data kept beside the repository, never in it:
`../shared/realworld/` from the repository root (or `$SAML_REALWORLD_DIR`), one
folder per case under `corpus/` (to accept) and `rejects/` (to refuse), each
with the exact `response.xml`, the IdP's certificate or metadata, sometimes the
SP's decryption key, and `case.json` with the facts: the Audience, ACS URL,
InResponseTo and IssueInstant the Response was made for. The tests skip, saying
why, where the folder is absent.

Each case is configured as its SP was: `base_url` and `paths.acs` from the ACS
URL it was issued for, `sp.entity_id` from its Audience, the IdP from its
metadata or certificate, SHA-1 allowed only where the IdP signed with it, and a
signature required on exactly the parts (assertion, Response) the IdP signs. Every
certificate here has long expired or will: each Response is judged at its own
IssueInstant (`diagnose --at`; time-machine for the ASGI app).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import time_machine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from saml_middleware import SAMLMiddleware
from saml_middleware.cli import main
from tests.realworld_cases import case_settings, cases, facts

SECRET = "realworld-test-secret-0123456789abcdef"

# Why a `rejects/` case is refused, as our refusal code, where case.json gives its reason
# only in words (elsewhere its `expect_codes` lists the codes a correct SP may use).
REJECT_CODES = {
    # Pretty-printed and edited after signing: the assertion signature fails.
    "entra-aspnetsaml-2018-edited": "invalid_signature",
    # The wrapping attack adds a second assertion: refused before any signature is read.
    "okta-auth0-2013-wrapping-attack": "wrong_number_of_assertions",
    # The Response was changed after Okta signed it.
    "okta-ssoready-2024-broken-response-signature": "invalid_signature",
}


def diagnose(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    """`saml-middleware diagnose --json` at the Response's IssueInstant, for its request."""
    case = facts(folder)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(case_settings(folder, secret_key=SECRET)))
    args = ["diagnose", "--settings", str(settings), "--response", str(folder / "response.xml")]
    args += ["--at", case["response_issue_instant"] or case["issue_instant"], "--json"]
    if case["in_response_to"]:
        args += ["--request-id", case["in_response_to"]]
    status = main(args)
    out, err = capsys.readouterr()
    assert status in (0, 1), err
    return status, json.loads(out)


@pytest.mark.parametrize("folder", cases("corpus"))
def test_genuine_response_passes_diagnose(folder: Path, tmp_path, capsys):
    case = facts(folder)
    status, result = diagnose(folder, tmp_path, capsys)
    assert (status, result["refusal"]) == (0, None), result["refusal"]
    user = result["user"]
    assert user["issuer"] == case["issuer"]
    if case["name_id"] is not None:
        assert user["name_id"] == case["name_id"]
    assert set(case["attributes"]) <= set(user["attributes"])
    failed = [c["name"] for c in result["checks"] if c["result"] == "fail"]
    assert failed == []


@pytest.mark.parametrize("folder", cases("rejects"))
def test_broken_response_fails_diagnose_for_its_reason(folder: Path, tmp_path, capsys):
    case = facts(folder)
    codes = case.get("expect_codes") or [REJECT_CODES.get(folder.name)]
    assert codes != [None], f"map the reason of {folder.name}: {case['reject_reason']}"
    status, result = diagnose(folder, tmp_path, capsys)
    assert status == 1 and result["would_sign_in"] is False
    assert result["refusal"]["code"] in codes, (case["reject_reason"], result["refusal"])


async def whoami(request: Request) -> JSONResponse:
    user = request.user
    return JSONResponse({"name_id": user.name_id, "issuer": user.issuer})


IDP_INITIATED = [
    case
    for case in cases("corpus")
    if case.values[0] is None or facts(case.values[0])["in_response_to"] is None
]


@pytest.mark.anyio
@pytest.mark.parametrize("folder", IDP_INITIATED)
async def test_idp_initiated_response_signs_in_through_the_asgi_app(folder: Path):
    """The IdP posts the Response to the exact ACS URL; the browser then has a session."""
    case = facts(folder)
    issued = dt.datetime.fromisoformat(case["issue_instant"].replace("Z", "+00:00"))
    acs = urlsplit(case["acs_url"])
    origin = f"{acs.scheme}://{acs.netloc}"
    form = {"SAMLResponse": base64.b64encode((folder / "response.xml").read_bytes()).decode()}
    with time_machine.travel(issued + dt.timedelta(seconds=5), tick=False):
        app = SAMLMiddleware(
            Starlette(routes=[Route("/whoami", whoami)]), settings=case_settings(folder)
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=origin
        ) as client:
            reply = await client.post(
                case["acs_url"],
                content=urlencode(form),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert reply.status_code == 303, (reply.status_code, reply.headers.get("x-saml-error"))
            cookie = reply.headers["set-cookie"].split(";", 1)[0]
            client.cookies.clear()  # only the cookie as the browser would send it
            page = await client.get("/whoami", headers={"cookie": cookie, "accept": "text/html"})
    assert page.status_code == 200
    assert page.json() == {"name_id": case["name_id"], "issuer": case["issuer"]}
