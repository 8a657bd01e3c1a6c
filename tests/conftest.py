"""Shared fixtures and the test markers.

One definition of each: the development IdPs (`devidp`, whose key nobody needs;
`idp`, whose key the tests hold to forge and re-sign), the key pairs, the engine
builders. Markers are given here by what a test needs (docs/architecture.md, "Tests"):

* `e2e`: a real server in another process, or a browser (tests/e2e/, the
  multi-worker Redis tests, the `saml-middleware serve` test);
* `browser`: drives Chromium through Playwright (the `browser` and `page` fixtures);
* `redis`: talks to a redis-server (one the tests start, or $SAML_TEST_REDIS_URL);
* `simplesamlphp`: a SimpleSAMLphp IdP run by PHP; `realworld`: the recorded corpus;
* `unit`: everything else: in-process, no server of its own beyond loopback threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from tests.forge import KeyPair
from tests.helpers import SP_BASE, Canary, settings_for
from tests.redis_server import own_redis, redis_prefix, redis_url  # noqa: F401 (fixtures)
from tests.security.harness import IDP_URL, Acs

TESTS = Path(__file__).parent
# What a test needs, read from the fixtures it uses (directly or through others).
_BROWSER_FIXTURES = {"browser", "page"}
_REDIS_FIXTURES = {"redis_url", "redis_prefix", "own_redis"}
_E2E_FIXTURES = _BROWSER_FIXTURES | {"workers", "served_dev_idp"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by what it needs; a test with none of those is `unit`."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        # Fixtures asked for at run time (`request.getfixturevalue`) by a backend parameter.
        params = getattr(getattr(item, "callspec", None), "params", {})
        path = item.path.relative_to(TESTS).as_posix()
        marks = set()
        if names & _BROWSER_FIXTURES:
            marks.add("browser")
        if names & _E2E_FIXTURES or path.startswith("e2e/"):
            marks.add("e2e")
        if names & _REDIS_FIXTURES or "redis" in params.values():
            marks.add("redis")
        if "simplesamlphp" in path:
            marks.add("simplesamlphp")
        if path == "test_realworld.py":
            marks.add("realworld")
        for name in sorted(marks) or ["unit"]:
            item.add_marker(name)


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


# -- an IdP whose key the tests hold: to forge a response and re-sign it ---------------
# Keys are made at test time (nothing generated is checked in), once per session.


@pytest.fixture(scope="session")
def idp_keys() -> KeyPair:
    return KeyPair.generate("trusted test IdP")


@pytest.fixture(scope="session")
def attacker_keys() -> KeyPair:
    return KeyPair.generate("attacker")


@pytest.fixture(scope="session")
def sp_keys() -> KeyPair:
    """The SP's own key pair: encryption certificate in its metadata, decryption key."""
    return KeyPair.generate("saml-middleware test SP")


@pytest.fixture(scope="session")
def idp(idp_keys: KeyPair) -> DevIdP:
    """The trusted IdP, signing with `idp_keys`. Each SP registered with it replaces
    the one of the same entity ID (a test registers the SP it mints for)."""
    return DevIdP(IDP_URL, key_pem=idp_keys.key_pem, cert_pem=idp_keys.cert_pem)


@pytest.fixture
def make_idp_engine(idp: DevIdP) -> Callable[..., Engine]:
    """`make_engine` for the keyed `idp`: a fresh engine (fresh store), registered."""

    def make(**overrides: Any) -> Engine:
        engine = Engine(settings_for(idp, **overrides))
        idp.add_service_provider(engine.sp_metadata_xml())
        return engine

    return make


@pytest.fixture(scope="session")
def make_acs(idp: DevIdP, idp_keys: KeyPair) -> Callable[..., Acs]:
    """`make_acs(**overrides)`: a fresh engine (fresh store) for `settings_for` overrides.

    The IdP learns the engine's metadata when the engine first needs a response.
    """

    def make(**overrides: Any) -> Acs:
        return Acs(Engine(settings_for(idp, **overrides)), idp, idp_keys)

    return make


@pytest.fixture
def acs(make_acs: Callable[..., Acs]) -> Acs:
    return make_acs()


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    """A loopback listener that counts connections: proof that nothing was fetched."""
    listener = Canary()
    yield listener
    listener.close()


__all__ = ["SP_BASE"]
