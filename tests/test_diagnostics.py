"""The Test SSO diagnostics page (saml_middleware/diagnostics/), read as an admin would.

Each test mints a real Response with a development IdP whose key it holds,
has an engine built from `settings_for` judge it as its ACS does for a Test SSO
answer (`Engine.diagnose`: the same steps, nothing stored), so the refusal
handed to the report is the real one, then parses the page with
lxml.html and checks what an admin sees: the row results, the hints, the
escaping, and that no XML or secret leaks onto the page.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from lxml import etree

from saml_middleware import diagnostics
from saml_middleware.config import Settings
from saml_middleware.devidp import DevIdP
from saml_middleware.diagnostics import (
    CODE_TO_CHECK,
    UNVERIFIABLE_TEXT,
    Expected,
    TestReport,
    build_report,
    expected_from,
    observe_response,
    render_report,
)
from saml_middleware.engine import Engine
from saml_middleware.errors import SAMLError
from saml_middleware.identity import role_values
from saml_middleware.saml.rules import recipient_rule
from saml_middleware.saml.sp import UNVERIFIABLE
from tests import forge
from tests.forge import SAMLP, KeyPair
from tests.helpers import SP_BASE, Clock, settings_for
from tests.security.harness import IDP_URL

REQUEST_ID = "id-test-sso-0001"
ACS = f"{SP_BASE}/saml/acs/"
ENTITY = f"{SP_BASE}/saml/metadata/"
ROLE_CLAIM = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
EMAIL_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
DISPLAY_CLAIM = "http://schemas.microsoft.com/identity/claims/displayname"


# -- fixtures: an IdP we hold the key of, and SPs that trust it (or not) ---------------


@dataclasses.dataclass
class Sp:
    """One configured SP: an engine trusting one IdP, at a clock the test sets."""

    engine: Engine
    clock: Clock

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    def expected(self, **changes: Any) -> Expected:
        base = expected_from(self.settings, self.engine.metadata.load(), request_id=REQUEST_ID)
        return dataclasses.replace(base, **changes)


def make_sp(trusted: DevIdP, minting: DevIdP | None = None, **overrides: Any) -> Sp:
    """An SP trusting `trusted`'s metadata, registered at `minting` (default: `trusted`)."""
    clock = Clock()
    engine = Engine(settings_for(trusted, **overrides), clock=clock)
    (minting or trusted).add_service_provider(engine.sp_metadata_xml())
    return Sp(engine, clock)


@pytest.fixture(scope="module")
def sp(idp: DevIdP) -> Sp:
    return make_sp(idp)


@pytest.fixture
def mint(idp: DevIdP) -> Callable[..., etree._Element]:
    """A genuine Response of `idp` for the default SP (decoded), answering REQUEST_ID."""

    def make(user: str = "bsimon", **kwargs: Any) -> etree._Element:
        kwargs.setdefault("sp_entity_id", ENTITY)
        kwargs.setdefault("in_response_to", REQUEST_ID)
        return forge.decode(idp.create_response(user, **kwargs))

    return make


# -- the pipeline the engine runs, and the page ------------------------------------------


@dataclasses.dataclass
class Outcome:
    report: TestReport
    error: SAMLError | None
    html: bytes
    doc: Any  # lxml.html root

    def row(self, name: str) -> Any:
        rows = self.doc.xpath(f"//table[@id='checks']//tr[@data-check='{name}']")
        assert len(rows) == 1, f"{name}: {len(rows)} rows"
        return rows[0]

    def result(self, name: str) -> str:
        return str(self.row(name).get("data-result"))

    def detail(self, name: str) -> str:
        return str(self.row(name).xpath("string(td[3])"))

    def results(self) -> dict[str, str]:
        return {
            str(tr.get("data-check")): str(tr.get("data-result"))
            for tr in self.doc.xpath("//table[@id='checks']//tr[@data-check]")
        }

    def fixes(self) -> dict[str, str]:
        return {
            str(li.get("data-fix")): li.text_content()
            for li in self.doc.xpath("//section[@id='fixes']//li")
        }

    @property
    def summary(self) -> Any:
        return self.doc.xpath("//section[@id='summary']")[0]


