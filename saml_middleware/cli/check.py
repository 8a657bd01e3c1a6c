"""`check`, the step before deploying: the settings, the IdP metadata as the middleware
would read it, what to paste into the IdP, and every problem on one line naming its key."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509

from ..config import Settings
from ..keys import EXPIRY_WARNING_DAYS, certificate_standing
from ..loopback import is_loopback_host
from .common import PROG, _one_line
from .settings_source import _load, _quiet_library_logs, _tenant_settings, _with_inline_idp

_LABEL = 26


@dataclass
class CheckReport:
    """What `check` prints: labelled lines, then one line per problem, then a verdict."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        if self.lines:
            self.lines.append("")
        self.lines.append(title)

    def item(self, label: str, value: str) -> None:
        self.lines.append(f"  {label:<{_LABEL - 2}}{value}")

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"error: {key}: {_one_line(problem)}")

    def warn(self, key: str, problem: str) -> None:
        self.warnings.append(f"warning: {key}: {_one_line(problem)}")

    def render(self) -> str:
        verdict = (
            f"check: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
            if self.errors
            else (
                f"check: OK with {len(self.warnings)} warning(s)" if self.warnings else "check: OK"
            )
        )
        problems = [*self.errors, *self.warnings]
        return "\n".join([*self.lines, "", *problems, verdict]) + "\n"


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CertStatus:
    """A certificate as an admin recognises it in the IdP's portal, and its validity now."""

    common_name: str
    thumbprint: str  # SHA-1, upper-case hex: what Entra shows as "Thumbprint"
    state: Literal["ok", "soon", "expired", "not_yet"]
    when: str
    not_after: dt.datetime

    @property
    def summary(self) -> str:
        return f"CN={self.common_name}, thumbprint {self.thumbprint}, {self.when}"


def cert_status(cert: x509.Certificate, now: dt.datetime, skew: int = 0) -> CertStatus:
    """Where `cert` stands at `now` (keys.certificate_standing), in `check`'s words."""
    standing = certificate_standing(cert, now, skew)
    end = standing.not_after
    if standing.state == "expired":
        when = f"EXPIRED on {_utc(end)}"
    elif standing.state == "not_yet":
        when = f"NOT VALID before {_utc(standing.not_before)}"
    else:
        when = f"expires {_utc(end)} (in {int(standing.days_left)} days)"
    return CertStatus(standing.common_name, standing.thumbprint, standing.state, when, end)


def _check_certificates(
    report: CheckReport, key: str, bodies: Sequence[str], now: dt.datetime, skew: int
) -> None:
    statuses = [
        cert_status(x509.load_der_x509_certificate(base64.b64decode(body)), now, skew)
        for body in bodies
    ]
    usable = any(status.state in ("ok", "soon") for status in statuses)
    for number, status in enumerate(statuses, 1):
        report.item(f"signing certificate {number}", status.summary)
        name = f"signing certificate {number} (thumbprint {status.thumbprint})"
        if status.state == "expired" and usable:
            report.warn(
                key,
                f"{name} has expired; the IdP also publishes a valid one, which it must sign "
                "with (remove the old certificate at the IdP)",
            )
        elif status.state == "expired":
            report.error(
                key,
                f"{name} expired on {_utc(status.not_after)}: logins fail until the "
                "IdP signs with a new certificate (Entra: SAML Certificates > New Certificate, "
                "then make it active)",
            )
        elif status.state == "not_yet":
            report.warn(key, f"{name} is not valid yet")
        elif status.state == "soon":
            report.warn(
                key,
                f"{name} expires in under {EXPIRY_WARNING_DAYS} days: have the IdP publish "
                "and sign with a new one before then (a metadata URL picks it up by itself)",
            )


