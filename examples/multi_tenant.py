"""Organizations: per-organization SSO set up from a small admin page, stored in SQLite.

The shape of Sentry's and Contentstack's "single sign-on" settings: an admin
creates an SSO configuration from an SSO name (the organization slug), copies
the values it shows into Microsoft Entra ID (Identifier, Reply URL, Sign-on
URL), pastes back Entra's App Federation Metadata URL (or its Login URL and
Base64 certificate), maps IdP roles to app roles, chooses strict mode and a
session timeout, presses Test SSO, and then Enable SSO.

Run it with the development IdP beside it (NOT FOR PRODUCTION), from the
repository root:

    python -m examples.multi_tenant [--port 8000] [--idp-port 9000] [--db orgs.sqlite3]

then open http://127.0.0.1:8000/admin/, create the organization "acme", paste
the development IdP's metadata URL that the command prints
(http://127.0.0.1:9000/metadata), press Save, then Test SSO (sign in as
B.Simon: the diagnostics page should pass), Enable SSO, and open
http://127.0.0.1:8000/organizations/acme/. The development IdP trusts an app
on this machine at its first sign-in request, so nothing is set up there.

The database is `--db`, else `$MULTI_TENANT_DB`, else a new file in a
temporary directory (printed at start-up).

**The admin pages have no login in this example**: anyone who can reach them
can change any organization's SSO. In a real app they sit behind the app's own
admin login (the organization's owner, signed in with a password or with SSO),
and each organization's admin sees only their own organization.

How it fits together: the middleware's `tenants` setting is `store.tenant`,
which reads an organization's row and returns its settings dict (or None);
the middleware caches the answer for `tenant_options.cache_seconds`, and each
admin save calls `SAMLMiddleware.invalidate_tenant(slug)` so the change
applies at once. Organization paths (`/organizations/<slug>/...`) are the
protected ones; everything else, the admin pages included, is the app's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import inspect
import json
import os
import re
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from saml_middleware import ConfigError, SAMLMiddleware
from saml_middleware.claims import (
    ENTRA_DISPLAY_NAME,
    ENTRA_EMAIL,
    ENTRA_GIVEN_NAME,
    ENTRA_OBJECT_ID,
    ENTRA_ROLE,
    ENTRA_SURNAME,
    ENTRA_UPN,
)

NAME_ID_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
ORG_PREFIX = "/organizations/"
ADMIN = "/admin"
# The app's session lasts at most this long; an organization may only shorten it.
APP_SESSION_SECONDS = 8 * 3600
DEFAULT_ROLE_MAP = "admins -> Admin\ndevelopers -> Member"
# Contentstack's "SSO Name": lowercase letters, digits and hyphens.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}")
MAX_FORM_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
MAX_CERT_CHARS = 16 * 1024
MAX_ROLE_LINES = 100
CSRF_COOKIE = "admin_csrf"
CSRF_FIELD = "csrf_token"

# What the app reads from Entra's token (the entra attribute preset), as Entra's
# "Attributes & Claims" page shows them: claim name, namespace URI, source attribute.
EXPECTED_CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("emailaddress", ENTRA_EMAIL, "user.mail", "email"),
    ("givenname", ENTRA_GIVEN_NAME, "user.givenname", "first name"),
    ("surname", ENTRA_SURNAME, "user.surname", "last name"),
    ("name", ENTRA_UPN, "user.userprincipalname", "email when mail is empty"),
    ("objectidentifier", ENTRA_OBJECT_ID, "user.objectid", "stable user ID"),
    ("displayname", ENTRA_DISPLAY_NAME, "user.displayname", "display name"),
    ("role", ENTRA_ROLE, "user.assignedroles", "roles (mapped below)"),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS organizations (
    slug            TEXT PRIMARY KEY,          -- the SSO name: in every SSO URL
    name            TEXT NOT NULL,             -- display name
    metadata_url    TEXT,                      -- Entra's App Federation Metadata Url, or
    idp_entity_id   TEXT,                      -- the manual form: Microsoft Entra Identifier,
    sso_url         TEXT,                      --   Login URL,
    x509cert        TEXT,                      --   Certificate (Base64)
    role_map        TEXT NOT NULL DEFAULT '{}', -- JSON: IdP value -> [app roles]
    strict          INTEGER NOT NULL DEFAULT 1, -- 1: organization pages need an SSO session
    session_minutes INTEGER,                   -- NULL: the app's session length
    enabled         INTEGER NOT NULL DEFAULT 0, -- SSO switched on (after Test SSO)
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
)
"""


class FormError(ValueError):
    """Input the admin must fix: `errors` maps a form field to a message for it."""

    def __init__(self, errors: Mapping[str, str], status: int = 400) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = dict(errors)
        self.status = status


