"""At start-up the Redis store checks that the server will not evict keys to make room.

Every key of ours has a TTL, so any `maxmemory-policy` but `noeviction` may drop
a replay mark or a session before it expires. A real redis-server of the
test's own (tests/redis_own_redis.py), set to each policy with CONFIG SET.
"""

from __future__ import annotations

import logging

import pytest

from saml_middleware.config import StoreSettings
from saml_middleware.stores import make_store
from tests.redis_server import RedisServer

STORE_LOGGER = "saml_middleware.store"


def set_policy(server: RedisServer, policy: str) -> None:
    import redis

    with redis.Redis.from_url(server.url) as client:
        client.config_set("maxmemory-policy", policy)


def start_up_warnings(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=STORE_LOGGER):
        make_store(StoreSettings("redis", url))
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == STORE_LOGGER and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_an_evicting_policy_is_warned_about_with_the_fix(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    set_policy(own_redis, policy)
    (warning,) = start_up_warnings(own_redis.url, caplog)
    assert policy in warning and "maxmemory-policy noeviction" in warning


def test_noeviction_gets_no_warning(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    set_policy(own_redis, "noeviction")
    assert start_up_warnings(own_redis.url, caplog) == []


def test_a_server_that_refuses_config_get_is_said_to_be_unchecked(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed services often disable CONFIG: the store says it could not check."""
    import redis

    set_policy(own_redis, "allkeys-lru")
    with redis.Redis.from_url(own_redis.url) as client:
        client.acl_setuser(
            "app",
            enabled=True,
            passwords=["+app-password"],
            keys=["*"],
            commands=["+@all", "-config"],
        )
    url = f"redis://app:app-password@127.0.0.1:{own_redis.port}/0"
    (warning,) = start_up_warnings(url, caplog)
    assert "could not check" in warning and "CONFIG GET refused" in warning
    assert "noeviction" in warning and "app-password" not in warning


def test_an_unreachable_server_at_start_up_is_said_to_be_unchecked(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_redis.url
    own_redis.stop()
    (warning,) = start_up_warnings(url, caplog)
    assert "could not check" in warning
