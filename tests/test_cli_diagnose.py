"""`saml-middleware diagnose`: the ACS's verdict on a captured Response, offline.

Responses come from the development IdP (tests/conftest.py), minted at test
time; a past instant is reached with time-machine. The command is run through
`cli.main`, as a user runs it; `Engine.diagnose` directly where a store spy
must watch it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import time_machine
from lxml import etree

from saml_middleware.cli import main
from saml_middleware.devidp import DevIdP
from saml_middleware.diagnostics.offline import parse_instant, response_value
from saml_middleware.engine import Engine
from saml_middleware.metadata import MetadataError, parse_idp_metadata
from saml_middleware.stores import MemoryStore
from tests import forge
from tests.helpers import Browser, settings_for

pytestmark = pytest.mark.anyio

BSIMON = "B.Simon@contoso.com"
ACS_URL = "https://app.example.test/saml/acs/"
SP_ENTITY = "https://app.example.test/saml/metadata/"
INPROCESS = "inprocess"  # --at needs it (pysaml2's xmlsec1 path reads the machine's clock)


@pytest.fixture
def sp(devidp: DevIdP, tmp_path: Path) -> Callable[..., Path]:
    """`sp(**overrides)`: a settings file trusting the development IdP (which trusts it).

    The IdP trusts the default SP from the start, so `mint` works before `sp()`.
    """
    devidp.add_service_provider(Engine(settings_for(devidp)).sp_metadata_xml())

    def make(**overrides: Any) -> Path:
        settings = settings_for(devidp, **overrides)
        devidp.add_service_provider(Engine(settings).sp_metadata_xml())
        path = tmp_path / "settings.json"
        path.write_text(json.dumps(settings))
        return path

    return make


def mint(devidp: DevIdP, in_response_to: str | None = None, **options: Any) -> str:
    """A genuine Response for bsimon, Base64 as the IdP's form posts it."""
    return devidp.create_response(
        "bsimon",
        sp_entity_id=SP_ENTITY,
        in_response_to=in_response_to,
        **options,
    )


