"""The Test SSO page: the report as HTML, every interpolated value escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from ..identity import SAMLUser
from .report import FAIL, MAX_VALUES, PASS, SKIP, WARN, TestReport, shorten, when_text

if TYPE_CHECKING:
    pass


# -- the page --------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}"
    "code{background:#f3f3f3;padding:0 .2rem;word-break:break-all}"
    "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:.4rem;"
    "text-align:left;vertical-align:top}td{overflow-wrap:anywhere}"
    "tr[data-result=pass] .result{color:#16794a}tr[data-result=fail] .result{color:#b3261e;"
    "font-weight:bold}tr[data-result=warn] .result{color:#9a6700;font-weight:bold}"
    "tr[data-result=skip] .result{color:#777}"
    "#summary{padding:.6rem 1rem;border-radius:.4rem}"
    "#summary[data-result=pass]{background:#e7f5ec}#summary[data-result=fail]{background:#fbe9e7}"
    "dt{font-weight:bold}dd{margin:0 0 .4rem 1rem;overflow-wrap:anywhere}"
)

_RESULT_WORDS = {PASS: "pass", FAIL: "FAIL", SKIP: "skipped", WARN: "warning"}


def render_report(report: TestReport) -> bytes:
    """The complete diagnostics page (UTF-8 HTML); every interpolated value is escaped."""
    exp = report.expected
    title = "Test SSO: passed" if report.result == PASS else "Test SSO: failed"
    parts = [f"<h1>{escape(title)}</h1>", _summary(report)]
    rows = "".join(
        f"<tr data-check='{escape(c.name)}' data-result='{escape(c.result)}'>"
        f"<td>{escape(c.title)}</td><td class=result>{escape(_RESULT_WORDS[c.result])}</td>"
        f"<td>{'<br>'.join(escape(line) for line in c.detail)}</td></tr>"
        for c in report.checks
    )
    parts.append(
        "<section id=checks-section><h2>Checks</h2><table id=checks>"
        "<thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )
    fixes = "".join(f"<li data-fix='{escape(f.key)}'>{escape(f.text)}</li>" for f in report.fixes)
    parts.append(
        "<section id=fixes><h2>What to fix</h2>"
        + (f"<ul>{fixes}</ul>" if fixes else "<p>Nothing to fix.</p>")
        + "</section>"
    )
    if report.user is not None:
        parts.append(_user_section(report.user))
        parts.append(_attributes_section(report.attributes))
    parts.append(
        "<section id=settings><h2>This site's SAML settings (to paste in the IdP)</h2><dl>"
        f"<dt>Identifier (Entity ID)</dt><dd><code>{escape(exp.sp_entity_id)}</code></dd>"
        f"<dt>Reply URL (Assertion Consumer Service URL)</dt>"
        f"<dd><code>{escape(exp.acs_url)}</code></dd>"
        f"<dt>Expected IdP (issuer)</dt><dd><code>{escape(exp.idp_entity_id)}</code></dd>"
        "</dl></section>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width'><meta name=robots content=noindex>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    ).encode()


def _summary(report: TestReport) -> str:
    exp = report.expected
    lines = [f"<p id=verdict><strong>{escape(report.verdict)}</strong></p>"]
    if exp.tenant:
        name = f"{exp.tenant_name} ({exp.tenant})" if exp.tenant_name else exp.tenant
        lines.append(f"<p>Organization tested: <strong>{escape(shorten(name))}</strong></p>")
    lines.append(
        "<p id=no-session>This was a test: no session was created and nobody was signed in.</p>"
    )
    lines.append(f"<p>Tested at {escape(when_text(report.now))}.</p>")
    return f"<section id=summary data-result='{escape(report.result)}'>{''.join(lines)}</section>"


def _user_section(user: SAMLUser) -> str:
    fields = [
        ("NameID", user.name_id),
        ("NameID format", user.name_id_format),
        ("User ID", user.user_id),
        ("Email", user.email),
        ("First name", user.first_name),
        ("Last name", user.last_name),
        ("Display name", user.display_name),
    ]
    items = "".join(
        f"<dt>{escape(label)}</dt><dd data-field='{escape(label)}'>"
        f"{escape(shorten(value)) if value else '<em>(none)</em>'}</dd>"
        for label, value in fields
    )
    roles = "".join(f"<li>{escape(shorten(role, 100))}</li>" for role in user.roles)
    overage = (
        "<p id=groups-overage>Group overage: the IdP did not send this user's groups "
        "(too many groups).</p>"
        if user.groups_overage
        else ""
    )
    return (
        "<section id=user><h2>The user who would sign in</h2>"
        f"<dl>{items}</dl><h3>App roles</h3><ul id=roles>{roles}</ul>"
        + ("" if user.roles else "<p>No app role.</p>")
        + overage
        + "</section>"
    )


def _attributes_section(attributes: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    rows = []
    for name, values in attributes:
        shown = [escape(shorten(v)) for v in values[:MAX_VALUES]]
        if len(values) > MAX_VALUES:
            shown.append(escape(f"… and {len(values) - MAX_VALUES} more"))
        rows.append(
            f"<tr data-claim='{escape(shorten(name, 300))}'><td>{escape(shorten(name, 300))}</td>"
            f"<td>{'<br>'.join(shown)}</td></tr>"
        )
    return (
        "<section id=attributes-section><h2>Attributes received</h2><table id=attributes>"
        "<thead><tr><th>Claim</th><th>Values</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )
