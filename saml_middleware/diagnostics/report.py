"""The Test SSO report: one row per check, with the expected and received values,
and what to fix. No oracle: every cryptographic refusal reads the same.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cryptography import x509

from ..errors import SAMLError
from ..identity import SAMLUser
from ..keys import EXPIRY_WARNING_DAYS, certificate_standing, thumbprint
from ..saml.algorithms import NAMES as ALGORITHM_NAMES
from ..saml.algorithms import digest_methods, signature_methods
from ..saml.rules import (
    BEARER,
    MAX_RESPONSE_AGE_SECONDS,
    audience_rule,
    destination_rule,
    has_expired,
    issued_in_future,
    issued_too_long_ago,
    not_yet_valid,
    recipient_rule,
)
from ..saml.sp import UNVERIFIABLE
from ..saml.times import saml_instant
from .observe import Observed, SignatureSeen

if TYPE_CHECKING:
    from ..config import Settings
    from ..metadata import IdPInfo


log = logging.getLogger("saml_middleware.diagnostics")


# The one text for every cryptographic refusal (see the module docstring).
UNVERIFIABLE_TEXT = (
    "The signature could not be verified with the configured certificate, "
    "or the assertion could not be decrypted."
)

PASS, FAIL, SKIP, WARN = "pass", "fail", "skip", "warn"

_ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"

# Check name -> the title shown in the first column, in page order.
CHECK_TITLES: Mapping[str, str] = {
    "response": "Response and status",
    "issuer": "Issuer (IdP entity ID)",
    "in_response_to": "Answers this test (InResponseTo)",
    "signature": "Signature",
    "signed_elements": "Signing options",
    "destination": "Destination (Reply URL)",
    "recipient": "Recipient (Reply URL)",
    "audience": "Audience (Identifier)",
    "time": "Validity period and clocks",
    "name_id": "NameID",
    "roles": "Role claim",
    "required_role": "Required role",
    "provision": "Account set-up",
    "configuration": "SSO configuration",
}

# Every refusal code the ACS pipeline (protocol, engine, identity, session) can
# raise -> the check it belongs to. Codes not listed fall back to "response".
CODE_TO_CHECK: Mapping[str, str] = {
    **{code: "signature" for code in UNVERIFIABLE},
    "malformed": "response",
    "too_large": "response",
    "dtd_forbidden": "response",
    "duplicate_id": "response",
    "status_not_success": "response",
    "wrong_number_of_assertions": "response",
    "invalid_response": "response",
    "unsupported": "response",
    "replay": "response",
    "internal_error": "response",
    "not_found": "response",
    "invalid_path": "response",
    "method_not_allowed": "response",
    "csrf": "response",
    "wrong_issuer": "issuer",
    "wrong_in_response_to": "in_response_to",
    "unsolicited": "in_response_to",
    "wrong_browser": "in_response_to",
    "wrong_destination": "destination",
    "wrong_recipient": "recipient",
    "wrong_confirmation": "recipient",
    "wrong_audience": "audience",
    "expired": "time",
    "not_yet_valid": "time",
    "no_nameid": "name_id",
    "groups_unavailable": "roles",
    "no_mapped_role": "required_role",
    "groups_overage": "required_role",
    "access_denied": "provision",
    "provision_failed": "provision",
    "session_too_large": "provision",
    # Raised before any answer is read; listed so that every code has a row.
    "idp_unavailable": "configuration",
    "unknown_tenant": "configuration",
    "tenant_disabled": "configuration",
    "tenant_misconfigured": "configuration",
    "tenant_unavailable": "configuration",
}

# Refusals raised only after pysaml2 verified the signatures: with one of these
# the signature row can say "verified".
_AFTER_VERIFICATION = frozenset(
    {
        "no_nameid",
        "replay",
        "groups_unavailable",
        "no_mapped_role",
        "groups_overage",
        "access_denied",
        "provision_failed",
        "session_too_large",
    }
)

_MAX_TEXT = 200
MAX_VALUES = 50
_MAX_ATTRIBUTES = 100


# -- what the engine gives ------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What this SP expects of the IdP's answer; built by the engine from its settings."""

    sp_entity_id: str  # "Identifier (Entity ID)" to paste in Entra
    acs_url: str  # "Reply URL (Assertion Consumer Service URL)"
    idp_entity_id: str
    signing_certs: tuple[str, ...]  # IdPInfo.signing_certs (Base64 DER)
    cert_not_after: tuple[datetime, ...]  # IdPInfo.cert_not_after (UTC), same order
    clock_skew_seconds: int
    want_assertions_signed: bool
    want_response_signed: bool
    role_claims: tuple[str, ...]  # RoleSettings.attributes
    role_map: Mapping[str, tuple[str, ...]]  # RoleSettings.map
    require_mapped_role: bool
    tenant: str | None = None  # organization slug
    tenant_name: str | None = None
    # Optional extras: each makes one comparison more precise.
    request_id: str | None = None  # the outstanding Test SSO AuthnRequest's ID
    reject_sha1: bool = True  # SecuritySettings.reject_sha1
    name_id_format: str | None = None  # SPSettings.name_id_format (what the SP asks for)
    roles_case_insensitive: bool = False  # RoleSettings.case_insensitive
    acs_urls: tuple[str, ...] = ()  # Settings.acs_urls: every one accepted (else acs_url)