def check_slug(text: str) -> str:
    """The SSO name as typed, if it is a valid slug; else FormError saying what is wrong."""
    slug = text.strip()
    rule = (
        "Use 1 to 63 lowercase letters (a-z), digits (0-9) and hyphens (-), "
        "not starting or ending with a hyphen, e.g. acme."
    )
    if not slug:
        problem = "Enter an SSO name."
    elif len(slug) > 63:
        problem = f"The SSO name is {len(slug)} characters long."
    elif slug != slug.lower() and SLUG.fullmatch(slug.lower()):
        problem = f"The SSO name must be lowercase: {slug.lower()!r}?"
    elif slug.startswith("-") or slug.endswith("-"):
        problem = "The SSO name must not start or end with a hyphen."
    elif not SLUG.fullmatch(slug):
        bad = sorted({c for c in slug if not (c.islower() and c.isascii() or c.isdigit())} - {"-"})
        shown = " ".join(repr(c) for c in bad[:5])
        problem = f"The SSO name may not contain {shown}."
    else:
        return slug
    raise FormError({"slug": f"{problem} {rule}"})


# -- the organizations table ------------------------------------------------------------


@dataclass(frozen=True)
class Organization:
    """One row of the organizations table."""

    slug: str
    name: str
    metadata_url: str | None = None
    idp_entity_id: str | None = None
    sso_url: str | None = None
    x509cert: str | None = None
    role_map: dict[str, list[str]] = field(default_factory=dict, hash=False)
    strict: bool = True
    session_minutes: int | None = None
    enabled: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def idp(self) -> dict[str, str] | None:
        """The tenant's `idp` settings, or None while no IdP is configured."""
        if self.metadata_url:
            return {"metadata_url": self.metadata_url}
        if self.sso_url and self.x509cert and self.idp_entity_id:
            return {
                "entity_id": self.idp_entity_id,
                "sso_url": self.sso_url,
                "x509cert": self.x509cert,
            }
        return None

    def tenant_settings(self) -> dict[str, Any] | None:
        """The middleware's settings dict for this organization (None: no IdP yet)."""
        idp = self.idp
        if idp is None:
            return None
        tenant: dict[str, Any] = {
            "name": self.name,
            "idp": idp,
            "enabled": self.enabled,
            "strict": self.strict,
        }
        if self.role_map:
            tenant["roles"] = {"map": {k: list(v) for k, v in self.role_map.items()}}
        if self.session_minutes:
            tenant["session"] = {"max_age_seconds": self.session_minutes * 60}
        return tenant


@dataclass(frozen=True)
class SSOConfig:
    """What the admin's SSO form says, validated (not yet checked against the IdP)."""

    metadata_url: str | None
    idp_entity_id: str | None
    sso_url: str | None
    x509cert: str | None
    role_map: dict[str, list[str]]
    strict: bool
    session_minutes: int | None


class OrganizationStore:
    """The organizations, in SQLite; `tenant` is the middleware's `tenants` loader."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = str(path)
        with self._connect() as db:
            db.execute(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per use (sqlite3 connections belong to their thread)."""
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            with db:  # a transaction: commit, or roll back on error
                yield db
        finally:
            db.close()

    @staticmethod
    def _from_row(row: sqlite3.Row) -> Organization:
        data = dict(row)
        data["role_map"] = json.loads(data["role_map"] or "{}")
        data["strict"] = bool(data["strict"])
        data["enabled"] = bool(data["enabled"])
        return Organization(**data)

    def create(self, slug: str, name: str = "") -> Organization:
        """A new organization (SSO not configured, not enabled); FormError if taken."""
        slug = check_slug(slug)
        now = time.time()
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO organizations (slug, name, role_map, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        slug,
                        name.strip() or slug,
                        json.dumps(parse_role_map(DEFAULT_ROLE_MAP)),
                        now,
                        now,
                    ),
                )
        except sqlite3.IntegrityError:
            raise FormError({"slug": f"The SSO name {slug!r} is already taken."}, 409) from None
        org = self.get(slug)
        assert org is not None
        return org

    def get(self, slug: str) -> Organization | None:
        if not SLUG.fullmatch(slug):
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM organizations WHERE slug = ?", (slug,)).fetchone()
        return None if row is None else self._from_row(row)

    def all(self) -> list[Organization]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM organizations ORDER BY slug").fetchall()
        return [self._from_row(row) for row in rows]

    def save_sso(self, slug: str, config: SSOConfig) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE organizations SET metadata_url = ?, idp_entity_id = ?, sso_url = ?,"
                " x509cert = ?, role_map = ?, strict = ?, session_minutes = ?, updated_at = ?"
                " WHERE slug = ?",
                (
                    config.metadata_url,
                    config.idp_entity_id,
                    config.sso_url,
                    config.x509cert,
                    json.dumps(config.role_map),
                    int(config.strict),
                    config.session_minutes,
                    time.time(),
                    slug,
                ),
            )

    def set_enabled(self, slug: str, enabled: bool) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE organizations SET enabled = ?, updated_at = ? WHERE slug = ?",
                (int(enabled), time.time(), slug),
            )

    def tenant(self, slug: str) -> dict[str, Any] | None:
        """The `tenants` loader: the organization's settings dict, or None (unknown slug,
        or no IdP configured yet). Sync: the middleware runs it in a worker thread."""
        org = self.get(slug)
        return None if org is None else org.tenant_settings()