def saved(tmp_path: Path, content: str | bytes, name: str = "response.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main(["diagnose", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict[str, Any]]:
    status, out, err = run(capsys, *args, "--json")
    assert err == "", err
    return status, json.loads(out)


def check(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["name"] == name)


# -- the verdict ---------------------------------------------------------------------------


def test_genuine_response_would_sign_in(sp, devidp, tmp_path, capsys):
    settings = sp()
    status, result = run_json(
        capsys, "--settings", settings, "--response", saved(tmp_path, mint(devidp))
    )
    assert status == 0
    assert result["would_sign_in"] is True and result["refusal"] is None
    assert result["user"]["name_id"] == BSIMON and result["user"]["roles"] == ["Admin"]
    assert {c["result"] for c in result["checks"]} <= {"pass", "warn"}
    destination = check(result, "destination")
    assert destination == {**destination, "expected": ACS_URL, "received": ACS_URL}
    for row in result["checks"]:
        assert set(row) >= {"name", "result", "expected", "received"}


def test_refusal_shows_the_real_code_and_reason(sp, devidp, tmp_path, capsys):
    """Offline there is no oracle to avoid: a broken signature says so, with its real code."""
    root = forge.decode(mint(devidp))
    forge.set_name_id(root, "admin@contoso.com")  # after signing
    status, result = run_json(
        capsys, "--settings", sp(), "--response", saved(tmp_path, forge.encode(root))
    )
    assert status == 1
    assert result["would_sign_in"] is False and result["user"] is None
    assert result["refusal"]["code"] == "invalid_signature"
    assert result["refusal"]["reason"] == "The SAML response signature is not valid."
    assert check(result, "signature")["result"] == "fail"


def test_wrong_audience_is_refused_with_both_values(sp, devidp, tmp_path, capsys):
    settings = sp(sp__entity_id="https://another.example.test/sp")
    devidp_response = mint(devidp)  # made for the usual entity ID
    status, result = run_json(
        capsys, "--settings", settings, "--response", saved(tmp_path, devidp_response)
    )
    assert (status, result["refusal"]["code"]) == (1, "wrong_audience")
    audience = check(result, "audience")
    assert audience["result"] == "fail"
    assert audience["expected"] == "https://another.example.test/sp"
    assert audience["received"] == "https://app.example.test/saml/metadata/"


def test_required_role_refusal_shows_the_mapped_user(sp, devidp, tmp_path, capsys):
    settings = sp(roles__map={"nobody": ["Admin"]}, roles__require_mapped_role=True)
    status, result = run_json(
        capsys, "--settings", settings, "--response", saved(tmp_path, mint(devidp))
    )
    assert (status, result["refusal"]["code"]) == (1, "no_mapped_role")
    assert result["user"]["name_id"] == BSIMON and result["user"]["roles"] == []
    assert check(result, "required_role")["result"] == "fail"


def test_readable_table_and_verdict(sp, devidp, tmp_path, capsys):
    """An app that moved (another base_url, the same entity ID): the Reply URL row says so."""
    response = saved(tmp_path, mint(devidp, acs_url=ACS_URL))
    moved = sp(base_url="https://moved.example.test", sp__entity_id=SP_ENTITY)
    status, out, err = run(capsys, "--settings", moved, "--response", response)
    assert (status, err) == (1, "")
    lines = out.splitlines()
    assert lines[2].split() == ["Check", "Result", "Expected", "Received"]
    row = next(line for line in lines if line.startswith("Destination (Reply URL)"))
    assert row.split()[3:] == ["FAIL", "https://moved.example.test/saml/acs/", ACS_URL]
    assert lines[-1] == (
        "Verdict: WOULD NOT SIGN IN: wrong_destination: "
        "The SAML response was sent to another address than this site's."
    )
    status, out, err = run(capsys, "--settings", sp(), "--response", response)
    assert (status, out.splitlines()[-1]) == (0, "Verdict: WOULD SIGN IN")


# -- what the admin pasted --------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    ["base64", "base64-wrapped", "url-encoded", "form-body", "xml", "stdin"],
)
def test_every_captured_form_is_read(shape, sp, devidp, tmp_path, capsys, monkeypatch):
    encoded = mint(devidp)
    xml = base64.b64decode(encoded)
    content: bytes | str = {
        "base64": encoded,
        "base64-wrapped": "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)),
        "url-encoded": quote(encoded, safe=""),
        "form-body": urlencode({"SAMLResponse": encoded, "RelayState": "/x"}),
        "xml": xml,
        "stdin": encoded,
    }[shape]
    if shape == "stdin":
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(encoded.encode())))
        target: str | Path = "-"
    else:
        target = saved(tmp_path, content)
    status, result = run_json(capsys, "--settings", sp(), "--response", target)
    assert (status, result["user"]["name_id"]) == (0, BSIMON)


def test_response_value_detects_each_form():
    encoded = base64.b64encode(b"<samlp:Response/>").decode()
    assert (
        response_value(b"  <samlp:Response/>\n")
        == base64.b64encode(b"<samlp:Response/>\n").decode()
    )
    assert response_value(encoded.encode()) == encoded
    assert response_value(quote(encoded, safe="").encode()) == encoded
    assert (
        response_value(f"RelayState=%2Fx&SAMLResponse={quote(encoded, safe='')}".encode())
        == encoded
    )


def test_garbage_is_a_refusal_not_a_usage_error(sp, tmp_path, capsys):
    status, result = run_json(
        capsys, "--settings", sp(), "--response", saved(tmp_path, "not a SAML response at all")
    )
    assert (status, result["refusal"]["code"]) == (1, "malformed")
    assert check(result, "response")["result"] == "fail"


# -- the outstanding request (--request-id) -----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "status", "code"),
    [
        ("_req-42", 0, None),
        (None, 1, "wrong_in_response_to"),
        ("_other", 1, "wrong_in_response_to"),
    ],
    ids=["matching", "none-given", "another"],
)
def test_request_id_stands_for_the_outstanding_request(
    given, status, code, sp, devidp, tmp_path, capsys
):
    settings = sp()
    response = saved(tmp_path, mint(devidp, in_response_to="_req-42"))
    args = ["--settings", settings, "--response", response]
    if given is not None:
        args += ["--request-id", given]
    got, result = run_json(capsys, *args)
    assert got == status
    assert (result["refusal"] or {}).get("code") == code
    row = check(result, "in_response_to")
    assert (row["expected"], row["received"]) == (given, "_req-42")


