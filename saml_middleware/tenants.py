"""Tenants (organizations, in user-facing text): which one a request belongs to, and each
one's IdP.

A `Tenant` is one IdP relationship with its own SP entity ID and ACS URL: the
app's own (the top-level `idp`) or one organization's. `Tenants` finds an
organization's tenant by slug, from the settings dict or from the app's loader
(its own database, as in Sentry or Contentstack), caching loader results for
`tenant_options.cache_seconds` so an admin's change applies within that time,
or at once after `invalidate`. A tenant keeps its parsed metadata and its pysaml2
client across reloads while the organization's settings do not change.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import LRUCache, TTLCache

from .config import SLUG, Settings, TenantSettings, load_tenant
from .errors import ConfigError, SAMLError
from .hooks import run_hook
from .metadata import IdPMetadata
from .routing import SLUG_PLACEHOLDER, canonical_host, canonical_slug, path_spellings
from .saml.sp import ServiceProvider

log = logging.getLogger("saml_middleware.tenants")

# How long a loader failure or a broken organization is remembered before the
# loader is asked again (when caching is off).
_RETRY_SECONDS = 5
TENANT_UNAVAILABLE = "This organization's sign-in settings cannot be read right now: try again."
TENANT_MISCONFIGURED = (
    "This organization's single sign-on is not set up correctly: ask its administrator."
)


class Tenant:
    """One IdP relationship: its merged settings, its metadata, its pysaml2 client."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        enabled: bool = True,
        strict: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.idp is not None
        self.settings = settings
        self.slug = settings.tenant
        self.name = name or self.slug or ""
        self.enabled = enabled
        self.strict = strict
        # `clock` judges the metadata's validUntil (the engine's clock: `diagnose --at`).
        self.metadata = IdPMetadata(settings.idp, wall_clock=clock)
        self._sp: ServiceProvider | None = None
        self._sp_version = 0

    @classmethod
    def of(cls, loaded: TenantSettings, clock: Callable[[], float] = time.time) -> Tenant:
        return cls(
            loaded.settings,
            name=loaded.name,
            enabled=loaded.enabled,
            strict=loaded.strict,
            clock=clock,
        )

    def adopt(self, old: Tenant) -> None:
        """Keep `old`'s parsed metadata (and pysaml2 client) when the IdP is the same:
        switching SSO on, or changing a role mapping, must not fetch metadata again."""
        if self.settings.idp != old.settings.idp:
            return
        self.metadata = old.metadata
        if (self.settings.sp, self.settings.security) == (old.settings.sp, old.settings.security):
            self._sp, self._sp_version = old._sp, old._sp_version

    def _client(self) -> ServiceProvider:
        info = self.metadata.current()
        if self._sp is None or self.metadata.version != self._sp_version:
            self._sp = ServiceProvider(self.settings, info)
            self._sp_version = self.metadata.version
        return self._sp

    def service_provider_sync(self) -> ServiceProvider:
        """The pysaml2 client for the metadata now in force (loading it first if need be).

        Raises `ConfigError` when the IdP description cannot be read.
        """
        self.metadata.refresh_if_due_sync()
        return self._client()

    async def service_provider(self) -> ServiceProvider:
        """`service_provider_sync` without blocking the event loop on a fetch.

        An organization's metadata that cannot be read is the organization's
        problem, not the user's: 503 with a short reason, the cause logged.
        """
        try:
            if self.metadata.version == 0:
                await asyncio.to_thread(self.metadata.refresh_if_due_sync)
            else:
                await self.metadata.refresh_if_due()
            return self._client()
        except ConfigError as err:
            log.warning("organization %s: the IdP cannot be used: %s", self.slug, err)
            raise SAMLError("tenant_misconfigured", TENANT_MISCONFIGURED, 503) from None

    def home(self, fallback: str, resolver: tuple[str, Any] | None) -> str:
        """Where a login lands without a `next`: the organization's own path if known."""
        if self.slug is not None and resolver is not None and resolver[0] == "path_prefix":
            return f"{resolver[1]}{self.slug}/"
        return fallback


class _Broken:
    """A loader answer that failed validation (kept briefly, like a good one)."""

    def __init__(self, error: ConfigError) -> None:
        self.error = error