def _idp_source(settings: Settings) -> tuple[str, str]:
    """(the setting key, where it points) of the IdP description."""
    idp = settings.idp
    assert idp is not None
    if idp.source == "metadata_url":
        assert idp.metadata_url is not None
        return "idp.metadata_url", _without_credentials(idp.metadata_url)
    if idp.source == "metadata_file":
        return "idp.metadata_file", str(idp.metadata_file)
    if idp.source == "metadata_xml":
        return "idp.metadata_xml", "inline XML"
    return "idp.x509cert", "idp.entity_id, idp.sso_url, idp.x509cert"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_sp(report: CheckReport, raw: Mapping[str, Any] | Settings, settings: Settings) -> None:
    base = urlsplit(settings.base_url)
    report.section("Paste into the IdP (Entra: Single sign-on > Basic SAML Configuration):")
    report.item("Identifier (Entity ID)", settings.sp.entity_id)
    report.item("Reply URL (ACS URL)", settings.acs_url)
    for other in settings.acs_urls[1:]:  # paths.acs lists several: each is accepted
        report.item("Also a Reply URL", other)
    report.item("Sign-on URL", settings.endpoint_url("login"))
    command = f"{PROG} metadata" + (f" --tenant {settings.tenant}" if settings.tenant else "")
    report.item("SP metadata", f"{settings.endpoint_url('metadata')} (or: {command})")
    if base.scheme == "http":
        if not is_loopback_host(base.hostname):
            report.warn(
                "base_url",
                "plain http on a non-local host: assertions and session cookies would cross "
                "the network unencrypted, and Entra accepts http Reply URLs only for "
                "localhost; use https",
            )
        if settings.session.https_only:
            report.warn(
                "session.https_only",
                "the session cookie is Secure but base_url is http: browsers may not keep it "
                "(set it to false for local http development only)",
            )
    cert_pem = settings.sp.cert_pem
    if cert_pem:
        sp_raw = raw.get("sp") if isinstance(raw, Mapping) else None
        from_file = isinstance(sp_raw, Mapping) and sp_raw.get("cert_file")
        key = "sp.cert_file" if from_file else "sp.cert_pem"
        now = dt.datetime.now(dt.timezone.utc)
        status = cert_status(x509.load_pem_x509_certificate(cert_pem.encode("ascii")), now)
        signs = "signs AuthnRequests" if settings.sp.sign_authn_requests else "requests unsigned"
        report.item("SP certificate", f"{status.summary}; {signs}")
        if status.state == "expired":
            report.warn(key, f"the SP certificate has expired: make a new one ({PROG} keygen)")
        elif status.state == "soon":
            report.warn(key, f"the SP certificate expires in under {EXPIRY_WARNING_DAYS} days")


def _check_idp(report: CheckReport, settings: Settings) -> Settings | None:
    """Read the IdP description as the middleware would; the settings to build an Engine on."""
    from ..errors import ConfigError
    from ..metadata import IdPMetadata

    key, where = _idp_source(settings)
    report.section(f"IdP ({key}: {where}):")
    assert settings.idp is not None
    try:
        info = IdPMetadata(settings.idp).load()
    except ConfigError as exc:
        report.item("status", "could not be read (see the errors below)")
        report.error(exc.key or key, exc.problem)
        return None
    report.item("entity ID", info.entity_id)
    for label, redirect, post in (
        ("SSO URL", info.sso_redirect_url, info.sso_post_url),
        ("SLO URL", info.slo_redirect_url, info.slo_post_url),
    ):
        if redirect and post and redirect != post:
            report.item(label, f"{redirect} (HTTP-Redirect), {post} (HTTP-POST)")
        elif redirect or post:
            report.item(label, f"{redirect or post}")
        else:
            report.item(label, "none (sign-out ends the local session only)")
    now = dt.datetime.now(dt.timezone.utc)
    _check_certificates(report, key, info.signing_certs, now, settings.security.clock_skew_seconds)
    return _with_inline_idp(settings, info.xml)