# -- reading the SSO form ----------------------------------------------------------------


def _http_url(value: str, name: str, label: str, errors: dict[str, str]) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(value) > MAX_URL_CHARS
        or any(c.isspace() for c in value)
    ):
        errors[name] = f"{label} must be an http(s) URL such as https://login.example.com/..."
        return None
    return value


def parse_role_map(text: str) -> dict[str, list[str]]:
    """`IdP value -> App role, Other role` lines (blank lines and `#` comments skipped)."""
    mapping: dict[str, list[str]] = {}
    lines = text.splitlines()
    if len(lines) > MAX_ROLE_LINES:
        raise FormError({"role_map": f"At most {MAX_ROLE_LINES} role mapping lines."})
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        idp_value, arrow, roles = line.partition("->")
        idp_value = idp_value.strip()
        app_roles = [r.strip() for r in roles.split(",") if r.strip()]
        where = f"Role mapping line {number} ({line[:60]!r})"
        if not arrow or not idp_value or not app_roles:
            raise FormError({"role_map": f"{where}: write it as 'IdP value -> App role'."})
        if len(idp_value) > 256 or not idp_value.isprintable():
            raise FormError({"role_map": f"{where}: the IdP value is not valid."})
        for role in app_roles:
            if not ROLE_NAME.fullmatch(role):
                raise FormError(
                    {
                        "role_map": f"{where}: {role[:40]!r} is not a role name (letters, digits,"
                        " spaces and _ . : -, up to 64 characters)."
                    }
                )
        if idp_value in mapping:
            raise FormError({"role_map": f"{where}: {idp_value!r} is mapped twice."})
        mapping[idp_value] = app_roles
    return mapping


def role_map_text(mapping: Mapping[str, list[str]]) -> str:
    return "\n".join(f"{value} -> {', '.join(roles)}" for value, roles in mapping.items())


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise FormError({name: "Must be a text field."})
    return value.strip()


def parse_sso_form(form: Mapping[str, Any]) -> SSOConfig:
    """The SSO form, validated; FormError names every field to fix."""
    errors: dict[str, str] = {}
    metadata_url = _http_url(
        _text(form, "metadata_url"), "metadata_url", "The App Federation Metadata URL", errors
    )
    sso_url = _http_url(_text(form, "sso_url"), "sso_url", "The Login URL", errors)
    idp_entity_id = _text(form, "idp_entity_id") or None
    x509cert = _text(form, "x509cert") or None
    manual = [v for v in (sso_url, idp_entity_id, x509cert) if v]
    if not errors:
        if metadata_url and manual:
            errors["metadata_url"] = (
                "Give either the App Federation Metadata URL or the Login URL, Identifier and"
                " certificate, not both: clear one of them."
            )
        elif not metadata_url and not manual:
            errors["metadata_url"] = (
                "Paste the App Federation Metadata URL (or fill in the Login URL, Identifier"
                " and certificate below)."
            )
        elif not metadata_url:
            for name, value, label in (
                ("sso_url", sso_url, "the Login URL"),
                ("idp_entity_id", idp_entity_id, "the Microsoft Entra Identifier"),
                ("x509cert", x509cert, "the Certificate (Base64)"),
            ):
                if not value:
                    errors[name] = f"Without a metadata URL, {label} is needed too."
    if idp_entity_id and (len(idp_entity_id) > MAX_URL_CHARS or not idp_entity_id.isprintable()):
        errors["idp_entity_id"] = "The Identifier is not valid."
    if x509cert and len(x509cert) > MAX_CERT_CHARS:
        errors["x509cert"] = "The certificate is too long: paste the Certificate (Base64) file."
    try:
        role_map = parse_role_map(_text(form, "role_map"))
    except FormError as exc:
        errors.update(exc.errors)
        role_map = {}
    minutes_text = _text(form, "session_minutes")
    session_minutes: int | None = None
    if minutes_text:
        limit = APP_SESSION_SECONDS // 60
        if not minutes_text.isdigit() or not 1 <= int(minutes_text) <= limit:
            errors["session_minutes"] = (
                f"The session timeout is a number of minutes from 1 to {limit} (blank: {limit})."
            )
        else:
            session_minutes = int(minutes_text)
    if errors:
        raise FormError(errors)
    return SSOConfig(
        metadata_url=metadata_url,
        idp_entity_id=idp_entity_id if not metadata_url else None,
        sso_url=sso_url if not metadata_url else None,
        x509cert=x509cert if not metadata_url else None,
        role_map=role_map,
        strict=form.get("strict") == "on",
        session_minutes=session_minutes,
    )