def expected_from(
    settings: Settings,
    idp: IdPInfo,
    *,
    tenant: str | None = None,
    tenant_name: str | None = None,
    request_id: str | None = None,
) -> Expected:
    """The expectations of one SP (an organization's merged `Settings`) and its IdP."""
    return Expected(
        sp_entity_id=settings.sp.entity_id,
        acs_url=settings.acs_url,
        acs_urls=settings.acs_urls,
        idp_entity_id=idp.entity_id,
        signing_certs=tuple(idp.signing_certs),
        cert_not_after=tuple(idp.cert_not_after),
        clock_skew_seconds=settings.security.clock_skew_seconds,
        want_assertions_signed=settings.security.want_assertions_signed,
        want_response_signed=settings.security.want_response_signed,
        role_claims=tuple(settings.roles.attributes),
        role_map=settings.roles.map,
        require_mapped_role=settings.roles.require_mapped_role,
        tenant=tenant,
        tenant_name=tenant_name,
        request_id=request_id,
        reject_sha1=settings.security.reject_sha1,
        name_id_format=settings.sp.name_id_format,
        roles_case_insensitive=settings.roles.case_insensitive,
    )


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One row: a check's name, its result, and plain-words detail lines."""

    name: str
    result: str  # pass | fail | skip | warn
    detail: tuple[str, ...]

    @property
    def title(self) -> str:
        return CHECK_TITLES.get(self.name, self.name)


@dataclass(frozen=True)
class Fix:
    """One "what to fix" hint: a stable key (for tests and styling) and the text."""

    key: str
    text: str


@dataclass(frozen=True)
class TestReport:
    """Everything the page shows; `result` is "pass" only when nothing failed."""

    __test__ = False  # not a pytest test class, whatever its name

    result: str
    verdict: str
    checks: tuple[Check, ...]
    fixes: tuple[Fix, ...]
    expected: Expected
    now: float
    user: SAMLUser | None = None
    failed_check: str | None = None  # the check the pipeline refused at, if any
    error_code: str | None = None  # for the operator's log only; never rendered
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def check_for_code(code: str) -> str:
    """The check a refusal code belongs to (unknown codes: the response as a whole)."""
    return CODE_TO_CHECK.get(code, "response")


def build_report(
    *,
    expected: Expected,
    observed: Observed | None,
    error: SAMLError | None,
    user: SAMLUser | None,
    role_values: tuple[str, ...] = (),
    now: float,
) -> TestReport:
    """One row per check from the expectations, what the answer said and the pipeline's outcome.

    `error` is the pipeline's first refusal (None: every check passed and `user`
    would have signed in). `user` may be given with an error raised after the
    user was built (required role, provisioning): the attributes and roles are
    then shown too. `now` is the server time the pipeline used (epoch seconds).
    """
    ctx = _Context(expected, observed, error, user, role_values, now)
    checks = [
        ctx.response(),
        ctx.issuer(),
        ctx.in_response_to(),
        ctx.signature(),
        ctx.signed_elements(),
        ctx.destination(),
        ctx.recipient(),
        ctx.audience(),
        ctx.time(),
        ctx.name_id(),
        ctx.roles(),
    ]
    if expected.require_mapped_role or ctx.failed == "required_role":
        checks.append(ctx.required_role())
    if ctx.failed == "provision":
        checks.append(ctx.provision())
    if ctx.failed == "configuration":
        checks.insert(0, ctx.refused_here("configuration", []) or ctx.not_reached("configuration"))
    fixes = _fixes(ctx, checks)
    for cert in ctx.expiring():
        log.warning(
            "IdP signing certificate %s (%s) %s%s",
            cert.thumbprint,
            cert.subject,
            cert.expiry_words,
            f" (organization {expected.tenant})" if expected.tenant else "",
        )
    failures = [c for c in checks if c.result == FAIL]
    result = FAIL if error is not None or failures else PASS
    verdict = _verdict(ctx, checks, result)
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if user is not None:
        attributes = tuple(
            (str(name), tuple(str(v) for v in values))
            for name, values in list(user.attributes.items())[:_MAX_ATTRIBUTES]
        )
    log.info(
        "Test SSO%s: %s%s",
        f" for organization {expected.tenant}" if expected.tenant else "",
        result,
        f" at {ctx.failed} ({error.code})" if error is not None else "",
    )
    return TestReport(
        result=result,
        verdict=verdict,
        checks=tuple(checks),
        fixes=tuple(fixes),
        expected=expected,
        now=now,
        user=user,
        failed_check=ctx.failed,
        error_code=error.code if error is not None else None,
        attributes=attributes,
    )


class _Context:
    """The inputs of one report, and one method per check."""

    def __init__(
        self,
        expected: Expected,
        observed: Observed | None,
        error: SAMLError | None,
        user: SAMLUser | None,
        role_values: tuple[str, ...],
        now: float,
    ) -> None:
        self.expected = expected
        self.observed = observed
        self.error = error
        self.user = user
        self.role_values = role_values
        self.now = now
        self.failed = check_for_code(error.code) if error is not None else None
        self.clock_offset: float | None = None  # IdP clock minus server clock, estimated
        # What the rows found, for the "what to fix" hints.
        self.unsigned = False  # a part this site requires signed is not
        self.bad_algorithm = False
        self.other_cert = False  # KeyInfo names a certificate that is not configured
        self.no_role_claim = False
        self.certs = [
            _describe_cert(body, not_after, now)
            for body, not_after in zip(
                expected.signing_certs,
                _pad(expected.cert_not_after, len(expected.signing_certs)),
                strict=True,
            )
        ]

    # -- helpers --

    def reason(self) -> str:
        """The refusal's reason, safe to show: one text for every cryptographic code."""
        assert self.error is not None
        if self.error.code in UNVERIFIABLE:
            return UNVERIFIABLE_TEXT
        return shorten(self.error.reason, 300)

    def refused_here(self, name: str, lines: list[str]) -> Check | None:
        """The failing row, when the pipeline refused at check `name`."""
        if self.failed != name:
            return None
        return Check(name, FAIL, (f"Refused: {self.reason()}", *lines))

    def not_reached(self, name: str, why: str | None = None) -> Check:
        if why is None:
            if self.failed is not None:
                title = CHECK_TITLES.get(self.failed, self.failed)
                why = f"Not evaluated: the test stopped at the “{title}” check."
            else:
                why = "Not evaluated."
        return Check(name, SKIP, (why,))

    @property
    def verified(self) -> bool:
        """The signatures were verified: no refusal, or one raised only after verification."""
        return self.error is None or self.error.code in _AFTER_VERIFICATION

    def unreadable(self, name: str) -> Check | None:
        """The row for an answer with no readable assertion (None when there is one)."""
        obs = self.observed
        if obs is None or not obs.is_response:
            return self.not_reached(name)
        if obs.assertion_count == 0:
            return self.not_reached(name, "Not evaluated: the response holds no assertion.")
        if obs.encrypted:
            if self.verified:
                return Check(name, PASS, ("Checked after decrypting the assertion.",))
            return self.not_reached(
                name,
                "Not shown: the assertion is encrypted and is read only after verification.",
            )
        return None

    # -- the checks, in page order --

    def response(self) -> Check:
        obs = self.observed
        lines: list[str] = []
        if obs is None:
            lines.append("The answer could not be read as XML (empty, not Base64 or not XML).")
            return Check("response", FAIL, (*self._error_line(), *lines))
        if not obs.is_response:
            lines.append("The answer is XML but not a SAML Response.")
            return Check("response", FAIL, (*self._error_line(), *lines))
        status = ", ".join(_status_name(code) for code in obs.status_codes) or "none"
        lines.append(f"Status: {status}.")
        if obs.status_message:
            lines.append(f"IdP message: {shorten(obs.status_message, 300)}")
        if obs.assertion_count:
            kind = "an encrypted assertion" if obs.encrypted else "an assertion"
            lines.append(
                f"The response holds {kind}."
                if obs.assertion_count == 1
                else f"The response holds {obs.assertion_count} assertions (one is allowed)."
            )
        elif obs.success:
            lines.append("The response holds no assertion.")
        refused = self.refused_here("response", lines)
        if refused:
            return refused
        if not obs.success:
            return Check("response", FAIL, ("The IdP did not sign the user in.", *lines))
        return Check("response", PASS, tuple(lines))

    def _error_line(self) -> tuple[str, ...]:
        return (f"Refused: {self.reason()}",) if self.error is not None else ()

    def issuer(self) -> Check:
        obs = self.observed
        want = self.expected.idp_entity_id
        lines = [f"Expected: {shorten(want)}"]
        if obs is None or not obs.is_response:
            return self.refused_here("issuer", lines) or self.not_reached("issuer")
        wrong = []
        if obs.issuer is not None:
            lines.append(f"Response issuer: {shorten(obs.issuer)}")
            if obs.issuer != want or obs.issuer_format not in (None, _ENTITY_FORMAT):
                wrong.append("response")
        if obs.assertion_readable:
            lines.append(f"Assertion issuer: {shorten(obs.assertion_issuer or '(none)')}")
            if obs.assertion_issuer != want or obs.assertion_issuer_format not in (
                None,
                _ENTITY_FORMAT,
            ):
                wrong.append("assertion")
        elif obs.encrypted:
            lines.append("Assertion issuer: inside the encrypted assertion.")
        refused = self.refused_here("issuer", lines)
        if refused:
            return refused
        if wrong:
            return Check("issuer", FAIL, (f"The {' and '.join(wrong)} issuer differs.", *lines))
        if obs.issuer is None and not obs.assertion_readable:
            return self.not_reached("issuer", "Not evaluated: the response names no issuer.")
        return Check("issuer", PASS, tuple(lines))

    def in_response_to(self) -> Check:
        obs = self.observed
        want = self.expected.request_id
        lines: list[str] = []
        if want:
            lines.append(f"This test's request: {shorten(want)}")
        if obs is None or not obs.is_response:
            return self.refused_here("in_response_to", lines) or self.not_reached("in_response_to")
        got = obs.in_response_to
        lines.append(
            f"Response InResponseTo: {shorten(got)}"
            if got
            else "Response InResponseTo: none (sign-in started at the IdP)."
        )
        inconsistent = obs.assertion_readable and any(
            c.method == BEARER and c.in_response_to not in (None, got) for c in obs.confirmations
        )
        if inconsistent:
            lines.append("The assertion's SubjectConfirmationData names another request.")
        refused = self.refused_here("in_response_to", lines)
        if refused:
            return refused
        if inconsistent or (want and got and got != want):
            return Check("in_response_to", FAIL, ("The answer is for another request.", *lines))
        if want and not got:
            return Check(
                "in_response_to",
                WARN,
                ("The answer does not refer to this test (IdP-initiated).", *lines),
            )
        return Check("in_response_to", PASS, tuple(lines))

    def signature(self) -> Check:
        """Verification outcome; its detail never depends on which crypto check failed."""
        config = self._configured_certs()
        if self.failed == "signature":
            return Check("signature", FAIL, (UNVERIFIABLE_TEXT, *config))
        if not self.verified:
            return Check("signature", SKIP, (*self.not_reached("signature").detail, *config))
        obs = self.observed
        lines = ["Verified with the configured certificate."]
        if obs is not None:
            for seen in obs.signatures:
                lines.append(f"Signed: the {seen.element.lower()} ({_algorithms(seen)}).")
            if obs.encrypted and not obs.assertion_signed:
                lines.append("The assertion's own signature was checked after decryption.")
        used = self._used_cert()
        if used is not None:
            lines.append(f"Certificate used: {used.summary}.")
            lines.extend(
                f"Another configured certificate {c.expiry_words}."
                for c in self.certs
                if c is not used and c.days_left < EXPIRY_WARNING_DAYS
            )
        else:
            lines.extend(config)
        if self.expiring():
            return Check("signature", WARN, tuple(lines))
        return Check("signature", PASS, tuple(lines))

    def expiring(self) -> list[_CertInfo]:
        """The certificates to warn about: the one the IdP signs with, when it can be told
        (an old one left in rotated metadata is no news), else any configured one."""
        used = self._used_cert()
        candidates = [used] if used is not None else self.certs
        return [c for c in candidates if c.days_left < EXPIRY_WARNING_DAYS]

    def _configured_certs(self) -> list[str]:
        if not self.certs:
            return ["Configured certificate: none."]
        return [f"Configured certificate: {c.summary}." for c in self.certs]

    def _used_cert(self) -> _CertInfo | None:
        """The configured certificate the IdP signed with, when it can be told."""
        if len(self.certs) == 1:
            return self.certs[0]
        named = self._key_info_certs()
        for cert in self.certs:
            if cert.der in named:
                return cert
        return None

    def _key_info_certs(self) -> set[bytes]:
        obs = self.observed
        found = set()
        for seen in obs.signatures if obs is not None else ():
            der = _der(seen.certificate)
            if der is not None:
                found.add(der)
        return found

    def signed_elements(self) -> Check:
        """Which parts the message signs, how, and naming which certificate: message facts only."""
        exp = self.expected
        obs = self.observed
        wanted = [
            part
            for part, on in (
                ("the assertion", exp.want_assertions_signed),
                ("the response", exp.want_response_signed),
            )
            if on
        ]
        lines = [f"This site requires a signature on {' and '.join(wanted) or 'either part'}."]
        if obs is None or not obs.is_response:
            return self.not_reached("signed_elements")
        if not obs.signatures and not obs.assertion_count:
            return self.not_reached(
                "signed_elements", "Not evaluated: the response holds no assertion."
            )
        problems: list[str] = []
        lines.append(
            "Response signed: "
            + (_signed_words(obs, "Response") if obs.response_signed else "no")
            + "."
        )
        if obs.encrypted:
            lines.append("Assertion signed: not visible (the assertion is encrypted).")
        else:
            lines.append(
                "Assertion signed: "
                + (_signed_words(obs, "Assertion") if obs.assertion_signed else "no")
                + "."
            )
        if exp.want_response_signed and not obs.response_signed:
            problems.append("The response is not signed.")
        if exp.want_assertions_signed and not obs.assertion_signed and not obs.encrypted:
            problems.append("The assertion is not signed.")
        if not obs.signatures and not obs.encrypted:
            problems.append("Nothing in the answer is signed.")
        self.unsigned = bool(problems)
        for seen in obs.signatures:
            allowed_sig = signature_methods(exp.reject_sha1)
            allowed_digest = digest_methods(exp.reject_sha1)
            if seen.algorithm not in allowed_sig or seen.digest not in allowed_digest:
                self.bad_algorithm = True
                problems.append(
                    f"The {seen.element.lower()} is signed with an algorithm this site does "
                    f"not accept ({_algorithms(seen)})."
                )
        result = FAIL if problems else PASS
        named = self._key_info_certs()
        configured = {c.der for c in self.certs}
        if named:
            if named <= configured:
                lines.append("Certificate named in the signature: the configured one.")
            else:
                other = [_describe_der(d, self.now) for d in named - configured]
                lines.append(
                    "Certificate named in the signature: a different one ("
                    + "; ".join(other)
                    + "). The IdP may sign with a new or another application's certificate."
                )
                self.other_cert = True
                result = result if problems else WARN
        elif obs.signatures:
            lines.append("Certificate named in the signature: none (the configured one is used).")
        return Check("signed_elements", result, (*problems, *lines))

    def _acs_urls(self) -> tuple[str, ...]:
        return self.expected.acs_urls or (self.expected.acs_url,)

    def destination(self) -> Check:
        obs = self.observed
        want = self.expected.acs_url
        lines = [f"Expected: {shorten(want)}"]
        if obs is None or not obs.is_response:
            return self.refused_here("destination", lines) or self.not_reached("destination")
        rule = destination_rule(self._acs_urls(), obs.destination, obs.response_signed)
        lines.extend(f"Received: {shorten(got) if got else '(none)'}" for got in rule.received)
        refused = self.refused_here("destination", lines)
        if refused:
            return refused
        if not rule.passed:
            return Check("destination", FAIL, ("The response is addressed elsewhere.", *lines))
        if obs.destination is None:
            lines.append("An unsigned Response may leave it out: the Recipient is checked.")
        return Check("destination", PASS, tuple(lines))

    def recipient(self) -> Check:
        want = self.expected.acs_url
        lines = [f"Expected: {shorten(want)}"]
        blocked = self.unreadable("recipient")
        if blocked is not None:
            return self.refused_here("recipient", lines) or blocked
        obs = self.observed
        assert obs is not None
        rule = recipient_rule(self._acs_urls(), obs.confirmations)
        lines.extend(f"Received: {shorten(got) if got else '(none)'}" for got in rule.received)
        if not rule.received:
            lines.append("Received: no bearer SubjectConfirmation.")
        for conf in obs.confirmations:
            if conf.method != BEARER:
                lines.append(f"Ignored confirmation method: {shorten(conf.method or '(none)')}")
        refused = self.refused_here("recipient", lines)
        if refused:
            return refused
        if not rule.passed:
            return Check("recipient", FAIL, ("The assertion is meant for another address.", *lines))
        return Check("recipient", PASS, tuple(lines))

    def audience(self) -> Check:
        want = self.expected.sp_entity_id
        lines = [f"Expected: {shorten(want)}"]
        blocked = self.unreadable("audience")
        if blocked is not None:
            return self.refused_here("audience", lines) or blocked
        obs = self.observed
        assert obs is not None
        rule = audience_rule(want, obs.audiences)
        for restriction in obs.audiences:
            lines.append("Received: " + (", ".join(shorten(a) for a in restriction) or "(none)"))
        if not obs.audiences:
            lines.append("Received: no audience restriction.")
        refused = self.refused_here("audience", lines)
        if refused:
            return refused
        if not rule.passed:
            return Check("audience", FAIL, ("The assertion is meant for another site.", *lines))
        return Check("audience", PASS, tuple(lines))

    def time(self) -> Check:
        exp = self.expected
        obs = self.observed
        skew = exp.clock_skew_seconds
        lines = [f"Server time: {when_text(self.now)}; allowed clock skew: {skew} s."]
        if obs is None or not obs.is_response:
            return self.refused_here("time", lines) or self.not_reached("time")
        problems: list[str] = []

        def instant(label: str, value: str | None) -> float | None:
            try:
                stamp = saml_instant(value)
            except SAMLError:
                problems.append(f"{label} is not a valid time ({shorten(value or '', 40)}).")
                return None
            if stamp is not None:
                lines.append(f"{label}: {when_text(stamp)} ({_delta(stamp - self.now)}).")
            return stamp

        issued = instant("Response IssueInstant", obs.issue_instant)
        if issued is not None:
            self.clock_offset = issued - self.now
        stamps = [("response", issued)]
        if obs.assertion_readable:
            stamps.append(
                ("assertion", instant("Assertion IssueInstant", obs.assertion_issue_instant))
            )
            not_before = instant("Conditions NotBefore", obs.not_before)
            not_after = instant("Conditions NotOnOrAfter", obs.not_on_or_after)
            if not_before is not None and not_yet_valid(not_before, self.now, skew):
                problems.append(
                    f"Not valid yet: it starts {_seconds(not_before - self.now)} after the "
                    f"server's time (more than the allowed {skew} s)."
                )
            if not_after is not None and has_expired(not_after, self.now, skew):
                problems.append(
                    f"Expired {_seconds(self.now - not_after)} before the server's time."
                )
            for conf in obs.confirmations:
                if conf.method != BEARER:
                    continue
                scd = instant("SubjectConfirmationData NotOnOrAfter", conf.not_on_or_after)
                if scd is not None and has_expired(scd, self.now, skew):
                    problems.append(
                        f"The confirmation expired {_seconds(self.now - scd)} before the "
                        "server's time."
                    )
        for what, stamp in stamps:
            if stamp is None:
                continue
            if issued_in_future(stamp, self.now, skew):
                problems.append(
                    f"The {what} was issued {_seconds(stamp - self.now)} in the future "
                    f"(more than the allowed {skew} s)."
                )
            elif issued_too_long_ago(stamp, self.now, skew):
                problems.append(
                    f"The {what} was issued {_seconds(self.now - stamp)} ago "
                    f"(at most {MAX_RESPONSE_AGE_SECONDS} s is accepted)."
                )
        if obs.encrypted:
            lines.append("The assertion's own times are inside the encrypted assertion.")
        refused = self.refused_here("time", problems + lines)
        if refused:
            return refused
        if problems:
            return Check("time", FAIL, (*problems, *lines))
        if issued is None and not obs.assertion_readable:
            return self.not_reached("time", "Not evaluated: the response carries no times.")
        return Check("time", PASS, tuple(lines))

    def name_id(self) -> Check:
        lines: list[str] = []
        if self.expected.name_id_format:
            lines.append(f"This site asks for: {shorten(self.expected.name_id_format)}")
        blocked = self.unreadable("name_id")
        if blocked is not None:
            return self.refused_here("name_id", lines) or blocked
        obs = self.observed
        assert obs is not None
        lines.append(f"Received format: {shorten(obs.name_id_format or '(unspecified)')}")
        if self.user is not None:
            lines.append("The NameID value is shown under “The user who would sign in” below.")
        refused = self.refused_here("name_id", lines)
        if refused:
            return refused
        if not obs.name_id_present:
            return Check("name_id", FAIL, ("The assertion names no user (no NameID).", *lines))
        return Check("name_id", PASS, tuple(lines))

    def roles(self) -> Check:
        exp = self.expected
        claims = exp.role_claims
        lines = [
            f"Expected claim{'s' if len(claims) != 1 else ''}: " + (", ".join(claims) or "(none)")
        ]
        user = self.user
        if user is None:
            return self.refused_here("roles", lines) or Check(
                "roles",
                SKIP,
                (*self.not_reached("roles").detail, *lines),
            )
        present = [c for c in claims if c in user.attributes]
        values = self.role_values or tuple(
            dict.fromkeys(v for c in claims for v in user.attributes.get(c, ()))
        )
        mapped, unmapped = [], []
        for value in values[:MAX_VALUES]:
            key = value.casefold() if exp.roles_case_insensitive else value
            roles = exp.role_map.get(key)
            if roles:
                mapped.append(f"{shorten(value, 80)} → {', '.join(shorten(r, 80) for r in roles)}")
            else:
                unmapped.append(shorten(value, 80))
        lines.append(
            "Present in the answer: " + (", ".join(present) if present else "no role claim")
        )
        if mapped:
            lines.append("Mapped: " + "; ".join(mapped))
        if unmapped:
            lines.append("Not mapped: " + ", ".join(unmapped))
        if user.groups_overage:
            lines.append(
                "Group overage: Entra sent a groups.link instead of the groups "
                "(the user is in too many groups)."
            )
        refused = self.refused_here("roles", lines)
        if refused:
            return refused
        if not claims or not exp.role_map:
            return Check("roles", PASS, ("No role mapping is configured.", *lines))
        if not present:
            self.no_role_claim = True
            return Check("roles", WARN, ("The answer carries no role claim.", *lines))
        if not mapped or user.groups_overage:
            return Check("roles", WARN, ("No value received is mapped to an app role.", *lines))
        return Check("roles", PASS, tuple(lines))

    def required_role(self) -> Check:
        lines = ["Only users with a mapped role may sign in (roles.require_mapped_role)."]
        refused = self.refused_here("required_role", lines)
        if refused:
            return refused
        if self.user is None:
            return Check("required_role", SKIP, (*self.not_reached("required_role").detail, *lines))
        return Check("required_role", PASS, ("The user has a mapped role.", *lines))

    def provision(self) -> Check:
        return self.refused_here("provision", []) or self.not_reached("provision")