def diagnose(
    sp: Sp,
    root: etree._Element | bytes,
    *,
    now: float | None = None,
    expected: Expected | None = None,
) -> Outcome:
    """The engine's Test SSO verdict on `root` (the ACS's steps, answering REQUEST_ID), at
    `now`, and its page. With `expected`, the page is rendered against those expectations
    (an organization's name, a certificate's expiry) from the engine's verdict."""
    xml = root if isinstance(root, bytes) else etree.tostring(root)
    sp.clock.now = time.time() if now is None else now
    saml_response = base64.b64encode(xml).decode("ascii")
    verdict = asyncio.run(sp.engine.diagnose(saml_response, request_id=REQUEST_ID))
    report = verdict.report
    if expected is not None:
        user = report.user
        values = role_values(user.attributes, sp.settings.roles) if user is not None else ()
        report = build_report(
            expected=expected,
            observed=verdict.observed,
            error=verdict.error,
            user=user,
            role_values=values,
            now=report.now,
        )
    html = render_report(report)
    return Outcome(report, verdict.error, html, lxml.html.fromstring(html))


def assert_no_dump(outcome: Outcome, sp: Sp) -> None:
    """No XML, no signature or certificate bodies, no settings secret on the page."""
    text = outcome.html.decode()
    assert "<saml" not in text and "<ns0:" not in text and "<ns1:" not in text
    assert "urn:oasis:names:tc:SAML:2.0:protocol" not in text
    assert "SignatureValue" not in text and "X509Certificate" not in text
    assert "MII" not in text  # no certificate body
    assert sp.settings.secret_key not in text


# -- a passing test ------------------------------------------------------------------------