def _check_identity(report: CheckReport, settings: Settings) -> None:
    from ..claims import PRESETS

    attrs, roles = settings.attributes, settings.roles
    report.section("Users:")
    preset = dict(PRESETS[attrs.preset]) if attrs.preset else {}
    changed = [
        f"{name} <- {' or '.join(claims)}"
        for name, claims in attrs.fields.items()
        if preset.get(name) != claims
    ]
    described = f"preset {attrs.preset}" if attrs.preset else "no preset"
    report.item("attributes", "; ".join([described, *changed]))
    report.item("role claim", ", ".join(roles.attributes) or "none")
    mapping = "; ".join(f"{idp} -> {', '.join(app)}" for idp, app in roles.map.items())
    report.item("roles.map", mapping or "empty (users get roles.default only)")
    extras = []
    if roles.default:
        extras.append(f"default {', '.join(roles.default)}")
    if roles.delimiter:
        extras.append(f"delimiter {roles.delimiter!r}")
    if roles.case_insensitive:
        extras.append("case-insensitive")
    if roles.require_mapped_role:
        extras.append("only users with a mapped role may sign in")
    if extras:
        report.item("roles", "; ".join(extras))
    if settings.provision is not None:
        hook = settings.provision
        name = getattr(hook, "__qualname__", type(hook).__name__)
        report.item("provision", f"{getattr(hook, '__module__', '?')}.{name}")
    if roles.require_mapped_role and not roles.map:
        report.error(
            "roles.require_mapped_role",
            "is true but roles.map is empty: every sign-in would be refused",
        )
    if not roles.attributes and roles.map:
        report.error("roles.attribute", "is empty, so roles.map never matches")


async def _store_status(settings: Settings, store: Any) -> tuple[str, str | None]:
    """(what to print, the problem if any) about the store, probed with one read."""
    backend = settings.store.backend
    if backend == "memory":
        return "memory (in-process: one worker process only)", None
    try:
        await asyncio.wait_for(store.get(f"{PROG}:check"), STORE_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - reported, with the type only (no URL, no secret)
        return f"{backend}: NOT reachable", f"not reachable ({type(exc).__name__})"
    return f"{backend}: reachable", None


STORE_TIMEOUT_SECONDS = 5


def _check_runtime(
    report: CheckReport, settings: Settings, engine_settings: Settings | None
) -> None:
    from ..engine import Engine
    from ..errors import ConfigError
    from ..stores import make_store

    store: Any = None
    if engine_settings is not None:
        try:  # what the middleware builds at start-up (pysaml2, xmlsec1, the store)
            store = Engine(engine_settings).store
        except ConfigError as exc:
            report.error(exc.key or "idp", exc.problem)
    report.section("Runtime:")
    if store is None:
        try:
            store = make_store(settings.store)
        except ConfigError as exc:
            report.error(exc.key or "store", exc.problem)
    if store is not None:
        status, problem = asyncio.run(_store_status(settings, store))
        report.item("store", status)
        if problem:
            report.error("store.url" if settings.store.url else "store.backend", problem)
    now = dt.datetime.now(dt.timezone.utc)
    report.item(
        "clock",
        f"{_utc(now)} (UTC, this machine; clock_skew_seconds "
        f"{settings.security.clock_skew_seconds})",
    )


def run_check(spec: str, tenant: str | None = None) -> tuple[str, bool]:
    """The `check` report for the settings `spec`, and whether it found no error.

    A settings dict that does not validate raises `ConfigError` (one line); every
    later problem is a line of the report.
    """
    raw, settings = _load(spec)
    report = CheckReport()
    report.lines.append(f"Settings {spec}: valid")
    # The app's own IdP, then each organization (one, with --tenant).
    targets: list[tuple[str | None, Settings]] = []
    if tenant is not None:
        targets.append((tenant, _tenant_settings(settings, tenant)))
    else:
        if settings.idp is not None:
            targets.append((None, settings))
        if isinstance(settings.tenants, Mapping):
            targets.extend((slug, t.settings) for slug, t in settings.tenants.items())
        elif settings.tenants is not None:
            report.section("Organizations: read by the tenants loader")
            report.item("check one", f"{PROG} check --settings {spec} --tenant SLUG")
    first: Settings | None = None
    with _quiet_library_logs():
        for slug, target in targets:
            target = dataclasses.replace(target, tenants=None, tenant_options=None)
            if slug is not None:
                report.section(f"== Organization {slug}")
            _check_sp(report, raw if slug is None else {}, target)
            engine_settings = _check_idp(report, target)
            _check_identity(report, target)
            first = first or engine_settings
        _check_runtime(report, settings, first)
    return report.render(), not report.errors


def _cmd_check(args: argparse.Namespace) -> int:
    text, ok = run_check(args.settings, args.tenant)
    sys.stdout.write(text)
    return 0 if ok else 1