# -- certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class _CertInfo:
    der: bytes
    subject: str
    thumbprint: str  # SHA-1, upper-case hex: what Entra shows as "Thumbprint"
    not_after: datetime | None
    days_left: float

    @property
    def expiry_words(self) -> str:
        if self.not_after is None:
            return "has an unknown expiry"
        date = self.not_after.strftime("%Y-%m-%d")
        if self.days_left < 0:
            return f"expired on {date}"
        return f"expires on {date} (in {int(self.days_left)} days)"

    @property
    def summary(self) -> str:
        return f"{self.subject}, thumbprint {self.thumbprint}, {self.expiry_words}"


def _der(body: str | None) -> bytes | None:
    if not body:
        return None
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _describe_cert(body: str, not_after: datetime | None, now: float) -> _CertInfo:
    der = _der(body) or b""
    info = _describe_der_info(der, now)
    if not_after is not None:  # the metadata's reading wins: the same source as the engine's
        days = (not_after.timestamp() - now) / 86400
        info = _CertInfo(info.der, info.subject, info.thumbprint, not_after, days)
    return info


def _describe_der_info(der: bytes, now: float) -> _CertInfo:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return _CertInfo(der, "(unreadable certificate)", thumbprint(der), None, float("inf"))
    standing = certificate_standing(cert, datetime.fromtimestamp(now, timezone.utc))
    subject = shorten(standing.subject or "(no subject)", 120)
    return _CertInfo(der, subject, standing.thumbprint, standing.not_after, standing.days_left)