class Tenants:
    """The organizations of one engine: by slug, and by request path or host."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        assert settings.tenants is not None and settings.tenant_options is not None
        self._base = settings
        self._clock = clock
        self.options = settings.tenant_options
        self._lock = threading.Lock()
        self._fixed: dict[str, Tenant] | None = None
        self._loader: Callable[..., Any] | None = None
        if isinstance(settings.tenants, Mapping):
            self._fixed = {slug: Tenant.of(t, clock) for slug, t in settings.tenants.items()}
            for tenant in self._fixed.values():
                tenant.metadata.load()  # every settings error at start-up
        else:
            self._loader = settings.tenants
        ttl = self.options.cache_seconds or _RETRY_SECONDS
        self._answers: TTLCache[str, Tenant | _Broken | None] = TTLCache(
            maxsize=self.options.cache_size, ttl=ttl
        )
        # Realms by slug with the raw dict they were built from: reused (parsed
        # metadata, pysaml2 client) while the loader returns an equal dict.
        self._tenants: LRUCache[str, tuple[Any, Tenant]] = LRUCache(maxsize=self.options.cache_size)
        kind, value = self.options.resolver
        # "{slug}.app.example.com" -> ("", ".app.example.com"): what surrounds the slug.
        self._host_parts = tuple(value.split(SLUG_PLACEHOLDER, 1)) if kind == "host" else None

    # -- which organization ---------------------------------------------------------

    def resolve(self, path: str, host: str) -> str | None:
        """The slug a request path (or host) belongs to, or None for the app's own paths.

        Paths and hosts are read in canonical form (`routing`): `/organizations/A/`,
        `/organizations//a/` and the host `a.app.example.com.` name organization
        `a`. One that names something other than a valid slug, or two different
        organizations in two spellings, is refused (`SAMLError` 400): an app's
        own lookup might still find an organization there, so it is never
        "no organization". A callable resolver that raises is the app's failure:
        the exception propagates (the engine answers 503 and logs it).
        """
        kind, value = self.options.resolver
        if kind == "path_prefix":
            return self._slug_of_path(path, value)
        if kind == "host":
            return self._slug_of_host(host)
        slug = value(path, host)
        if not isinstance(slug, str) or not SLUG.fullmatch(slug):
            return None
        return slug

    def _slug_of_path(self, path: str, prefix: str) -> str | None:
        found = set()
        for spelling in path_spellings(path):
            head = spelling[: len(prefix)]
            if head != prefix and head.lower() != prefix.lower():
                continue
            segment = spelling[len(prefix) :].split("/", 1)[0]
            if segment not in ("", ".", ".."):  # no name here: the canonical spelling says
                found.add(canonical_slug(segment))
        if None in found or len(found) > 1:
            raise _not_an_organization()
        return found.pop() if found else None

    def _slug_of_host(self, host: str) -> str | None:
        assert self._host_parts is not None
        if not host.strip():
            return None
        name = canonical_host(host)
        if name is None:
            raise _not_an_organization()
        head, tail = self._host_parts
        if len(name) <= len(head) + len(tail) or not (
            name.startswith(head) and name.endswith(tail)
        ):
            return None
        slug = canonical_slug(name[len(head) : len(name) - len(tail)])
        if slug is None:
            raise _not_an_organization()
        return slug

    # -- by slug ----------------------------------------------------------------------

    async def get(self, slug: str) -> Tenant | None:
        """The organization's tenant, None for an unknown slug.

        Raises `SAMLError` (503) when the loader fails with nothing known of the
        organization, or when its settings are not valid (the cause is logged).
        """
        if not SLUG.fullmatch(slug):
            return None
        if self._fixed is not None:
            return self._fixed.get(slug)
        with self._lock:
            cached = self._answers.get(slug, _MISSING)
        if cached is _MISSING:
            cached = await self._load(slug)
        if isinstance(cached, _Broken):
            raise SAMLError("tenant_misconfigured", TENANT_MISCONFIGURED, 503)
        assert cached is None or isinstance(cached, Tenant)
        return cached

    async def _load(self, slug: str) -> Tenant | _Broken | None:
        assert self._loader is not None
        failure = SAMLError("tenant_unavailable", TENANT_UNAVAILABLE, 503)
        try:
            raw = await run_hook(
                self._loader,
                slug,
                failure=failure,
                log=log,
                failed=("the tenants loader failed for organization %s", slug),
            )
        except SAMLError as err:
            if err is not failure:  # the loader's own refusal (AccessDenied)
                raise
            with self._lock:
                known = self._tenants.get(slug)
            if known is None:
                raise
            log.warning("organization %s: keeping its last known settings", slug)
            answer: Tenant | _Broken | None = known[1]
            with self._lock:
                self._answers[slug] = answer
            return answer
        answer = self._tenant_from(slug, raw)
        with self._lock:
            self._answers[slug] = answer
        return answer

    def _tenant_from(self, slug: str, raw: Any) -> Tenant | _Broken | None:
        if raw is None:
            with self._lock:
                self._tenants.pop(slug, None)
            return None
        with self._lock:
            known = self._tenants.get(slug)
        if known is not None and _same(known[0], raw):
            return known[1]
        try:
            tenant = Tenant.of(load_tenant(self._base, slug, raw), self._clock)
        except ConfigError as err:
            log.error("organization %s has invalid settings: %s", slug, err)
            return _Broken(err)
        if known is not None:
            tenant.adopt(known[1])
        try:
            snapshot = copy.deepcopy(raw)
        except Exception:  # an object that cannot be copied: no reuse, no harm
            snapshot = _MISSING
        with self._lock:
            self._tenants[slug] = (snapshot, tenant)
        return tenant

    def invalidate(self, slug: str | None = None) -> None:
        """Forget cached loader answers (one organization's, or all), and read the IdP
        metadata again: an admin's change, or a certificate just rotated at the IdP,
        applies at the next request of this process (other processes: within
        `tenant_options.cache_seconds`, and the metadata refresh interval)."""
        with self._lock:
            if slug is None:
                self._answers.clear()
            else:
                self._answers.pop(slug, None)
            known = dict(self._fixed or {})
            known.update((name, tenant) for name, (_, tenant) in self._tenants.items())
        for name, tenant in known.items():
            if slug in (None, name):
                tenant.metadata.invalidate()

    def problem(self, slug: str) -> str | None:
        """Why an organization's settings were refused (for Test SSO), if they were."""
        with self._lock:
            cached = self._answers.get(slug)
        return str(cached.error) if isinstance(cached, _Broken) else None


_MISSING: Any = object()


def _not_an_organization() -> SAMLError:
    return SAMLError("invalid_path", "This address names no valid organization.", 400)


def _same(old: Any, new: Any) -> bool:
    try:
        return old is not _MISSING and bool(old == new)
    except Exception:
        return False


def tenant_disabled(tenant: Tenant) -> SAMLError:
    """The refusal for an organization whose single sign-on is switched off."""
    return SAMLError(
        "tenant_disabled",
        f"Single sign-on is switched off for {tenant.name}: sign in another way, or ask "
        "its administrator.",
        403,
    )