# -- --at: every time judged at one instant --------------------------------------------------------


def test_at_judges_the_response_times_at_that_instant(sp, devidp, tmp_path, capsys):
    settings = sp(security__crypto_backend=INPROCESS)
    issued = dt.datetime(2024, 4, 25, 20, 31, 55, tzinfo=dt.timezone.utc)
    with time_machine.travel(issued, tick=False):
        response = saved(tmp_path, mint(devidp))
    status, result = run_json(capsys, "--settings", settings, "--response", response)
    assert (status, result["refusal"]["code"]) == (1, "expired")  # judged now: long gone
    status, result = run_json(
        capsys, "--settings", settings, "--response", response, "--at", "2024-04-25T20:32:10Z"
    )
    assert (status, result["refusal"]) == (0, None)
    assert result["at"] == "2024-04-25T20:32:10+00:00"
    status, result = run_json(
        capsys, "--settings", settings, "--response", response, "--at", "2024-04-25T19:00:00Z"
    )
    assert (status, result["refusal"]["code"]) == (1, "not_yet_valid")


def with_valid_until(metadata_xml: str, valid_until: str) -> str:
    root = etree.fromstring(metadata_xml.encode())
    root.set("validUntil", valid_until)
    return etree.tostring(root).decode()


def test_at_judges_the_metadata_valid_until(sp, devidp, tmp_path, capsys):
    """Metadata that expired since is valid at --at; metadata valid today has expired at --at."""
    sp(security__crypto_backend=INPROCESS)  # the IdP trusts this SP
    issued = dt.datetime(2024, 4, 25, 20, 31, 55, tzinfo=dt.timezone.utc)
    with time_machine.travel(issued, tick=False):
        response = saved(tmp_path, mint(devidp))

    def valid_until(moment: str) -> Path:
        metadata = with_valid_until(devidp.metadata_xml(), moment)
        settings = settings_for(
            devidp, idp__metadata_xml=metadata, security__crypto_backend=INPROCESS
        )
        return saved(tmp_path, json.dumps(settings), f"settings-{moment[:10]}.json")

    expired_since = valid_until("2024-05-01T00:00:00Z")
    status, out, err = run(capsys, "--settings", expired_since, "--response", response)
    assert status == 2 and "metadata expired (validUntil 2024-05-01T00:00:00Z)" in err
    status, result = run_json(
        capsys, "--settings", expired_since, "--response", response, "--at", "2024-04-25T20:32Z"
    )
    assert (status, result["refusal"]) == (0, None)
    in_a_month = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    valid_today = valid_until(in_a_month.strftime("%Y-%m-%dT%H:%M:%SZ"))
    status, result = run_json(capsys, "--settings", valid_today, "--response", response)
    assert (status, result["refusal"]["code"]) == (1, "expired")  # the metadata is fine
    later = (in_a_month + dt.timedelta(days=1)).isoformat()
    status, out, err = run(capsys, "--settings", valid_today, "--response", response, "--at", later)
    assert status == 2 and "metadata expired" in err and "Traceback" not in err


def test_parse_idp_metadata_judges_valid_until_at_the_given_instant(devidp):
    xml = with_valid_until(devidp.metadata_xml(), "2024-05-01T00:00:00Z")
    with pytest.raises(MetadataError, match="metadata expired"):
        parse_idp_metadata(xml)
    then = dt.datetime(2024, 4, 30, tzinfo=dt.timezone.utc).timestamp()
    assert parse_idp_metadata(xml, now=then).valid_until is not None


def test_at_shows_certificate_validity_at_that_instant(sp, devidp, tmp_path, capsys):
    settings = sp(security__crypto_backend=INPROCESS)
    response = saved(tmp_path, mint(devidp))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=20 * 365)
    status, result = run_json(
        capsys, "--settings", settings, "--response", response, "--at", later.isoformat()
    )
    assert status == 1  # the response has long expired then
    detail = " ".join(check(result, "signature")["detail"])
    assert "expired on" in detail
    status, result = run_json(capsys, "--settings", settings, "--response", response)
    assert "expired on" not in " ".join(check(result, "signature")["detail"])


