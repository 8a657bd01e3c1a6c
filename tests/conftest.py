"""Shared fixtures: one development IdP per test session, SP settings around it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from tests.helpers import SP_BASE, settings_for
from tests.redis_server import own_redis, redis_prefix, redis_url  # noqa: F401 (fixtures)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def devidp() -> DevIdP:
    return DevIdP("https://idp.example.test/idp")


@pytest.fixture
def make_engine(devidp: DevIdP) -> Callable[..., Engine]:
    """Build an engine for `settings_for(devidp, **overrides)` and register it at the IdP."""

    def make(clock: Callable[[], float] | None = None, **overrides: Any) -> Engine:
        settings = settings_for(devidp, **overrides)
        engine = Engine(settings, clock=clock) if clock else Engine(settings)
        devidp.add_service_provider(engine.sp_metadata_xml())
        return engine

    return make


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


__all__ = ["SP_BASE"]
