"""Stores for state shared between the login request and the IdP's answer."""

from __future__ import annotations

from ..config import StoreSettings
from ..errors import ConfigError
from .base import Store, StoreFull, StoreUnavailable
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "StoreFull", "StoreUnavailable", "make_store"]


def make_store(settings: StoreSettings) -> Store:
    """Build the store named by `store.backend`."""
    if settings.backend == "memory":
        return MemoryStore(settings.max_entries)
    if settings.backend == "redis":
        try:
            from .redis import RedisStore
        except ImportError:
            raise ConfigError(
                "store.backend",
                "'redis' needs the redis client: pip install 'saml-middleware[redis]'",
            ) from None
        assert settings.url is not None  # config.py requires it
        store = RedisStore(
            settings.url,
            prefix=settings.prefix,
            socket_timeout=settings.socket_timeout_seconds,
            connect_timeout=settings.connect_timeout_seconds,
            max_connections=settings.max_connections,
        )
        store.check_eviction_policy()
        return store
    raise ConfigError("store.backend", f"unknown backend {settings.backend!r}")
