"""`saml-middleware diagnose`: Test SSO's checks and the ACS's verdict on a captured
Response, offline, as a table or as JSON.

The verdict itself comes from `Engine.diagnose` (the ACS's own verification, user
mapping and required-role check, then `build_report`); this module only reads
what an admin pasted (`response_value`), the `--at` instant (`parse_instant`),
and shows the outcome (`Diagnosis.to_json`, `render_text`). Unlike the Test SSO
page, the real refusal code and reason are shown: whoever runs the command holds
the settings, so there is no oracle to avoid.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote

from ..errors import SAMLError
from ..saml.times import saml_instant
from .observe import Observed
from .report import (
    BEARER,
    FAIL,
    WARN,
    Check,
    Expected,
    TestReport,
    _algorithms,
    _der,
    _describe_der_info,
    _status_name,
    shorten,
    when_text,
)

# Table cells are cut to this many characters (the JSON keeps the full values).
_CELL = 48


@dataclass(frozen=True)
class Diagnosis:
    """One captured Response judged as the ACS judges it: the report, the refusal, the facts."""

    report: TestReport
    error: SAMLError | None  # the ACS's first refusal; None: the user would sign in
    observed: Observed | None  # what the Response says (None: not a readable XML message)

    @property
    def would_sign_in(self) -> bool:
        return self.error is None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per check: name, title, result, expected, received, detail lines."""
        return [
            {
                "name": check.name,
                "title": check.title,
                "result": check.result,
                **_expected_received(check, self.report, self.observed),
                "detail": list(check.detail),
            }
            for check in self.report.checks
        ]

    def to_json(self) -> dict[str, Any]:
        """The `--json` object (the documented shape)."""
        user = self.report.user
        return {
            "would_sign_in": self.would_sign_in,
            "refusal": (
                None
                if self.error is None
                else {"code": self.error.code, "reason": self.error.reason}
            ),
            "checks": self.rows(),
            # Also with a refusal raised after the mapping (required role): what it mapped to.
            "user": user.to_dict() if user is not None else None,
            "at": datetime.fromtimestamp(self.report.now, timezone.utc).isoformat(),
            "fixes": [fix.text for fix in self.report.fixes],
        }


# -- input ------------------------------------------------------------------------------


def response_value(data: bytes) -> str:
    """The SAMLResponse form value (Base64) from what an admin captured.

    Accepted: the Base64 a browser SAML tracer shows (line breaks allowed), the
    URL-encoded form value or the whole form body (`SAMLResponse=...&RelayState=...`),
    or the Response XML itself. XML is Base64-encoded as the IdP's form would carry
    it, so every form goes through the ACS's own decoding and size limit.
    """
    stripped = data.lstrip(b" \t\r\n")
    if stripped.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"<":
        return base64.b64encode(stripped).decode("ascii")
    text = data.decode("ascii", errors="replace").strip()
    if "SAMLResponse=" in text:
        values = parse_qs(text, keep_blank_values=True, max_num_fields=16).get("SAMLResponse")
        return values[0] if values else ""
    if "%" in text:  # no Base64 character is a '%': a URL-encoded value
        return unquote(text)
    return text


