"""The settings dict, validated once at start-up into frozen objects.

Nothing reads the raw dict after `load_settings`: every part receives the
`Settings` tree. Each problem raises `ConfigError` naming the key path
(`idp.metadata_url: ...`); values of secret keys are never repeated in a message.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .claims import PRESET_ROLE_ATTRIBUTES, PRESETS, USER_FIELDS
from .errors import ConfigError
from .routing import SLUG, SLUG_PLACEHOLDER, paths_overlap
from .saml.algorithms import DATA_ENCRYPTION, KEY_TRANSPORT

NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
_SECRET_KEYS = {"secret_key", "key_pem", "key_file"}
_SAME_SITE = ("lax", "strict", "none")
_SESSION_BACKENDS = ("cookie", "store")
# The middleware's endpoints, each at `paths.<name>` (default `{prefix}/<name>/`) and,
# for organizations, at `tenant_options.paths.<name>` (default `{prefix}/<name>/{slug}/`).
ENDPOINTS = ("login", "acs", "metadata", "logout", "sls", "test")


@dataclass(frozen=True)
class SPSettings:
    entity_id: str
    key_pem: str | None = field(repr=False)
    cert_pem: str | None
    name_id_format: str | None  # None: no NameIDPolicy (the IdP's default, Entra's unspecified)
    sign_authn_requests: bool


@dataclass(frozen=True)
class IdPSettings:
    """Where the IdP is described: exactly one of `source` kinds."""

    source: str  # "metadata_url" | "metadata_file" | "metadata_xml" | "manual"
    metadata_url: str | None
    metadata_file: str | None
    metadata_xml: str | None
    entity_id: str | None
    sso_url: str | None
    slo_url: str | None
    x509cert: str | None
    metadata_refresh_seconds: int


@dataclass(frozen=True)
class PathSettings:
    prefix: str
    protect: tuple[str, ...]
    exempt: tuple[str, ...]
    after_login: str
    after_logout: str
    # Endpoint name -> its paths (several for "acs" only); the first is the one
    # the middleware sends, all are served and accepted as Destination/Recipient.
    endpoints: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class AttributeSettings:
    """`attributes`: which claim fills each `SAMLUser` field."""

    preset: str | None
    # user field -> claim names tried in order (preset merged with `map`).
    fields: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class RoleSettings:
    """`roles`: IdP role/group values -> app roles (see identity.map_roles)."""

    attributes: tuple[str, ...]
    delimiter: str | None
    # IdP value -> app roles; keys are casefolded when `case_insensitive`.
    map: Mapping[str, tuple[str, ...]]
    default: tuple[str, ...]
    require_mapped_role: bool
    case_insensitive: bool = False
    # callable(SAMLUser) -> list of group values | None, sync or async (Entra overage).
    overage_hook: Callable[..., Any] | None = None


@dataclass(frozen=True)
class SessionSettings:
    cookie_name: str
    max_age_seconds: int
    idle_timeout_seconds: int | None
    https_only: bool
    same_site: str
    # "cookie": the user in a signed cookie; "store": a signed session id in the
    # cookie, the session in the store (large sessions, revocation by Single Logout).
    backend: str
    # Claim names kept in the session; None: every claim (that fits, for cookies).
    attributes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SecuritySettings:
    want_assertions_signed: bool
    want_response_signed: bool
    allow_idp_initiated: bool
    clock_skew_seconds: int
    allowed_redirect_hosts: tuple[str, ...]
    reject_sha1: bool
    max_request_bytes: int
    # Read X-Forwarded-Proto/-Host for diagnostics (engine.public_origin); never for checks.
    trust_forwarded_headers: bool = False
    # Single Logout messages from the IdP must be signed (pysaml2 would not check).
    want_logout_signed: bool = True
    # "xmlsec1": pysaml2's subprocess backend; "inprocess": saml/crypto.py on the xmlsec binding.
    crypto_backend: str = "inprocess"
    # Algorithm URIs an EncryptedAssertion may use, checked before any decryption.
    allowed_key_transport: tuple[str, ...] = ()
    allowed_data_encryption: tuple[str, ...] = ()


# The memory store's default bound for each kind of entry: a kind that is full
# refuses new sign-ins (503) instead of forgetting anything.
MEMORY_STORE_MAX_ENTRIES = {
    "replay": 100_000,  # accepted assertion IDs
    "requests": 100_000,  # used AuthnRequest marks
    "logout": 100_000,  # outstanding LogoutRequests of ours, the IdP's used ones
    "sessions": 100_000,  # server-side sessions
    "session_index": 100_000,  # NameID -> its sessions, for Single Logout
    "other": 10_000,  # anything else (an app's own keys, `check`'s probe)
}


@dataclass(frozen=True)
class StoreSettings:
    """`store`: where the replay cache, used-request marks and server-side sessions live."""

    backend: str  # "memory" | "redis"
    url: str | None = field(default=None, repr=False)  # may hold a password
    prefix: str = "saml:"
    socket_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 2.0
    max_connections: int = 50
    # memory: the bound of each kind of entry (see MEMORY_STORE_MAX_ENTRIES).
    max_entries: Mapping[str, int] = field(default_factory=lambda: dict(MEMORY_STORE_MAX_ENTRIES))


@dataclass(frozen=True)
class TenantSettings:
    """One organization: its own IdP and SP URLs, inside a full `Settings`."""

    slug: str
    name: str
    enabled: bool
    # True: the organization's paths need one of its SSO sessions; False: anonymous
    # requests pass through (the app's own login, e.g. an owner's password, works).
    strict: bool
    settings: Settings  # the app's settings with this organization's parts merged in


@dataclass(frozen=True)
class TenantOptions:
    """`tenant_options`: which organization a path belongs to, and loader caching."""

    # ("path_prefix", "/organizations/") | ("host", "{slug}.example.com") | ("callable", fn)
    resolver: tuple[str, Any]
    cache_seconds: int
    cache_size: int
    # "https://{slug}.app.example.com": each organization's own public origin (its
    # SP URLs and session cookie live there); None: base_url for every one.
    base_url: str | None = None
    # Endpoint name -> the organizations' paths, each with one `{slug}` segment.
    paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    base_url: str
    secret_key: str = field(repr=False)
    sp: SPSettings
    idp: IdPSettings | None
    paths: PathSettings
    attributes: AttributeSettings
    roles: RoleSettings
    session: SessionSettings
    security: SecuritySettings
    store: StoreSettings
    provision: Callable[..., Any] | None
    # Multi-organization: validated organizations by slug, or the app's loader
    # callable(slug) -> dict | None (sync or async), validated per load.
    tenants: Mapping[str, TenantSettings] | Callable[..., Any] | None = None
    tenant_options: TenantOptions | None = None
    tenant: str | None = None  # set in an organization's own merged settings

    def endpoint_url(self, name: str) -> str:
        """Absolute URL of one of the middleware's endpoints (`acs`, `metadata`, ...):
        base_url + its configured path (an organization's has its slug filled in)."""
        return f"{self.base_url}{self.paths.endpoints[name][0]}"

    @property
    def acs_url(self) -> str:
        """The ACS URL sent in AuthnRequests and listed first (the default) in the metadata."""
        return self.endpoint_url("acs")

    @property
    def acs_urls(self) -> tuple[str, ...]:
        """Every ACS URL accepted as a Response's Destination and Recipient."""
        return tuple(f"{self.base_url}{path}" for path in self.paths.endpoints["acs"])


# -- the small validation toolkit ------------------------------------------------


class _Section:
    """A dict being read under a key path; `done()` rejects keys nobody read."""

    def __init__(self, raw: Any, path: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(path, f"must be a dict, not {type(raw).__name__}")
        self.raw = raw
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: Any = None) -> Any:
        self.seen.add(name)
        return self.raw.get(name, default)

    def text(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.get(name, default)
        if value is None:
            if required:
                raise ConfigError(self.key(name), "is required")
            return None
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"must be a string, not {type(value).__name__}")
        if required and not value.strip():
            problem = "must not be empty"
            raise ConfigError(self.key(name), problem)
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, not {_shown(name, value)}")
        return value

    def integer(self, name: str, default: int | None, *, minimum: int = 0) -> int | None:
        value = self.get(name, default)
        if value is None:
            value = default
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be an integer, not {_shown(name, value)}")
        if value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum}")
        return value

    def texts(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(name, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), "must be a list of strings")
        return tuple(value)

    def section(self, name: str) -> _Section:
        return _Section(self.get(name), self.key(name))

    def done(self) -> None:
        unknown = sorted(set(map(str, self.raw)) - self.seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown setting")


def _shown(name: str, value: Any) -> str:
    return "a secret value" if name in _SECRET_KEYS else repr(value)[:60]


def _absolute_http_url(sec: _Section, name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigError(sec.key(name), "must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(sec.key(name), "must be an absolute http(s) URL")
    return value


def _path(sec: _Section, name: str, value: str) -> str:
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        raise ConfigError(sec.key(name), "must be a path starting with a single '/'")
    return value


def _read_pem(sec: _Section, pem_key: str, file_key: str, marker: str) -> str | None:
    pem = sec.text(pem_key)
    path = sec.text(file_key)
    if pem and path:
        raise ConfigError(sec.key(pem_key), f"give either {pem_key} or {file_key}, not both")
    if path:
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(sec.key(file_key), f"cannot read file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(sec.key(file_key), f"is not a PEM {marker.lower()}") from None
    if pem is not None and marker not in pem:
        shown = file_key if path else pem_key
        raise ConfigError(sec.key(shown), f"is not a PEM {marker.lower()}")
    return pem


def _check_key_pair(sec: _Section, key_pem: str, cert_pem: str, *, sign: bool) -> None:
    """Refuse at start-up what would otherwise fail at the first login: a key that does
    not load (or is password-protected), a certificate of another key, or a non-RSA key
    for signed requests (they are signed with RSA-SHA256)."""
    key_name = "key_file" if sec.raw.get("key_file") else "key_pem"
    cert_name = "cert_file" if sec.raw.get("cert_file") else "cert_pem"
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(sec.key(key_name), "is not an unencrypted PEM private key") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise ConfigError(sec.key(cert_name), "is not a valid PEM certificate") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError(sec.key(cert_name), "is not the certificate of the private key")
    if sign and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(sec.key("sign_authn_requests"), "needs an RSA key")


# -- sections ---------------------------------------------------------------------


def _base_url(root: _Section) -> str:
    value = root.text("base_url", required=True)
    assert value is not None
    return _public_url("base_url", value)


def _public_url(key: str, value: str) -> str:
    """`value` normalized when it is an absolute http(s) origin with an optional path."""
    problem = (
        "must be an absolute http(s) origin, with the path the app is mounted at if any, "
        "such as https://app.example.com or https://example.com/app (no query, fragment "
        "or user name)"
    )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ConfigError(key, problem) from None
    path = parts.path.rstrip("/")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not _BASE_PATH.fullmatch(path)
        or any(segment in (".", "..") for segment in path.split("/"))
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or "@" in parts.netloc
    ):
        raise ConfigError(key, problem)
    return f"{parts.scheme}://{parts.netloc}{path}"


# A mount path: "/segment/..." of URL path characters (percent-encoded when need be).
_BASE_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")
_QUERY = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/?-]+")


def _secret_key(root: _Section) -> str:
    value = root.get("secret_key")
    if value is None:
        raise ConfigError("secret_key", "is required")
    if not isinstance(value, str):
        raise ConfigError("secret_key", "must be a string")
    if len(value) < 16:
        raise ConfigError("secret_key", "must be at least 16 characters long")
    return value


def _paths(root: _Section, *, protect_default: tuple[str, ...]) -> PathSettings:
    sec = root.section("paths")
    prefix = _path(sec, "prefix", sec.text("prefix", "/saml") or "/saml").rstrip("/")
    if not prefix:
        raise ConfigError(sec.key("prefix"), "must not be '/'")
    protect = tuple(_path(sec, "protect", p) for p in sec.texts("protect", protect_default))
    exempt = tuple(_path(sec, "exempt", p) for p in sec.texts("exempt"))
    after_login = _path(sec, "after_login", sec.text("after_login", "/") or "/")
    after_logout = _path(sec, "after_logout", sec.text("after_logout", "/") or "/")
    endpoints = _endpoint_paths(sec, lambda name: f"{prefix}/{name}/", organization=False)
    sec.done()
    return PathSettings(prefix, protect, exempt, after_login, after_logout, endpoints)


def _endpoint_paths(
    sec: _Section, default: Callable[[str], str], *, organization: bool
) -> dict[str, tuple[str, ...]]:
    """Each endpoint's paths (`sec.<name>`), validated, and no two reaching one path."""
    endpoints: dict[str, tuple[str, ...]] = {}
    for name in ENDPOINTS:
        raw = sec.get(name)
        if raw is None:
            raw = default(name)
        if name == "acs" and isinstance(raw, (list, tuple)) and raw:
            values = tuple(raw)
        elif isinstance(raw, str):
            values = (raw,)
        else:
            wanted = "a path or a non-empty list of paths" if name == "acs" else "a path"
            raise ConfigError(sec.key(name), f"must be {wanted}")
        endpoints[name] = tuple(_endpoint_path(sec, name, v, organization) for v in values)
    seen: list[tuple[str, str]] = []
    for name, values in endpoints.items():
        if len(set(values)) != len(values):
            raise ConfigError(sec.key(name), "lists a path twice")
        # Within one endpoint, the two slash variants may both be listed: they are
        # one endpoint, and two URLs a Destination may name.
        for value in values:
            for other_name, other in seen:
                if other_name != name and paths_overlap(value, other):
                    raise ConfigError(
                        sec.key(name),
                        f"{value!r} is the same path as {sec.key(other_name)} ({other!r})",
                    )
            seen.append((name, value))
    return endpoints


def _endpoint_path(sec: _Section, name: str, value: Any, organization: bool) -> str:
    """One endpoint path: a plain URL path, one trailing slash or none; with `{slug}`
    as one whole segment exactly when it is an organization's."""
    if not isinstance(value, str):
        raise ConfigError(sec.key(name), "must be a path or a list of paths")
    path, mark, query = value.partition("?")
    # An ACS URL registered at IdPs may carry a query (`/callback?connection=x`): it
    # is part of the URL a Destination must name; requests are routed by the path.
    if mark and (name != "acs" or organization or not _QUERY.fullmatch(query)):
        raise ConfigError(
            sec.key(name),
            "may hold a query only as an ACS path of the app's own (`/cb?connection=x`; "
            "no '#', no spaces)",
        )
    segments = path.rstrip("/").split("/")[1:] if path.rstrip("/") else []
    slugs = segments.count(SLUG_PLACEHOLDER)
    if organization and (slugs != 1 or value.count(SLUG_PLACEHOLDER) != 1):
        raise ConfigError(sec.key(name), "must hold {slug} once, as a whole path segment")
    if not organization and SLUG_PLACEHOLDER in value:
        raise ConfigError(
            sec.key(name), "{slug} belongs in an organization's path (tenant_options.paths)"
        )
    plain = "/" + "/".join(s for s in segments if s != SLUG_PLACEHOLDER)
    if (
        not path.startswith("/")
        or path.endswith("//")
        or not _BASE_PATH.fullmatch(plain.rstrip("/"))
        or any(s in (".", "..") for s in segments)
    ):
        raise ConfigError(
            sec.key(name),
            "must be a URL path such as /saml/acs/ (one '/' between segments, no "
            "'.' or '..' segment, no query or fragment)",
        )
    return value


def organization_paths(settings: Settings, slug: str) -> PathSettings:
    """The app's paths with an organization's endpoint paths, its slug filled in."""
    options = settings.tenant_options
    templates = options.paths if options is not None and options.paths else None
    if templates is None:
        prefix = settings.paths.prefix
        templates = {name: (f"{prefix}/{name}/{SLUG_PLACEHOLDER}/",) for name in ENDPOINTS}
    endpoints = {
        name: tuple(path.replace(SLUG_PLACEHOLDER, slug) for path in paths)
        for name, paths in templates.items()
    }
    return dataclasses.replace(settings.paths, endpoints=endpoints)


def _sp(root: _Section, base_url: str, paths: PathSettings) -> SPSettings:
    sec = root.section("sp")
    entity_id = sec.text("entity_id") or f"{base_url}{paths.endpoints['metadata'][0]}"
    key_pem = _read_pem(sec, "key_pem", "key_file", "PRIVATE KEY")
    cert_pem = _read_pem(sec, "cert_pem", "cert_file", "CERTIFICATE")
    if bool(key_pem) != bool(cert_pem):
        raise ConfigError(
            sec.key("cert_file" if key_pem else "key_file"),
            "a signing key and its certificate must be given together",
        )
    # An explicit None asks for no format at all; absent or empty: the email default.
    asked_for_none = "name_id_format" in sec.raw and sec.get("name_id_format") is None
    name_id_format = None if asked_for_none else sec.text("name_id_format") or NAMEID_EMAIL
    sign = sec.flag("sign_authn_requests", False)
    if sign and not key_pem:
        raise ConfigError(sec.key("sign_authn_requests"), "needs sp.key_file and sp.cert_file")
    if key_pem and cert_pem:
        _check_key_pair(sec, key_pem, cert_pem, sign=sign)
    sec.done()
    return SPSettings(entity_id, key_pem, cert_pem, name_id_format, sign)


_IDP_SOURCES = ("metadata_url", "metadata_file", "metadata_xml")


def _idp(root: _Section) -> IdPSettings | None:
    if root.raw.get("idp") is None:
        root.seen.add("idp")
        return None
    sec = root.section("idp")
    values = {
        name: sec.text(name)
        for name in (*_IDP_SOURCES, "entity_id", "sso_url", "slo_url", "x509cert")
    }
    refresh = sec.integer("metadata_refresh_seconds", 86400, minimum=60)
    sec.done()
    given = [name for name in _IDP_SOURCES if values[name]]
    manual = [name for name in ("sso_url", "x509cert") if values[name]]
    if len(given) > 1:
        raise ConfigError(sec.key(given[1]), f"the IdP is already given by idp.{given[0]}")
    if given and manual:
        raise ConfigError(sec.key(manual[0]), f"the IdP is already given by idp.{given[0]}")
    if given:
        source = given[0]
        if values["slo_url"]:
            raise ConfigError(sec.key("slo_url"), f"the IdP is already given by idp.{source}")
    else:
        source = "manual"
        for name in ("entity_id", "sso_url", "x509cert"):
            if not values[name]:
                raise ConfigError(
                    sec.key(name),
                    "is required (or give idp.metadata_url, idp.metadata_file or idp.metadata_xml)",
                )
    for name in ("metadata_url", "sso_url", "slo_url"):
        url = values[name]
        if url:
            _absolute_http_url(sec, name, url)
    if values["metadata_file"] and not Path(values["metadata_file"]).is_file():
        raise ConfigError(sec.key("metadata_file"), "no such file")
    assert refresh is not None
    return IdPSettings(source=source, metadata_refresh_seconds=refresh, **values)


def _attributes(root: _Section) -> AttributeSettings:
    sec = root.section("attributes")
    preset = sec.get("preset", "entra")
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise ConfigError(sec.key("preset"), f"must be one of {sorted(PRESETS)} or None")
    raw_map = sec.get("map")
    raw_map = {} if raw_map is None else raw_map
    if not isinstance(raw_map, Mapping):
        raise ConfigError(sec.key("map"), "must be a dict of user field -> claim name")
    fields = dict(PRESETS[preset]) if preset else {}
    for name, claim in raw_map.items():
        if name not in USER_FIELDS:
            raise ConfigError(f"{sec.key('map')}.{name}", f"unknown field; one of {USER_FIELDS}")
        claims = [claim] if isinstance(claim, str) else claim
        if (
            not isinstance(claims, (list, tuple))
            or not claims
            or not all(isinstance(c, str) and c for c in claims)
        ):
            raise ConfigError(f"{sec.key('map')}.{name}", "must be a claim name or a list of them")
        fields[name] = tuple(claims)
    sec.done()
    return AttributeSettings(preset, fields)


def _roles(root: _Section, preset: str | None) -> RoleSettings:
    sec = root.section("roles")
    default_attrs = PRESET_ROLE_ATTRIBUTES.get(preset or "", ())
    attributes = sec.texts("attribute", default_attrs)
    delimiter = sec.text("delimiter")
    if delimiter == "":
        delimiter = None
    raw_map = sec.get("map")
    raw_map = {} if raw_map is None else raw_map
    if not isinstance(raw_map, Mapping):
        raise ConfigError(sec.key("map"), "must be a dict of IdP value -> list of app roles")
    case_insensitive = sec.flag("case_insensitive", False)
    mapping: dict[str, tuple[str, ...]] = {}
    first_spelling: dict[str, str] = {}
    for idp_value, app_roles in raw_map.items():
        key = f"{sec.key('map')}.{idp_value}"
        if isinstance(app_roles, str):
            app_roles = [app_roles]
        if (
            not isinstance(idp_value, str)
            or not isinstance(app_roles, (list, tuple))
            or not all(isinstance(r, str) and r for r in app_roles)
        ):
            raise ConfigError(key, "must map a string to a list of role names")
        lookup = idp_value.casefold() if case_insensitive else idp_value
        if lookup in first_spelling:
            raise ConfigError(
                key,
                f"same IdP value as {first_spelling[lookup]!r} when roles.case_insensitive "
                "is true: merge the two entries",
            )
        first_spelling[lookup] = idp_value
        mapping[lookup] = tuple(app_roles)
    default = sec.texts("default")
    require = sec.flag("require_mapped_role", False)
    overage_hook = sec.get("overage_hook")
    if overage_hook is not None and not callable(overage_hook):
        raise ConfigError(
            sec.key("overage_hook"), "must be a callable(SAMLUser) -> list of group values"
        )
    sec.done()
    return RoleSettings(
        attributes, delimiter, mapping, default, require, case_insensitive, overage_hook
    )


def _tenant_options(root: _Section, paths: PathSettings) -> TenantOptions:
    sec = root.section("tenant_options")
    resolver = sec.get("resolver")
    key = sec.key("resolver")
    problem = (
        'must be {"path_prefix": "/organizations/"}, {"host": "{slug}.example.com"} or a '
        "callable(path, host) -> slug | None"
    )
    kind: tuple[str, Any]
    if resolver is None:
        kind = ("path_prefix", "/organizations/")
    elif callable(resolver):
        kind = ("callable", resolver)
    elif isinstance(resolver, Mapping) and len(resolver) == 1:
        name, value = next(iter(resolver.items()))
        if name == "path_prefix" and isinstance(value, str):
            _path(sec, "resolver.path_prefix", value)
            kind = ("path_prefix", value.rstrip("/") + "/")
        elif name == "host" and isinstance(value, str) and value.count("{slug}") == 1:
            if not re.fullmatch(r"[a-z0-9.{}-]+", value.lower()):
                raise ConfigError(f"{key}.host", "must be a host name holding {slug} once")
            kind = ("host", value.lower())
        else:
            raise ConfigError(key, problem)
    else:
        raise ConfigError(key, problem)
    cache_seconds = sec.integer("cache_seconds", 10)
    cache_size = sec.integer("cache_size", 1024, minimum=1)
    base_url = sec.text("base_url")
    if base_url is not None:
        key = sec.key("base_url")
        if base_url.count("{slug}") != 1 or not urlsplit(base_url).netloc.startswith("{slug}."):
            raise ConfigError(
                key, 'must be like "https://{slug}.app.example.com": {slug} once, first in the host'
            )
        # Checked as base_url is; the slug is put back after normalizing.
        base_url = _public_url(key, base_url.replace("{slug}", "x-slug-x")).replace(
            "x-slug-x", "{slug}"
        )
    organization = _organization_endpoints(sec, paths)
    sec.done()
    assert cache_seconds is not None and cache_size is not None
    if cache_seconds > 3600:
        raise ConfigError(sec.key("cache_seconds"), "must be at most 3600")
    return TenantOptions(kind, cache_seconds, cache_size, base_url, organization)


def _organization_endpoints(sec: _Section, paths: PathSettings) -> dict[str, tuple[str, ...]]:
    """`tenant_options.paths`: every organization's endpoint paths, none reaching an
    endpoint of the app's own."""
    templates = sec.section("paths")
    prefix = paths.prefix
    organization = _endpoint_paths(
        templates, lambda name: f"{prefix}/{name}/{SLUG_PLACEHOLDER}/", organization=True
    )
    templates.done()
    for name, values in organization.items():
        for value in values:
            for own_name, own_paths in paths.endpoints.items():
                for own in own_paths:
                    if paths_overlap(value, own):
                        raise ConfigError(
                            templates.key(name),
                            f"{value!r} is the same path as paths.{own_name} ({own!r})",
                        )
    return organization


def load_tenant(base: Settings, slug: str, raw: Any) -> TenantSettings:
    """Validate one organization's dict against the app's `Settings` (docs/organizations.md).

    `idp` is required; `attributes` and `roles` replace the app's when given;
    `session` may only shorten the app's timeouts. Raises `ConfigError` naming
    `tenants.<slug>.<key>`.
    """
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ConfigError(
            f"tenants.{str(slug)[:64]}",
            "an organization slug is 1 to 63 lowercase letters, digits and hyphens "
            "(not starting or ending with a hyphen)",
        )
    sec = _Section(raw, f"tenants.{slug}")
    name = sec.text("name", slug) or slug
    if sec.raw.get("idp") is None:
        raise ConfigError(sec.key("idp"), "is required for an organization")
    idp = _idp(sec)
    attributes = _attributes(sec) if "attributes" in sec.raw else base.attributes
    sec.seen.add("attributes")
    roles = _roles(sec, attributes.preset) if "roles" in sec.raw else base.roles
    sec.seen.add("roles")
    session = base.session
    if "session" in sec.raw:
        session_sec = sec.section("session")
        max_age = session_sec.integer("max_age_seconds", base.session.max_age_seconds, minimum=60)
        idle = session_sec.integer("idle_timeout_seconds", None, minimum=60)
        session_sec.done()
        assert max_age is not None
        if max_age > base.session.max_age_seconds:
            raise ConfigError(
                session_sec.key("max_age_seconds"),
                f"may only shorten the app's session.max_age_seconds "
                f"({base.session.max_age_seconds})",
            )
        app_idle = base.session.idle_timeout_seconds
        if idle is not None and app_idle is not None and idle > app_idle:
            raise ConfigError(
                session_sec.key("idle_timeout_seconds"),
                f"may only shorten the app's session.idle_timeout_seconds ({app_idle})",
            )
        session = dataclasses.replace(
            session, max_age_seconds=max_age, idle_timeout_seconds=idle or app_idle
        )
    enabled = sec.flag("enabled", True)
    strict = sec.flag("strict", True)
    sec.done()
    options = base.tenant_options
    base_url = base.base_url
    if options is not None and options.base_url is not None:
        base_url = options.base_url.replace("{slug}", slug)
    paths = organization_paths(base, slug)
    settings = dataclasses.replace(
        base,
        base_url=base_url,
        sp=dataclasses.replace(base.sp, entity_id=f"{base_url}{paths.endpoints['metadata'][0]}"),
        paths=paths,
        idp=idp,
        attributes=attributes,
        roles=roles,
        session=session,
        tenants=None,
        tenant_options=None,
        tenant=slug,
    )
    return TenantSettings(slug, name, enabled, strict, settings)


def _session(root: _Section) -> SessionSettings:
    sec = root.section("session")
    cookie_name = sec.text("cookie_name", "saml_session") or ""
    if not re.fullmatch(r"[A-Za-z0-9_\-.]+", cookie_name):
        raise ConfigError(sec.key("cookie_name"), "must be a plain cookie name")
    max_age = sec.integer("max_age_seconds", 28800, minimum=60)
    idle = sec.integer("idle_timeout_seconds", None, minimum=60)
    https_only = sec.flag("https_only", True)
    same_site = (sec.text("same_site", "lax") or "").lower()
    if same_site not in _SAME_SITE:
        raise ConfigError(sec.key("same_site"), f"must be one of {_SAME_SITE}")
    if same_site == "none" and not https_only:
        raise ConfigError(sec.key("same_site"), "'none' needs session.https_only = true")
    backend = sec.text("backend", "cookie")
    keep = None if sec.get("attributes") is None else sec.texts("attributes")
    if backend not in _SESSION_BACKENDS:
        raise ConfigError(
            sec.key("backend"),
            f"must be one of {_SESSION_BACKENDS} ('store': server-side, in the store)",
        )
    sec.done()
    assert max_age is not None
    return SessionSettings(cookie_name, max_age, idle, https_only, same_site, backend, keep)


def _security(root: _Section) -> SecuritySettings:
    sec = root.section("security")
    values = SecuritySettings(
        want_assertions_signed=sec.flag("want_assertions_signed", True),
        want_response_signed=sec.flag("want_response_signed", False),
        allow_idp_initiated=sec.flag("allow_idp_initiated", True),
        clock_skew_seconds=sec.integer("clock_skew_seconds", 120, minimum=0) or 0,
        allowed_redirect_hosts=tuple(h.lower() for h in sec.texts("allowed_redirect_hosts")),
        reject_sha1=sec.flag("reject_sha1", True),
        max_request_bytes=sec.integer("max_request_bytes", 262144, minimum=1024) or 0,
        trust_forwarded_headers=sec.flag("trust_forwarded_headers", False),
        want_logout_signed=sec.flag("want_logout_signed", True),
        crypto_backend=sec.text("crypto_backend", "inprocess") or "",
        allowed_key_transport=_algorithms(sec, "allowed_key_transport", KEY_TRANSPORT),
        allowed_data_encryption=_algorithms(sec, "allowed_data_encryption", DATA_ENCRYPTION),
    )
    if values.crypto_backend not in CRYPTO_BACKENDS:
        raise ConfigError(sec.key("crypto_backend"), f"must be one of {CRYPTO_BACKENDS}")
    if not (values.want_assertions_signed or values.want_response_signed):
        raise ConfigError(
            sec.key("want_assertions_signed"),
            "at least one of want_assertions_signed / want_response_signed must be true",
        )
    if values.clock_skew_seconds > 3600:
        raise ConfigError(sec.key("clock_skew_seconds"), "must be at most 3600")
    sec.done()
    return values


CRYPTO_BACKENDS = ("xmlsec1", "inprocess")


def _algorithms(sec: _Section, name: str, known: Mapping[str, bool]) -> tuple[str, ...]:
    """A list of algorithm URIs from `known` (default: those `known` marks as safe)."""
    default = tuple(uri for uri, safe in known.items() if safe)
    values = sec.texts(name, default)
    for value in values:
        if value not in known:
            raise ConfigError(
                sec.key(name), f"unknown algorithm {_shown(name, value)}; known: {sorted(known)}"
            )
    if not values:
        raise ConfigError(sec.key(name), "must name at least one algorithm")
    return tuple(dict.fromkeys(values))


_STORE_BACKENDS = ("memory", "redis")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _max_entries(sec: _Section) -> dict[str, int]:
    """`store.max_entries`: the memory store's bound per kind, the defaults filled in."""
    limits = {
        kind: sec.integer(kind, default, minimum=1) or default
        for kind, default in MEMORY_STORE_MAX_ENTRIES.items()
    }
    sec.done()
    return limits


def _store(root: _Section) -> StoreSettings:
    sec = root.section("store")
    backend = sec.text("backend", "memory") or ""
    if backend not in _STORE_BACKENDS:
        raise ConfigError(sec.key("backend"), f"must be one of {_STORE_BACKENDS}")
    url = sec.text("url")
    prefix = sec.text("prefix", "saml:")
    socket_timeout = _seconds(sec, "socket_timeout_seconds", 2.0)
    connect_timeout = _seconds(sec, "connect_timeout_seconds", 2.0)
    max_connections = sec.integer("max_connections", 50, minimum=1)
    max_entries = _max_entries(sec.section("max_entries"))
    sec.done()
    if backend == "memory":
        redis_only = (
            "url",
            "prefix",
            "socket_timeout_seconds",
            "connect_timeout_seconds",
            "max_connections",
        )
        for name in redis_only:
            if sec.raw.get(name) is not None:
                raise ConfigError(sec.key(name), "is only for store.backend = 'redis'")
        return StoreSettings(backend, max_entries=max_entries)
    if sec.raw.get("max_entries") is not None:
        raise ConfigError(
            sec.key("max_entries"),
            "is only for store.backend = 'memory' (Redis is bounded by its maxmemory)",
        )
    if not url:
        raise ConfigError(sec.key("url"), "is required for the redis backend (redis://host:6379/0)")
    _redis_url(sec, url)
    if prefix is None or not re.fullmatch(r"[!-~]{1,100}", prefix):
        raise ConfigError(sec.key("prefix"), "must be 1 to 100 printable characters, no spaces")
    assert max_connections is not None
    return StoreSettings(backend, url, prefix, socket_timeout, connect_timeout, max_connections)


def _redis_url(sec: _Section, url: str) -> None:
    """redis://, rediss:// (TLS) or unix://; the URL itself never appears in an error."""
    problem = "must be a redis://host[:port][/db], rediss://host[:port][/db] or unix:///path URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ConfigError(sec.key("url"), problem) from None
    if parts.scheme not in _REDIS_SCHEMES or any(c.isspace() for c in url):
        raise ConfigError(sec.key("url"), problem)
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ConfigError(sec.key("url"), problem)
        return
    if not parts.hostname or not re.fullmatch(r"/?[0-9]*", parts.path):
        raise ConfigError(sec.key("url"), problem)


def _seconds(sec: _Section, name: str, default: float) -> float:
    value = sec.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(sec.key(name), f"must be a number of seconds, not {_shown(name, value)}")
    if not 0.05 <= value <= 60:
        raise ConfigError(sec.key(name), "must be between 0.05 and 60 seconds")
    return float(value)


def load_settings(raw: Mapping[str, Any] | Settings) -> Settings:
    """Validate a settings dict (docs/configuration.md) into a frozen `Settings`."""
    if isinstance(raw, Settings):
        return raw
    root = _Section(raw, "")
    base_url = _base_url(root)
    secret_key = _secret_key(root)
    tenants = root.get("tenants")
    multi = tenants is not None and (not isinstance(tenants, Mapping) or bool(tenants))
    idp_given = root.raw.get("idp") is not None
    # With organizations and no app-wide IdP, only organization paths are protected.
    paths = _paths(root, protect_default=() if multi and not idp_given else ("/",))
    sp = _sp(root, base_url, paths)
    idp = _idp(root)
    attributes = _attributes(root)
    roles = _roles(root, attributes.preset)
    session = _session(root)
    security = _security(root)
    store = _store(root)
    provision = root.get("provision")
    if provision is not None and not callable(provision):
        raise ConfigError("provision", "must be a callable(SAMLUser) -> SAMLUser")
    if tenants is not None and not isinstance(tenants, Mapping) and not callable(tenants):
        raise ConfigError(
            "tenants", "must be a dict {slug: settings} or a callable(slug) -> dict | None"
        )
    tenant_options = _tenant_options(root, paths) if multi else None
    if not multi and root.raw.get("tenant_options") is not None:
        raise ConfigError("tenant_options", "needs tenants")
    if idp is None and not multi:
        raise ConfigError("idp", "is required (or give tenants)")
    if idp is None and paths.protect:
        raise ConfigError(
            "paths.protect",
            "protects paths outside any organization, which needs a top-level idp to sign "
            "in at; organization paths are protected by tenant_options.resolver",
        )
    root.done()
    settings = Settings(
        base_url=base_url,
        secret_key=secret_key,
        sp=sp,
        idp=idp,
        paths=paths,
        attributes=attributes,
        roles=roles,
        session=session,
        security=security,
        store=store,
        provision=provision,
        tenant_options=tenant_options,
    )
    if isinstance(tenants, Mapping) and tenants:
        return dataclasses.replace(
            settings,
            tenants={slug: load_tenant(settings, slug, value) for slug, value in tenants.items()},
        )
    if multi:
        return dataclasses.replace(settings, tenants=tenants)
    return settings