def test_parse_instant_forms():
    assert parse_instant("2013-08-03T21:54:43.942Z") == pytest.approx(1375566883.942)
    assert parse_instant("2013-08-03T23:54:43+02:00") == 1375566883
    assert parse_instant("2013-08-03T21:54:43") == 1375566883  # no offset: UTC
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_instant("yesterday")


# -- nothing stored ----------------------------------------------------------------------


class StoreSpy(MemoryStore):
    """A memory store that records every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if callable(value) and not name.startswith("_") and name != "calls":
            super().__getattribute__("calls").append(name)
        return value


async def test_diagnose_stores_nothing(devidp, make_engine):
    """No replay mark, no session, no request taken or read: the store is never called."""
    registered = make_engine()  # the IdP trusts this SP
    spy = StoreSpy()
    engine = Engine(registered.settings, store=spy)
    response = mint(devidp, in_response_to="_req-7")
    spy.calls.clear()
    for _ in range(2):  # the same answer twice: no replay refusal either
        diagnosis = await engine.diagnose(response, request_id="_req-7")
        assert diagnosis.would_sign_in, diagnosis.error
    assert spy.calls == []
    # The control: the spy sees what the ACS stores for an (IdP-initiated) login.
    reply = await Browser(engine, devidp).post_acs(mint(devidp))
    assert reply.status == 303
    assert "add_if_absent" in spy.calls


async def test_disabled_organization_is_refused(devidp, make_engine):
    engine = make_engine()
    assert engine.tenant is not None
    engine.tenant.enabled = False
    diagnosis = await engine.diagnose(mint(devidp))
    assert diagnosis.error is not None and diagnosis.error.code == "tenant_disabled"


# -- bad usage: exit 2, one line, no traceback --------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["no-response", "unreadable-response", "no-settings-file", "bad-settings", "bad-at", "tenant"],
)
def test_bad_usage_is_exit_2_with_one_line(case, sp, devidp, tmp_path, capsys):
    settings = sp()
    response = saved(tmp_path, mint(devidp))
    bad_settings = saved(tmp_path, json.dumps({"base_url": "nope"}), "bad.json")
    args = {
        "no-response": ["--settings", settings],
        "unreadable-response": ["--settings", settings, "--response", tmp_path / "missing.txt"],
        "no-settings-file": ["--settings", tmp_path / "missing.json", "--response", response],
        "bad-settings": ["--settings", bad_settings, "--response", response],
        "bad-at": ["--settings", settings, "--response", response, "--at", "soon"],
        "tenant": ["--settings", settings, "--response", response, "--tenant", "acme"],
    }[case]
    status, out, err = run(capsys, *args)
    assert status == 2, (out, err)
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("saml-middleware: error: ")


def test_at_with_the_xmlsec1_backend_is_refused(sp, devidp, tmp_path, capsys):
    """pysaml2's xmlsec1 path reads this machine's clock: --at could not be honoured."""
    settings = sp(security__crypto_backend="xmlsec1")
    response = saved(tmp_path, mint(devidp))
    status, out, err = run(
        capsys, "--settings", settings, "--response", response, "--at", "2024-01-01T00:00:00Z"
    )
    assert status == 2 and "--at needs security.crypto_backend 'inprocess'" in err


@pytest.mark.parametrize(
    ("enabled", "status", "code"), [(True, 0, None), (False, 1, "tenant_disabled")]
)
async def test_organization_is_judged_with_its_own_settings(
    enabled, status, code, devidp, tmp_path, capsys
):
    settings = settings_for(devidp)
    settings["tenants"] = {"acme": {"idp": settings.pop("idp"), "enabled": enabled}}
    metadata = await Engine(settings).sp_metadata_for("acme")
    devidp.add_service_provider(metadata)
    entity_id = "https://app.example.test/saml/metadata/acme/"
    assert entity_id in metadata
    response = devidp.create_response("bsimon", sp_entity_id=entity_id, in_response_to=None)
    path = saved(tmp_path, json.dumps(settings), "tenants.json")
    got, result = await asyncio.to_thread(
        run_json,
        capsys,
        "--settings",
        path,
        "--tenant",
        "acme",
        "--response",
        saved(tmp_path, response),
    )
    assert (got, (result["refusal"] or {}).get("code")) == (status, code)
    if enabled:
        assert result["user"]["tenant"] == "acme"