def parse_instant(text: str) -> float:
    """`--at`: an ISO 8601 time (`2024-04-25T20:31:55Z`, an offset, or UTC when none).

    Raises ValueError with a short reason.
    """
    value = text.strip()
    try:
        stamp = saml_instant(value)  # the form IdPs write (any fraction of a second)
    except SAMLError:
        stamp = None
    if stamp is not None:
        return stamp
    try:
        moment = datetime.fromisoformat(value.removesuffix("Z").removesuffix("z"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value[:60]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# -- output -----------------------------------------------------------------------------


def render_text(diagnosis: Diagnosis) -> str:
    """The readable report: the table of checks, the details of what did not pass, the
    fixes, the user, and the verdict on the last line."""
    report = diagnosis.report
    rows = diagnosis.rows()
    exp = report.expected
    lines = [
        f"Diagnosis at {when_text(report.now)}"
        + (f" for organization {exp.tenant}" if exp.tenant else ""),
        "",
    ]
    table = [("Check", "Result", "Expected", "Received")] + [
        (
            row["title"],
            row["result"].upper(),
            _cell(row["expected"]),
            _cell(row["received"]),
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    troubled = [c for c in report.checks if c.result in (FAIL, WARN)]
    if troubled:
        lines += ["", "Details:"]
        for check in troubled:
            lines.append(f"  {check.title} ({check.result}):")
            lines += [f"    {line}" for line in check.detail]
    if report.fixes:
        lines += ["", "What to fix:"]
        lines += [f"  - {fix.text}" for fix in report.fixes]
    user = report.user
    if user is not None:
        signs_in = diagnosis.error is None
        lines += ["", "The user who would sign in:" if signs_in else "The user it maps to:"]
        for label, value in (
            ("NameID", user.name_id),
            ("NameID format", user.name_id_format),
            ("user_id", user.user_id),
            ("email", user.email),
            ("display_name", user.display_name),
            ("roles", ", ".join(user.roles) or "(none)"),
        ):
            if value:
                lines.append(f"  {label}: {shorten(value)}")
        for name, values in report.attributes:
            lines.append(f"  {shorten(name, 80)}: {shorten(', '.join(values))}")
    lines.append("")
    if diagnosis.error is None:
        lines.append("Verdict: WOULD SIGN IN")
    else:
        lines.append(
            f"Verdict: WOULD NOT SIGN IN: {diagnosis.error.code}: "
            f"{shorten(diagnosis.error.reason, 300)}"
        )
    return "\n".join(lines) + "\n"


def _cell(value: str | None) -> str:
    if value is None:
        return "-"
    return value if len(value) <= _CELL else value[: _CELL - 1] + "…"


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) if values else None


def _thumbprint(body: str | None, now: float) -> str | None:
    """The SHA-1 thumbprint (what IdP consoles show) of a Base64 DER certificate."""
    der = _der(body)
    return _describe_der_info(der, now).thumbprint if der else None


def _expected_received(
    check: Check, report: TestReport, obs: Observed | None
) -> dict[str, str | None]:
    """The two values a check compares, as short strings (None: nothing to show)."""
    exp: Expected = report.expected
    name = check.name
    expected: str | None = None
    received: str | None = None
    readable = obs is not None and obs.is_response
    if name == "response":
        expected = "Success"
        if readable:
            assert obs is not None
            received = _joined([_status_name(code) for code in obs.status_codes])
    elif name == "issuer":
        expected = exp.idp_entity_id
        if readable:
            assert obs is not None
            received = obs.issuer
            if obs.assertion_readable and obs.assertion_issuer != obs.issuer:
                received = f"{obs.issuer} (assertion: {obs.assertion_issuer})"
    elif name == "in_response_to":
        expected = exp.request_id
        received = obs.in_response_to if readable and obs is not None else None
    elif name == "signature":
        now = report.now
        expected = _joined([t for c in exp.signing_certs if (t := _thumbprint(c, now))])
        if readable and obs is not None:
            named = {t for s in obs.signatures if (t := _thumbprint(s.certificate, now))}
            received = _joined(sorted(named))
    elif name == "signed_elements":
        wanted = [
            part
            for part, on in (
                ("Assertion", exp.want_assertions_signed),
                ("Response", exp.want_response_signed),
            )
            if on
        ]
        expected = _joined(wanted) or "Assertion or Response"
        if readable and obs is not None:
            parts = [f"{s.element} ({_algorithms(s)})" for s in obs.signatures]
            if obs.encrypted:
                parts.append("Assertion (encrypted)")
            received = _joined(parts) or "nothing signed"
    elif name == "destination":
        expected = exp.acs_url
        received = obs.destination if readable and obs is not None else None
    elif name == "recipient":
        expected = exp.acs_url
        if readable and obs is not None:
            received = _joined(
                [c.recipient or "(none)" for c in obs.confirmations if c.method == BEARER]
            )
    elif name == "audience":
        expected = exp.sp_entity_id
        if readable and obs is not None:
            received = _joined([a for restriction in obs.audiences for a in restriction])
    elif name == "time":
        expected = f"{when_text(report.now)} ± {exp.clock_skew_seconds} s"
        if readable and obs is not None:
            window = ""
            if obs.not_before or obs.not_on_or_after:
                window = f"; valid {obs.not_before or '…'} to {obs.not_on_or_after or '…'}"
            received = f"issued {obs.issue_instant or '(no IssueInstant)'}{window}"
    elif name == "name_id":
        expected = exp.name_id_format
        received = obs.name_id_format if readable and obs is not None else None
    elif name == "roles":
        expected = _joined(list(exp.role_claims))
        if report.user is not None:
            values = [v for claim in exp.role_claims for v in report.user.attributes.get(claim, ())]
            received = _joined(list(dict.fromkeys(values)))
    elif name == "required_role":
        expected = "a mapped role"
        if report.user is not None:
            received = _joined(list(report.user.roles)) or "(none)"
    return {"expected": expected, "received": received}


__all__ = ["Diagnosis", "parse_instant", "render_text", "response_value"]