def _describe_der(der: bytes, now: float) -> str:
    return _describe_der_info(der, now).summary


def _pad(values: Sequence[datetime], length: int) -> list[datetime | None]:
    padded: list[datetime | None] = list(values[:length])
    return padded + [None] * (length - len(padded))


# -- words -----------------------------------------------------------------------------


def shorten(text: str | None, limit: int = _MAX_TEXT) -> str:
    """At most `limit` characters, control characters shown as spaces."""
    if text is None:
        return ""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _status_name(code: str) -> str:
    return shorten(code.rsplit(":", 1)[-1] or code or "(empty)", 80)


def _algorithms(seen: SignatureSeen) -> str:
    return f"{_algorithm_name(seen.algorithm)}, digest {_algorithm_name(seen.digest)}"


def _algorithm_name(uri: str | None) -> str:
    if not uri:
        return "none"
    return ALGORITHM_NAMES.get(uri, shorten(uri, 100))


def _signed_words(obs: Observed, element: str) -> str:
    seen = [s for s in obs.signatures if s.element == element]
    return "yes (" + "; ".join(_algorithms(s) for s in seen) + ")"


def when_text(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float) -> str:
    seconds = int(round(abs(value)))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _delta(offset: float) -> str:
    if abs(offset) < 1:
        return "same as the server's time"
    return f"{_seconds(offset)} {'after' if offset > 0 else 'before'} the server's time"