def test_passing_response_shows_every_check_passed_and_the_user(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    expected = sp.expected(tenant="acme", tenant_name="Acme <Corp>")
    outcome = diagnose(sp, mint(), expected=expected)

    assert outcome.error is None
    assert outcome.summary.get("data-result") == "pass"
    summary = outcome.summary.text_content()
    assert "Test passed" in summary and "B.Simon" in summary and "Admin" in summary
    assert "no session was created" in summary
    assert "Acme <Corp> (acme)" in summary  # escaped in the source, shown as typed
    assert b"Acme &lt;Corp&gt;" in outcome.html
    assert outcome.results() == {
        "response": "pass",
        "issuer": "pass",
        "in_response_to": "pass",
        "signature": "pass",
        "signed_elements": "pass",
        "destination": "pass",
        "recipient": "pass",
        "audience": "pass",
        "time": "pass",
        "name_id": "pass",
        "roles": "pass",
    }
    assert "Signed: the assertion (RSA-SHA256, digest SHA-256)" in outcome.detail("signature")
    assert "thumbprint" in outcome.detail("signature")
    assert "the configured one" in outcome.detail("signed_elements")
    assert ACS in outcome.detail("destination") and ENTITY in outcome.detail("audience")
    assert "admins → Admin" in outcome.detail("roles")
    assert "allowed clock skew: 120 s" in outcome.detail("time")

    user = outcome.doc.xpath("//section[@id='user']")[0].text_content()
    assert "B.Simon@contoso.com" in user
    assert [li.text_content() for li in outcome.doc.xpath("//ul[@id='roles']/li")] == ["Admin"]
    claims = {
        tr.xpath("string(td[1])"): tr.xpath("string(td[2])")
        for tr in outcome.doc.xpath("//table[@id='attributes']//tr[@data-claim]")
    }
    assert claims[EMAIL_CLAIM] == "B.Simon@contoso.com"
    assert claims[ROLE_CLAIM] == "admins"
    assert outcome.doc.xpath("//section[@id='fixes']//li") == []
    assert_no_dump(outcome, sp)


def test_observe_reads_the_response_without_trusting_it(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    observed = observe_response(etree.tostring(mint()))
    assert observed is not None and observed.is_response and observed.success
    assert observed.destination == ACS
    assert observed.issuer == observed.assertion_issuer == IDP_URL + "/metadata"
    assert observed.in_response_to == REQUEST_ID
    assert observed.audiences == ((ENTITY,),)
    assert [c.recipient for c in observed.confirmations] == [ACS]
    assert observed.name_id_present
    assert observed.name_id_format == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    assert observed.assertion_signed and not observed.response_signed and not observed.encrypted
    assert observed.signatures[0].certificate is not None
    for junk in (b"", b"not xml", b"<a>", b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>', b"\xff\xfe"):
        assert observe_response(junk) is None
    assert observe_response(b"<x/>") == diagnostics.Observed(is_response=False)


# -- failing configurations ----------------------------------------------------------------


def test_wrong_identifier_fails_the_audience_and_says_what_to_paste(idp: DevIdP) -> None:
    """The SP's entity ID differs from the Identifier the IdP sends."""
    other = make_sp(idp, idp, sp={"entity_id": f"{SP_BASE}/saml/metadata/acme/"})
    root = forge.decode(
        idp.create_response("bsimon", sp_entity_id=ENTITY, in_response_to=REQUEST_ID)
    )
    outcome = diagnose(other, root)

    assert outcome.error is not None and CODE_TO_CHECK[outcome.error.code] == "audience"
    assert outcome.summary.get("data-result") == "fail"
    assert outcome.result("audience") == "fail"
    assert f"Expected: {SP_BASE}/saml/metadata/acme/" in outcome.detail("audience")
    assert f"Received: {ENTITY}" in outcome.detail("audience")
    # Comparisons that need no verification still show their own result.
    assert outcome.result("destination") == "pass"
    assert outcome.result("issuer") == "pass"
    assert outcome.result("roles") == "skip"
    fixes = outcome.fixes()
    assert (
        "Identifier (Entity ID) must be https://app.example.test/saml/metadata/acme/"
        in (fixes["identifier"])
    )
    assert "reply_url" not in fixes
    assert outcome.doc.xpath("//section[@id='user']") == []
    assert outcome.doc.xpath("//table[@id='attributes']") == []


def test_wrong_reply_url_fails_destination_and_recipient_at_once(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    outcome = diagnose(sp, mint(acs_url=f"{SP_BASE}/old/acs"))

    assert outcome.error is not None
    assert outcome.result("destination") == "fail"
    assert outcome.result("recipient") == "fail"
    assert f"Received: {SP_BASE}/old/acs" in outcome.detail("destination")
    assert f"Expected: {ACS}" in outcome.detail("recipient")
    assert outcome.result("audience") == "pass"
    fix = outcome.fixes()["reply_url"]
    assert (
        f"Basic SAML Configuration > Reply URL (Assertion Consumer Service URL) must be {ACS}"
        in (fix)
    )


def _received_expected(outcome: Outcome, name: str) -> list[str]:
    return [
        line
        for line in outcome.report.check(name).detail  # type: ignore[union-attr]
        if line.startswith(("Expected:", "Received:"))
    ]


def _recipient_on_the_other_slash_variant(root: etree._Element) -> None:
    forge.set_recipient(root, ACS.rstrip("/"))


def _second_bearer_naming_no_recipient(root: etree._Element) -> None:
    confirmation = forge.subject_confirmation(root)
    second = etree.fromstring(etree.tostring(confirmation))
    del second[0].attrib["Recipient"]
    confirmation.addnext(second)


@pytest.mark.parametrize(
    "change", [_recipient_on_the_other_slash_variant, _second_bearer_naming_no_recipient]
)
def test_the_page_and_the_acs_cannot_disagree_on_the_recipient(
    sp: Sp,
    idp_keys: KeyPair,
    mint: Callable[..., etree._Element],
    change: Callable[[etree._Element], None],
) -> None:
    """The Recipient row is the ACS's own rule (`saml.rules.recipient_rule`), rendered.

    Signed by the IdP, the ACS refuses `wrong_recipient`. Signed by another key,
    the pipeline stops at the signature and the page judges the Recipient by
    itself: it must fail too, with the same Expected/Received lines. (A second
    bearer confirmation naming no Recipient passed on the page before, while the
    ACS refused it.)
    """
    genuine, foreign = mint(), mint()
    for root, keys in ((genuine, idp_keys), (foreign, KeyPair.generate("attacker"))):
        change(root)
        forge.resign(root, keys)

    refused = diagnose(sp, genuine)
    assert refused.error is not None and refused.error.code == "wrong_recipient"
    assert refused.result("recipient") == "fail"
    judged = diagnose(sp, foreign)
    assert judged.error is not None and judged.error.code in UNVERIFIABLE
    assert judged.result("recipient") == "fail"
    assert "The assertion is meant for another address." in judged.detail("recipient")
    assert _received_expected(judged, "recipient") == _received_expected(refused, "recipient")
    observed = observe_response(etree.tostring(foreign))
    assert observed is not None
    rule = recipient_rule(sp.settings.acs_urls, observed.confirmations)
    assert rule.refusal is not None and rule.refusal.code == "wrong_recipient"
    assert _received_expected(judged, "recipient") == [
        f"Expected: {rule.expected[0]}",
        *(f"Received: {got or '(none)'}" for got in rule.received),
    ]
    assert judged.result("destination") == "pass" and judged.result("audience") == "pass"


def test_expired_answer_shows_the_clock_difference(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    """The server's clock is two days ahead of the IdP's."""
    outcome = diagnose(sp, mint(), now=time.time() + 2 * 86400)

    assert outcome.error is not None and outcome.error.code == "expired"
    assert outcome.result("time") == "fail"
    detail = outcome.detail("time")
    assert "before the server's time" in detail and "allowed clock skew: 120 s" in detail
    assert outcome.result("audience") == "pass" and outcome.result("destination") == "pass"
    fix = outcome.fixes()["clock"]
    assert "This server's clock is about 2.0 days ahead of the IdP's clock" in fix
    assert "allowed difference: 120 s" in fix and "NTP" in fix


def test_answer_from_the_future_names_the_idp_clock_ahead(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    outcome = diagnose(sp, mint(), now=time.time() - 600)
    assert outcome.error is not None and outcome.error.code == "not_yet_valid"
    assert outcome.result("time") == "fail"
    fix = outcome.fixes()["clock"]
    assert re.search(r"The IdP's clock is about (9 min 5\d|10 min 0) s ahead of this server's", fix)


def test_wrong_certificate_is_one_opaque_failure_with_a_certificate_hint(
    idp: DevIdP, mint: Callable[..., etree._Element], caplog: pytest.LogCaptureFixture
) -> None:
    """The SP trusts another certificate (say, before a rotation) for the same IdP entity."""
    rotated = DevIdP(IDP_URL)  # same entity ID, a key of its own
    stale = make_sp(rotated, idp)
    outcome = diagnose(stale, mint())

    assert outcome.error is not None and outcome.error.code in UNVERIFIABLE
    assert outcome.result("signature") == "fail"
    assert outcome.detail("signature").startswith(UNVERIFIABLE_TEXT)
    assert outcome.error.code not in outcome.html.decode()
    assert outcome.error.reason not in outcome.html.decode()
    # What the message itself shows: it names a certificate that is not configured.
    assert outcome.result("signed_elements") == "warn"
    assert "a different one" in outcome.detail("signed_elements")
    fixes = outcome.fixes()
    assert "Certificate (Base64)" in fixes["certificate"]
    assert "Metadata Url" in fixes["certificate"]
    assert outcome.result("roles") == "skip"
    assert outcome.doc.xpath("//table[@id='attributes']") == []
    assert_no_dump(outcome, stale)


def test_cryptographic_failures_give_byte_identical_signature_rows(
    sp: Sp, idp_keys: KeyPair, mint: Callable[..., etree._Element]
) -> None:
    attacker = KeyPair.generate("attacker")
    tampered = mint()
    forge.one(forge.assertion(tampered), "saml:Subject/saml:NameID").text = "admin@contoso.com"
    foreign = mint()
    forge.resign(foreign, attacker)
    sha1 = mint()
    forge.resign(sha1, idp_keys, algorithm="sha1")

    outcomes = [diagnose(sp, root) for root in (tampered, foreign, sha1)]
    codes = {o.error.code for o in outcomes if o.error is not None}
    assert len(codes) >= 2 and codes <= UNVERIFIABLE, codes
    rows = {lxml.html.tostring(o.row("signature")) for o in outcomes}
    assert len(rows) == 1, rows
    for outcome in outcomes:
        assert outcome.result("signature") == "fail"
        assert "Certificate (Base64)" in outcome.fixes()["certificate"]
        assert outcome.summary.get("data-result") == "fail"
        assert UNVERIFIABLE_TEXT in outcome.summary.text_content()
        assert outcome.error is not None and outcome.error.reason not in outcome.html.decode()


def test_unsigned_assertion_points_at_the_signing_option(
    sp: Sp, idp_keys: KeyPair, mint: Callable[..., etree._Element]
) -> None:
    root = mint()
    forge.strip_signatures(root)
    forge.sign_response(root, idp_keys)  # Entra's "Sign SAML response" only
    outcome = diagnose(sp, root)

    assert outcome.error is not None and outcome.error.code in UNVERIFIABLE
    assert outcome.detail("signature").startswith(UNVERIFIABLE_TEXT)
    assert outcome.result("signed_elements") == "fail"
    assert "The assertion is not signed." in outcome.detail("signed_elements")
    assert "Signing option: choose “Sign SAML assertion”" in outcome.fixes()["signing_option"]


def test_wrong_issuer_says_the_metadata_is_another_apps(idp: DevIdP) -> None:
    other = make_sp(
        idp,
        idp,
        idp={
            "entity_id": "https://sts.windows.net/another-tenant/",
            "sso_url": f"{IDP_URL}/sso/redirect",
            "x509cert": idp.cert_pem,
        },
    )
    root = forge.decode(
        idp.create_response("bsimon", sp_entity_id=ENTITY, in_response_to=REQUEST_ID)
    )
    outcome = diagnose(other, root)

    assert outcome.error is not None and outcome.error.code == "wrong_issuer"
    assert outcome.result("issuer") == "fail"
    assert "Expected: https://sts.windows.net/another-tenant/" in outcome.detail("issuer")
    assert outcome.result("signature") == "skip"
    assert outcome.result("destination") == "pass"
    assert "another application or tenant" in outcome.fixes()["issuer"]


def test_missing_role_claim_with_a_required_role(idp: DevIdP) -> None:
    strict = make_sp(idp, idp, roles={"map": {"admins": ["Admin"]}, "require_mapped_role": True})
    root = forge.decode(
        idp.create_response("cnoroles", sp_entity_id=ENTITY, in_response_to=REQUEST_ID)
    )
    outcome = diagnose(strict, root)

    assert outcome.error is not None and outcome.error.code == "no_mapped_role"
    assert outcome.summary.get("data-result") == "fail"
    assert outcome.result("signature") == "pass"  # refused after verification
    assert outcome.result("roles") == "warn"
    assert "no role claim" in outcome.detail("roles")
    assert outcome.result("required_role") == "fail"
    fixes = outcome.fixes()
    assert "add an app role" in fixes["role_claim"] and ROLE_CLAIM in fixes["role_claim"]
    assert "role_assignment" in fixes
    # The user was built: the admin sees what did arrive.
    assert outcome.doc.xpath("//section[@id='user']")
    assert outcome.doc.xpath("//table[@id='attributes']//tr[@data-claim]")
    assert outcome.doc.xpath("//ul[@id='roles']/li") == []


def test_missing_role_claim_without_required_role_passes_with_a_warning(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    outcome = diagnose(sp, mint("cnoroles"))
    assert outcome.error is None
    assert outcome.summary.get("data-result") == "pass"
    assert "1 warning" in outcome.summary.text_content()
    assert outcome.result("roles") == "warn"
    assert "required_role" not in outcome.results()
    assert "role_claim" in outcome.fixes()


def test_unmapped_role_value_is_named(idp: DevIdP) -> None:
    mapped = make_sp(idp, idp, roles={"map": {"developers": ["Member"]}})
    root = forge.decode(
        idp.create_response("bsimon", sp_entity_id=ENTITY, in_response_to=REQUEST_ID)
    )
    outcome = diagnose(mapped, root)
    assert outcome.result("roles") == "warn"
    assert "Not mapped: admins" in outcome.detail("roles")
    assert "role_map" in outcome.fixes()


def test_expiring_certificate_warns_on_the_page_and_in_the_log(
    sp: Sp, mint: Callable[..., etree._Element], caplog: pytest.LogCaptureFixture
) -> None:
    soon = datetime.now(timezone.utc) + timedelta(days=10, hours=1)
    caplog.set_level(logging.WARNING, logger="saml_middleware.diagnostics")
    outcome = diagnose(sp, mint(), expected=sp.expected(cert_not_after=(soon,)))

    assert outcome.error is None
    assert outcome.summary.get("data-result") == "pass"
    assert outcome.result("signature") == "warn"
    assert f"expires on {soon:%Y-%m-%d} (in 10 days)" in outcome.detail("signature")
    assert "create a new certificate" in outcome.fixes()["certificate_expiry"]
    warnings = [r for r in caplog.records if r.name == "saml_middleware.diagnostics"]
    assert any("expires on" in r.getMessage() for r in warnings)


def test_non_success_status_shows_the_idp_message(
    sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    root = mint()
    forge.remove_assertions(root)
    forge.set_status(root, forge.STATUS_RESPONDER, forge.STATUS_AUTHN_FAILED)
    message = etree.SubElement(forge.one(root, "samlp:Status"), f"{{{SAMLP}}}StatusMessage")
    message.text = "AADSTS50105: <b>not assigned</b>"
    outcome = diagnose(sp, root)

    assert outcome.error is not None and outcome.error.code == "status_not_success"
    assert outcome.result("response") == "fail"
    detail = outcome.detail("response")
    assert "Responder, AuthnFailed" in detail
    assert "AADSTS50105: <b>not assigned</b>" in detail  # shown as text...
    assert b"<b>not assigned" not in outcome.html  # ...never as markup
    assert outcome.result("issuer") == "pass" and outcome.result("destination") == "pass"
    for name in ("signature", "recipient", "audience", "name_id", "roles"):
        assert outcome.result(name) == "skip", name
    assert "AADSTS50105" in outcome.fixes()["idp_status"]


def test_hostile_attribute_values_are_escaped(
    sp: Sp, idp_keys: KeyPair, mint: Callable[..., etree._Element]
) -> None:
    root = mint()
    hostile = "<script>alert(1)</script>" + "x" * 500
    for attribute in forge.assertion(root).xpath(
        f"saml:AttributeStatement/saml:Attribute[@Name='{DISPLAY_CLAIM}']/saml:AttributeValue",
        namespaces=forge.NS,
    ):
        attribute.text = hostile
    forge.resign(root, idp_keys)
    outcome = diagnose(sp, root)

    assert outcome.error is None
    assert b"<script>" not in outcome.html
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in outcome.html
    assert outcome.doc.xpath("//script") == []
    shown = outcome.doc.xpath(
        f"string(//table[@id='attributes']//tr[@data-claim='{DISPLAY_CLAIM}']/td[2])"
    )
    assert shown.startswith("<script>alert(1)</script>") and len(shown) <= 200  # truncated


def test_unreadable_answer(sp: Sp) -> None:
    error = SAMLError("malformed", "The SAML message is not XML.", 400)
    report = build_report(
        expected=sp.expected(),
        observed=observe_response(b"garbage"),
        error=error,
        user=None,
        now=time.time(),
    )
    doc = lxml.html.fromstring(render_report(report))
    rows = {tr.get("data-check"): tr.get("data-result") for tr in doc.xpath("//tr[@data-check]")}
    assert rows.pop("response") == "fail"
    assert set(rows.values()) == {"skip"}
    assert "not XML" in doc.xpath("string(//tr[@data-check='response'])")


def test_every_refusal_code_maps_to_a_check() -> None:
    """A code added to the pipeline later must be given its row here."""
    package = Path(diagnostics.__file__).parent.parent  # the whole saml_middleware package
    codes = set(UNVERIFIABLE) | {"access_denied"}
    for path in package.rglob("*.py"):
        codes |= set(re.findall(r'SAMLError\(\s*"([a-z_]+)"', path.read_text()))
    assert codes, "no codes found"
    missing = sorted(codes - set(CODE_TO_CHECK))
    assert not missing, missing
    assert set(CODE_TO_CHECK.values()) <= set(diagnostics.CHECK_TITLES)


def test_encrypted_assertion_passes_and_a_decryption_failure_looks_like_any_other(
    idp: DevIdP, sp: Sp, mint: Callable[..., etree._Element]
) -> None:
    sp_keys = KeyPair.generate("diagnostics SP")
    entity = f"{SP_BASE}/saml/metadata/enc/"
    enc = make_sp(
        idp, idp, sp={"entity_id": entity, "key_pem": sp_keys.key_pem, "cert_pem": sp_keys.cert_pem}
    )
    sealed = forge.decode(
        idp.create_response(
            "bsimon", sp_entity_id=entity, in_response_to=REQUEST_ID, encrypt_assertion=True
        )
    )
    outcome = diagnose(enc, sealed)
    assert outcome.error is None, outcome.error
    assert "encrypted assertion" in outcome.detail("response")
    for name in ("recipient", "audience", "name_id"):
        assert outcome.result(name) == "pass"
        assert "after decrypting" in outcome.detail(name)
    assert outcome.result("signature") == "pass"
    assert outcome.doc.xpath("//table[@id='attributes']//tr[@data-claim]")

    wrong_key = KeyPair.generate("not the SP")
    unreadable = forge.decode(
        idp.create_response(
            "bsimon",
            sp_entity_id=entity,
            in_response_to=REQUEST_ID,
            encrypt_assertion=True,
            encrypt_cert=wrong_key.cert_pem,
        )
    )
    failed = diagnose(enc, unreadable)
    assert failed.error is not None and failed.error.code == "decryption_failed"
    assert failed.result("audience") == "skip"  # encrypted: nothing to compare before decryption
    tampered = mint()
    forge.name_id(tampered).text = "admin@contoso.com"
    forged = diagnose(sp, tampered)
    assert forged.error is not None and forged.error.code == "invalid_signature"
    assert lxml.html.tostring(failed.row("signature")) == lxml.html.tostring(
        forged.row("signature")
    )
    assert "decrypt" not in failed.detail("response") + failed.detail("signed_elements")