# Which form field a settings key (from ConfigError) is about, and its label.
_FIELD_OF_KEY = (
    ("metadata_url", "metadata_url", "App Federation Metadata URL"),
    ("x509cert", "x509cert", "Certificate (Base64)"),
    ("sso_url", "sso_url", "Login URL"),
    ("entity_id", "idp_entity_id", "Microsoft Entra Identifier"),
    ("roles", "role_map", "IdP role mapping"),
    ("session", "session_minutes", "Session timeout"),
)


def form_error_for(error: ConfigError) -> tuple[str, str]:
    """(form field, message) for a settings problem the middleware found."""
    for fragment, name, label in _FIELD_OF_KEY:
        if fragment in error.key:
            return name, f"{label}: {error.problem}."
    return "metadata_url", f"The IdP settings: {error}."


async def _nothing(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("only built to check settings")


def check_tenant(app_settings: Mapping[str, Any], slug: str, tenant: Mapping[str, Any]) -> None:
    """Build the organization's settings as the middleware will, IdP metadata included
    (a metadata URL is fetched, a certificate parsed); ConfigError names what is wrong.

    Blocking: call it from a worker thread.
    """
    checked = {key: value for key, value in app_settings.items() if key != "tenants"}
    SAMLMiddleware(_nothing, settings={**checked, "tenants": {slug: dict(tenant)}})


# -- pages -------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;"
    "color:#1b1f24}nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #d6d9de;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "code{word-break:break-all}.note{background:#fff4ce;border:1px solid #e0c36a;padding:.5rem}"
    ".error{color:#b00020}.ok{color:#0a6b2d}label{display:block;margin-top:.7rem;"
    "font-weight:600}input[type=text],input[type=url],textarea{width:100%;box-sizing:border-box;"
    "font:inherit}fieldset{margin:1rem 0}.inline{display:inline}"
)
_NO_STORE = {"cache-control": "no-store"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A page; `body` must already be escaped."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<nav><a href="/">Home</a><a href="{ADMIN}/">Organizations (admin)</a></nav>'
        f"{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_NO_STORE)


def _error_page(status: int, title: str, message: str) -> HTMLResponse:
    return _page(title, f'<h1>{escape(title)}</h1><p class="error">{escape(message)}</p>', status)


def _signed_in_user(request: Request) -> Any:
    user = request.scope.get("user")
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _list(values: Any) -> str:
    items = [f"<li>{escape(str(v))}</li>" for v in values]
    return "".join(items) or "<li><em>none</em></li>"


def _admin_warning() -> str:
    return (
        '<p class="note" id="demo-warning"><strong>Demo:</strong> these admin pages have no'
        " login, so anyone who can reach them can change any organization's SSO. In a real app"
        " they sit behind the app's own admin login.</p>"
    )


class _Admin:
    """The admin pages, the organization pages and their CSRF protection."""

    def __init__(
        self,
        store: OrganizationStore,
        base_url: str,
        check: Callable[[str, Mapping[str, Any]], None],
        on_change: Callable[[str], Any],
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.secure = parts.scheme == "https"
        self.check = check
        self.on_change = on_change

    # -- CSRF: a random cookie, repeated in every form (double submit) and same-origin --

    def _csrf(self, request: Request) -> tuple[str, bool]:
        token = request.cookies.get(CSRF_COOKIE, "")
        if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", token):
            return token, False
        return secrets.token_urlsafe(32), True

    def _render(
        self, request: Request, title: str, body: Callable[[str], str], status: int = 200
    ) -> Response:
        """An admin page: `body(csrf)` gets the hidden CSRF field its forms must carry."""
        token, new = self._csrf(request)
        response = _page(title, body(_hidden(CSRF_FIELD, token)), status)
        if new:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path=ADMIN,
                httponly=True,
                samesite="strict",
                secure=self.secure,
            )
        return response

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is not None:
            return origin.lower() == self.origin
        referer = request.headers.get("referer")
        if referer is not None:
            try:
                parts = urlsplit(referer)
            except ValueError:
                return False
            return f"{parts.scheme}://{parts.netloc}".lower() == self.origin
        return True  # neither header: not a browser's cross-site form post

    async def _form(self, request: Request) -> dict[str, Any]:
        """The posted form, after the size limit and the CSRF checks (FormError: 4xx)."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise FormError({"form": "The form is missing or too large."}, 413)
        if not self._same_origin(request):
            raise FormError({"form": "The form was sent from another site: refused."}, 403)
        try:
            data = await request.form(max_files=0, max_fields=20, max_part_size=MAX_FORM_BYTES)
        except Exception:  # noqa: BLE001 - multipart parse errors, too many fields
            raise FormError({"form": "The form could not be read."}) from None
        form = {key: data.get(key) for key in data}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get(CSRF_FIELD)
        if not cookie or not isinstance(sent, str) or not hmac.compare_digest(sent, cookie):
            raise FormError(
                {
                    "form": "The form's security token is missing or wrong: reload the page and"
                    " try again."
                },
                403,
            )
        return form

    async def _changed(self, slug: str) -> None:
        result = self.on_change(slug)
        if inspect.isawaitable(result):
            await result

    # -- URLs an admin pastes into the IdP --

    def values_to_paste(self, slug: str) -> list[tuple[str, str, str]]:
        """(id, Entra's label, value) for the "Basic SAML Configuration" of this organization."""
        base = self.base_url
        return [
            ("entity_id", "Identifier (Entity ID)", f"{base}/saml/metadata/{slug}/"),
            ("acs_url", "Reply URL (Assertion Consumer Service URL)", f"{base}/saml/acs/{slug}/"),
            ("sign_on_url", "Sign on URL", f"{base}/saml/login/{slug}/"),
            ("logout_url", "Logout Url", f"{base}/saml/sls/{slug}/"),
            ("name_id_format", "NameID format (Unique User Identifier)", NAME_ID_FORMAT),
            ("metadata", "SP metadata (for IdPs that import it)", f"{base}/saml/metadata/{slug}/"),
        ]

    # -- the public home --

    async def home(self, request: Request) -> Response:
        orgs = await run_in_threadpool(self.store.all)
        rows = "".join(
            f'<li><a href="{ORG_PREFIX}{escape(o.slug)}/">{escape(o.name)}</a>'
            f" ({'SSO enabled' if o.enabled else 'SSO disabled'})</li>"
            for o in orgs
        )
        body = (
            "<h1>Organizations example</h1>"
            "<p>Each organization signs in with its own IdP at"
            f" <code>{ORG_PREFIX}&lt;slug&gt;/</code>."
            f' Set them up on the <a href="{ADMIN}/">admin page</a>.</p>'
            f'<ul id="organizations">{rows or "<li><em>no organization yet</em></li>"}</ul>'
        )
        return _page("Organizations example", body)

    # -- the admin list, and creating an organization --

    def _list_body(
        self, orgs: list[Organization], slug: str, name: str, error: str, csrf: str
    ) -> str:
        rows = "".join(
            f'<tr data-slug="{escape(o.slug)}"><td><a href="{ADMIN}/organizations/'
            f'{escape(o.slug)}/">{escape(o.slug)}</a></td><td>{escape(o.name)}</td>'
            f"<td>{'configured' if o.idp else 'not configured'}</td>"
            f"<td>{'enabled' if o.enabled else 'disabled'}</td></tr>"
            for o in orgs
        )
        error_html = f'<p class="error" id="error-slug">{escape(error)}</p>' if error else ""
        return (
            "<h1>Organizations</h1>"
            f"{_admin_warning()}"
            '<table id="organization-list"><tr><th>SSO name</th><th>Name</th><th>IdP</th>'
            f"<th>SSO</th></tr>{rows or '<tr><td colspan=4><em>none yet</em></td></tr>'}</table>"
            "<h2>Create an SSO configuration</h2>"
            f'<form method="post" action="{ADMIN}/organizations" id="create">{csrf}'
            '<label for="slug">SSO name</label>'
            f'<input type="text" id="slug" name="slug" value="{escape(slug)}" required'
            ' maxlength="63" placeholder="acme">'
            '<p class="hint">Lowercase letters, digits and hyphens. For "Acme, Inc." enter'
            " <code>acme</code>: it becomes part of every SSO URL of the organization.</p>"
            f"{error_html}"
            '<label for="name">Organization name (optional)</label>'
            f'<input type="text" id="name" name="name" value="{escape(name)}" maxlength="100"'
            ' placeholder="Acme, Inc.">'
            '<p><button type="submit">Create</button></p></form>'
        )

    async def admin_list(self, request: Request) -> Response:
        orgs = await run_in_threadpool(self.store.all)
        return self._render(
            request, "Organizations", lambda csrf: self._list_body(orgs, "", "", "", csrf)
        )

    async def create(self, request: Request) -> Response:
        slug_text, name = "", ""
        try:
            form = await self._form(request)
            slug_text, name = _text(form, "slug"), _text(form, "name")
            if len(name) > 100:
                raise FormError({"name": "The organization name is at most 100 characters."})
            org = await run_in_threadpool(self.store.create, slug_text, name)
        except FormError as exc:
            if "form" in exc.errors:
                return _error_page(exc.status, "Refused", exc.errors["form"])
            orgs = await run_in_threadpool(self.store.all)
            message = " ".join(exc.errors.values())
            return self._render(
                request,
                "Organizations",
                lambda csrf: self._list_body(orgs, slug_text, name, message, csrf),
                exc.status,
            )
        return RedirectResponse(f"{ADMIN}/organizations/{org.slug}/", status_code=303)

    # -- one organization's SSO page --

    async def _org_or_404(self, request: Request) -> Organization | Response:
        slug = request.path_params["slug"]
        org = await run_in_threadpool(self.store.get, slug)
        if org is None:
            return _error_page(404, "No such organization", f"There is no organization {slug!r}.")
        return org

    def _org_body(
        self,
        org: Organization,
        values: Mapping[str, str],
        errors: Mapping[str, str],
        csrf: str,
        notice: str = "",
    ) -> str:
        slug = escape(org.slug)

        def field_error(name: str) -> str:
            if name not in errors:
                return ""
            return f'<p class="error" id="error-{name}">{escape(errors[name])}</p>'

        def text_input(name: str, label: str, kind: str = "text", hint: str = "") -> str:
            hint_html = f'<p class="hint">{hint}</p>' if hint else ""
            return (
                f'<label for="{name}">{escape(label)}</label>'
                f'<input type="{kind}" id="{name}" name="{name}"'
                f' value="{escape(values.get(name, ""))}">{hint_html}{field_error(name)}'
            )

        parts = [f"<h1>Single sign-on: {escape(org.name)}</h1>", _admin_warning()]
        if notice:
            parts.append(f'<p class="ok" id="notice">{escape(notice)}</p>')
        status = (
            '<strong class="ok">enabled</strong>: members sign in with SSO'
            if org.enabled
            else "<strong>disabled</strong>: test it first, then enable it"
        )
        parts.append(
            f'<p id="sso-status" data-enabled="{str(org.enabled).lower()}">SSO is {status}.</p>'
        )

        # 1. What the IdP admin pastes into Entra.
        paste = "".join(
            f'<tr data-value="{key}"><th>{escape(label)}</th><td><code>{escape(value)}</code>'
            "</td></tr>"
            for key, label, value in self.values_to_paste(org.slug)
        )
        claims = "".join(
            f"<tr><td>{escape(short)}</td><td><code>{escape(uri)}</code></td>"
            f"<td><code>{escape(source)}</code></td><td>{escape(use)}</td></tr>"
            for short, uri, source, use in EXPECTED_CLAIMS
        )
        parts.append(
            "<h2>1. Give these to your IdP</h2>"
            "<p>Microsoft Entra ID: Enterprise applications &gt; your app &gt; Single sign-on"
            " &gt; SAML &gt; Basic SAML Configuration.</p>"
            f'<table id="entra-values">{paste}</table>'
            "<p>Attributes &amp; Claims the app reads (Entra sends these by default; add the"
            " role claim to send app roles):</p>"
            '<table id="claims"><tr><th>Claim</th><th>Namespace URI</th>'
            f"<th>Source attribute</th><th>Used for</th></tr>{claims}</table>"
        )

        # 2. The IdP's settings, role mapping, strict mode, session timeout.
        form_error = (
            f'<p class="error" id="form-errors">Not saved: {len(errors)} problem(s) below.</p>'
            if errors
            else ""
        )
        strict_checked = " checked" if values.get("strict") == "on" else ""
        parts += [
            "<h2>2. Your IdP's settings</h2>",
            f'<form method="post" action="{ADMIN}/organizations/{slug}/sso" id="sso">',
            csrf,
            form_error,
            text_input(
                "metadata_url",
                "App Federation Metadata URL",
                "url",
                "Entra: SAML Certificates &gt; App Federation Metadata Url.",
            ),
            "<fieldset><legend>or, without a metadata URL</legend>",
            text_input("sso_url", "Login URL (the IdP's single sign-on URL)", "url"),
            text_input("idp_entity_id", "Microsoft Entra Identifier (the IdP's entity ID)"),
            '<label for="x509cert">Certificate (Base64)</label>'
            '<textarea id="x509cert" name="x509cert" rows="5"'
            ' placeholder="-----BEGIN CERTIFICATE-----">'
            f"{escape(values.get('x509cert', ''))}</textarea>",
            field_error("x509cert"),
            "</fieldset>",
            '<label for="role_map">IdP role mapping</label>'
            '<textarea id="role_map" name="role_map" rows="4">'
            f"{escape(values.get('role_map', ''))}</textarea>"
            '<p class="hint">One per line: <code>IdP role or group value -&gt; App role,'
            " Other role</code> (Entra: the app role's Value). Users get only mapped roles.</p>",
            field_error("role_map"),
            f'<label><input type="checkbox" id="strict" name="strict"{strict_checked}>'
            " Strict mode: organization pages accept only SSO sign-in</label>"
            '<p class="hint">Off: unauthenticated visitors reach the organization\'s pages'
            " anonymously, so the app's own login (such as the owner's password) still"
            " works.</p>",
            text_input(
                "session_minutes",
                "Session timeout (minutes)",
                "text",
                f"Blank: the app's {APP_SESSION_SECONDS // 60} minutes; it can only be shorter.",
            ),
            '<p><button type="submit">Save</button></p></form>',
        ]

        # 3. Test SSO, then Enable / Disable.
        parts.append("<h2>3. Test, then enable</h2>")
        if org.idp is None:
            parts.append(
                '<p id="test-sso-missing">Save the IdP settings first: Test SSO needs them.</p>'
            )
        else:
            action, label = ("disable", "Disable SSO") if org.enabled else ("enable", "Enable SSO")
            parts.append(
                f'<p><a id="test-sso" href="/saml/test/{slug}/">Test SSO</a>: sign in at the'
                " IdP and see every check on its answer (no session is started; works while"
                " SSO is disabled).</p>"
                f'<form method="post" action="{ADMIN}/organizations/{slug}/{action}"'
                f' id="switch">{csrf}<button type="submit">{label}</button></form>'
            )
        parts.append(
            f'<p>Members sign in at <a id="org-home" href="{ORG_PREFIX}{slug}/">'
            f"<code>{escape(self.base_url)}{ORG_PREFIX}{slug}/</code></a>.</p>"
        )
        return "".join(parts)

    @staticmethod
    def _values(org: Organization) -> dict[str, str]:
        return {
            "metadata_url": org.metadata_url or "",
            "sso_url": org.sso_url or "",
            "idp_entity_id": org.idp_entity_id or "",
            "x509cert": org.x509cert or "",
            "role_map": role_map_text(org.role_map),
            "strict": "on" if org.strict else "",
            "session_minutes": str(org.session_minutes or ""),
        }

    async def admin_org(self, request: Request) -> Response:
        org = await self._org_or_404(request)
        if isinstance(org, Response):
            return org
        notice = {"saved": "Saved.", "enabled": "SSO enabled.", "disabled": "SSO disabled."}.get(
            request.query_params.get("done", ""), ""
        )
        values = self._values(org)
        return self._render(
            request,
            f"SSO: {org.name}",
            lambda csrf: self._org_body(org, values, {}, csrf, notice),
        )

    async def save_sso(self, request: Request) -> Response:
        org = await self._org_or_404(request)
        if isinstance(org, Response):
            return org
        values: dict[str, str] = {}
        try:
            form = await self._form(request)
            values = {
                name: form[name] if isinstance(form.get(name), str) else ""
                for name in self._values(org)
            }
            config = parse_sso_form(form)
            candidate = dataclasses.replace(org, **vars(config))
            tenant = candidate.tenant_settings()
            assert tenant is not None  # parse_sso_form requires an IdP
            try:
                await run_in_threadpool(self.check, org.slug, tenant)
            except ConfigError as exc:
                raise FormError(dict([form_error_for(exc)])) from None
        except FormError as exc:
            if "form" in exc.errors:
                return _error_page(exc.status, "Refused", exc.errors["form"])
            errors = exc.errors
            return self._render(
                request,
                f"SSO: {org.name}",
                lambda csrf: self._org_body(org, values, errors, csrf),
                exc.status,
            )
        await run_in_threadpool(self.store.save_sso, org.slug, config)
        await self._changed(org.slug)
        return RedirectResponse(f"{ADMIN}/organizations/{org.slug}/?done=saved", status_code=303)

    async def _switch(self, request: Request, enabled: bool) -> Response:
        org = await self._org_or_404(request)
        if isinstance(org, Response):
            return org
        try:
            await self._form(request)
        except FormError as exc:
            return _error_page(exc.status, "Refused", " ".join(exc.errors.values()))
        if enabled and org.idp is None:
            return _error_page(
                409, "Not enabled", "Save the IdP settings (and test them) before enabling SSO."
            )
        await run_in_threadpool(self.store.set_enabled, org.slug, enabled)
        await self._changed(org.slug)
        done = "enabled" if enabled else "disabled"
        return RedirectResponse(f"{ADMIN}/organizations/{org.slug}/?done={done}", status_code=303)

    async def enable(self, request: Request) -> Response:
        return await self._switch(request, True)

    async def disable(self, request: Request) -> Response:
        return await self._switch(request, False)

    # -- an organization's own pages (the middleware protects them) --

    async def org_home(self, request: Request) -> Response:
        org = await self._org_or_404(request)
        if isinstance(org, Response):
            return org
        slug = escape(org.slug)
        user = _signed_in_user(request)
        if user is not None and getattr(user, "tenant", None) == org.slug:
            body = (
                f"<h1>{escape(org.name)}</h1>"
                f'<section id="user" data-tenant="{escape(str(user.tenant))}">'
                f'<p>Signed in as <strong id="user-name">{escape(user.display_name)}</strong>'
                f' (<span id="user-email">{escape(user.email or user.name_id)}</span>)'
                f' to organization <code id="user-org">{escape(str(user.tenant))}</code>'
                f" with single sign-on from <code>{escape(user.issuer or '')}</code>.</p>"
                f'<p>Roles:</p><ul id="user-roles">{_list(user.roles)}</ul></section>'
                '<form method="post" action="/saml/logout/"><button type="submit">Sign out'
                "</button></form>"
            )
        else:
            sign_in = (
                f'<p><a id="sign-in" href="/saml/login/{slug}/?next={ORG_PREFIX}{slug}/">'
                "Sign in with SSO</a></p>"
                if org.enabled
                else "<p>Single sign-on is not enabled for this organization.</p>"
            )
            body = (
                f"<h1>{escape(org.name)}</h1>"
                '<p id="anonymous">You are not signed in to this organization.</p>'
                f"{sign_in}"
                "<p>(Strict mode is off: the app's own login, such as the owner's password,"
                " would be offered here too.)</p>"
            )
        return _page(org.name, body)


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def create_app(
    store: OrganizationStore,
    base_url: str,
    check: Callable[[str, Mapping[str, Any]], None],
    on_change: Callable[[str], Any],
) -> Starlette:
    """The plain app (no SAML): the admin pages and the organizations' pages.

    `check(slug, tenant)` raises `ConfigError` for settings the middleware would
    refuse (blocking: it runs in a worker thread); `on_change(slug)` is called
    after every saved change (the middleware's `invalidate_tenant`).
    """
    admin = _Admin(store, base_url, check, on_change)
    return Starlette(
        routes=[
            Route("/", admin.home, methods=["GET"]),
            Route(f"{ADMIN}/", admin.admin_list, methods=["GET"]),
            Route(f"{ADMIN}/organizations", admin.create, methods=["POST"]),
            Route(f"{ADMIN}/organizations/{{slug}}/", admin.admin_org, methods=["GET"]),
            Route(f"{ADMIN}/organizations/{{slug}}/sso", admin.save_sso, methods=["POST"]),
            Route(f"{ADMIN}/organizations/{{slug}}/enable", admin.enable, methods=["POST"]),
            Route(f"{ADMIN}/organizations/{{slug}}/disable", admin.disable, methods=["POST"]),
            Route(f"{ORG_PREFIX}{{slug}}/", admin.org_home, methods=["GET"]),
        ]
    )


def settings(
    base_url: str, secret_key: str, store: OrganizationStore, **extra: Any
) -> dict[str, Any]:
    """Middleware settings: no app-wide IdP, one per organization from the database."""
    session = {"max_age_seconds": APP_SESSION_SECONDS, **extra.pop("session", {})}
    return {
        "base_url": base_url,
        "secret_key": secret_key,
        "tenants": store.tenant,
        "tenant_options": {
            "resolver": {"path_prefix": ORG_PREFIX},
            # Loader answers are kept this long; a save here invalidates at once (this
            # process; other worker processes see it within these seconds).
            "cache_seconds": 10,
        },
        "session": session,
        **extra,
    }


def build(
    base_url: str, secret_key: str, db_path: str | PathLike[str], **extra: Any
) -> tuple[SAMLMiddleware, OrganizationStore]:
    """The app behind the middleware, and its organizations.

    `extra` merges into the settings (`session={"https_only": False}` for plain http).
    """
    store = OrganizationStore(db_path)
    app_settings = settings(base_url, secret_key, store, **extra)
    middleware: SAMLMiddleware | None = None

    def check(slug: str, tenant: Mapping[str, Any]) -> None:
        check_tenant(app_settings, slug, tenant)

    def invalidate(slug: str) -> None:
        if middleware is not None:
            middleware.invalidate_tenant(slug)

    middleware = SAMLMiddleware(
        create_app(store, base_url, check, invalidate), settings=app_settings
    )
    return middleware, store


def default_db_path() -> str:
    """`$MULTI_TENANT_DB`, else a new file in a new temporary directory."""
    from_env = os.environ.get("MULTI_TENANT_DB")
    if from_env:
        return from_env
    return str(Path(tempfile.mkdtemp(prefix="saml-orgs-")) / "organizations.sqlite3")


def main(argv: list[str] | None = None) -> int:
    """Serve the example and the development IdP until interrupted (NOT FOR PRODUCTION)."""
    import sys

    from examples.devserver import listen, parser, serve_asgi, serve_with_idp
    from saml_middleware.devidp import DevIdP

    prog = "python -m examples.multi_tenant"
    options = parser(
        prog,
        "Organizations with per-organization SSO, an admin page and the "
        "development IdP (NOT FOR PRODUCTION).",
    )
    options.add_argument(
        "--db",
        default=None,
        help="the SQLite file of organizations (default: $MULTI_TENANT_DB, else a new temp file)",
    )
    args = options.parse_args(argv)
    bound = listen(prog, args)
    if bound is None:
        return 1
    db_path = args.db or default_db_path()
    try:
        # An IdP that trusts the apps on this machine at their first sign-in request:
        # every organization's SP is new to it, and nothing needs registering there.
        idp = DevIdP(bound.idp_url, trust_local_sps=True)
        app, _ = build(
            bound.base_url,
            secrets.token_urlsafe(32),
            db_path,
            session={"https_only": False},  # plain http on a loopback address only
        )
    except (ConfigError, OSError, sqlite3.Error) as exc:
        bound.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"multi_tenant: open {bound.base_url}{ADMIN}/ and create an organization", flush=True)
    print(f"  development IdP metadata URL to paste: {idp.entity_id}", flush=True)
    print(f"  (sign in there as B.Simon; organizations are stored in {db_path})", flush=True)
    return serve_with_idp(idp, app, bound, serve_asgi)


if __name__ == "__main__":
    raise SystemExit(main())
