"""Stores for state shared between the login request and the IdP's answer."""

from __future__ import annotations

from ..config import StoreSettings
from ..errors import ConfigError
from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "make_store"]


def make_store(settings: StoreSettings) -> Store:
    """Build the store named by `store.backend`."""
    if settings.backend == "memory":
        return MemoryStore()
    raise ConfigError("store.backend", f"unknown backend {settings.backend!r}")