def _verdict(ctx: _Context, checks: list[Check], result: str) -> str:
    warnings = [c for c in checks if c.result == WARN]
    if result == PASS:
        user = ctx.user
        who = f" for {shorten(user.display_name or user.name_id, 80)}" if user else ""
        roles = (
            f", with the role{'s' if len(user.roles) != 1 else ''} {', '.join(user.roles)}"
            if user is not None and user.roles
            else (", with no app role" if user is not None else "")
        )
        extra = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""
        return f"Test passed: sign-in would succeed{who}{roles}{extra}."
    if ctx.error is not None:
        title = CHECK_TITLES.get(ctx.failed or "response", "response")
        return f"Test failed: sign-in would be refused at the “{title}” check: {ctx.reason()}"
    failed = [c.title for c in checks if c.result == FAIL]
    return "Test failed: " + ", ".join(failed) + "."


# -- what to fix -----------------------------------------------------------------------


def _fixes(ctx: _Context, checks: list[Check]) -> list[Fix]:
    exp = ctx.expected
    results = {c.name: c.result for c in checks}
    fixes: list[Fix] = []

    def add(key: str, text: str) -> None:
        if all(f.key != key for f in fixes):
            fixes.append(Fix(key, text))

    obs = ctx.observed
    if results.get("response") == FAIL and obs is not None and obs.is_response and not obs.success:
        message = f" It said: “{shorten(obs.status_message, 300)}”." if obs.status_message else ""
        add(
            "idp_status",
            "The IdP refused the sign-in." + message + " With Microsoft Entra ID, the AADSTS code "
            "in the message names the cause (AADSTS50105: the user is not assigned to the "
            "application: Enterprise applications > Users and groups).",
        )
    if results.get("issuer") == FAIL:
        received = (obs.issuer or obs.assertion_issuer) if obs is not None else None
        add(
            "issuer",
            f"The answer comes from “{shorten(received or '(unknown)')}”, but this site expects "
            f"“{shorten(exp.idp_entity_id)}”: the IdP metadata configured here probably belongs to "
            "another application or tenant. Use this application's App Federation Metadata Url "
            "(or its Microsoft Entra Identifier and certificate).",
        )
    if results.get("in_response_to") == FAIL:
        add(
            "restart",
            "The answer does not belong to this test or was already used: press Test SSO again "
            "(do not reuse an old tab or the Back button).",
        )
    if ctx.unsigned:
        option = (
            "Sign SAML response and assertion"
            if exp.want_response_signed
            else ("Sign SAML assertion")
        )
        add(
            "signing_option",
            f"In Microsoft Entra ID, SAML Certificates > Signing option: choose “{option}”.",
        )
    if ctx.bad_algorithm:
        add(
            "algorithm",
            "In Microsoft Entra ID, SAML Certificates > Signing algorithm: choose SHA-256.",
        )
    if ctx.other_cert:
        add(
            "certificate",
            "The IdP signs with another certificate than the one configured here (new or "
            "rotated, or another application's). In Microsoft Entra ID, SAML Certificates: "
            "download Certificate (Base64) again and paste it here, or use the App "
            "Federation Metadata Url.",
        )
    if results.get("signature") == FAIL:
        add(
            "certificate",
            "Check the IdP signing certificate configured here: it may be wrong or rotated. In "
            "Microsoft Entra ID, SAML Certificates: download Certificate (Base64) again and "
            "paste it here, or configure the App Federation Metadata Url so that new "
            "certificates apply by themselves. If the assertion is encrypted, check this "
            "site's encryption certificate in Entra (Token encryption).",
        )
    if results.get("destination") == FAIL or results.get("recipient") == FAIL:
        add(
            "reply_url",
            "In Microsoft Entra ID, Basic SAML Configuration > Reply URL (Assertion Consumer "
            f"Service URL) must be {exp.acs_url}",
        )
    if results.get("audience") == FAIL:
        add(
            "identifier",
            "In Microsoft Entra ID, Basic SAML Configuration > Identifier (Entity ID) must be "
            f"{exp.sp_entity_id}",
        )
    if results.get("time") == FAIL:
        add("clock", _clock_hint(ctx.clock_offset, exp.clock_skew_seconds))
    if results.get("name_id") == FAIL:
        add(
            "name_id",
            "In Microsoft Entra ID, Attributes & Claims > Unique User Identifier (Name ID): set "
            "it, e.g. to user.userprincipalname.",
        )
    if results.get("roles") in (FAIL, WARN) and exp.role_claims:
        names = " or ".join(exp.role_claims)
        if ctx.no_role_claim:
            add(
                "role_claim",
                f"The answer has no role claim. In Microsoft Entra ID, add an app role (App "
                f"registrations > App roles) and assign it to users, or add a group claim "
                f"(Attributes & Claims > Add a group claim), named {names}.",
            )
        elif ctx.user is not None and ctx.user.groups_overage:
            add(
                "groups_overage",
                "The user is in too many groups for Entra to send them (group overage): emit "
                "app roles instead, or limit the group claim to groups assigned to the "
                "application.",
            )
        else:
            add(
                "role_map",
                "None of the role values received is mapped: add them to this site's role "
                "mapping (roles.map), or assign the user a role that is mapped.",
            )
    if results.get("required_role") == FAIL:
        add(
            "role_assignment",
            "This site admits only users with a mapped role: in Microsoft Entra ID, "
            "Enterprise applications > Users and groups, assign the user an app role (or a "
            "group) that is mapped here.",
        )
    if ctx.expiring():
        add(
            "certificate_expiry",
            "The IdP signing certificate expires soon: in Microsoft Entra ID, SAML "
            "Certificates, create a new certificate and make it active, then configure it here "
            "(with the App Federation Metadata Url this happens by itself).",
        )
    return fixes


def _clock_hint(offset: float | None, skew: int) -> str:
    """Which clock is off and by how much, as far as the IssueInstant tells."""
    again = " Then press Test SSO again: an answer is valid for a few minutes only."
    if offset is None or abs(offset) <= skew:
        return (
            "The answer's validity period does not include this server's time: check that "
            "this server's clock is right (NTP)." + again
        )
    if offset > 0:
        return (
            f"The IdP's clock is about {_seconds(offset)} ahead of this server's clock "
            f"(allowed difference: {skew} s): synchronise this server's clock (NTP)." + again
        )
    return (
        f"This server's clock is about {_seconds(offset)} ahead of the IdP's clock (allowed "
        f"difference: {skew} s), or the answer was held back that long (an old browser tab "
        "or a replayed form): synchronise this server's clock (NTP)." + again
    )
