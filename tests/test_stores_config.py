"""Settings of the store (`store`) and of server-side sessions (`session.backend`).

A Redis URL may carry a password: it never appears in an error or a repr.
"""

from __future__ import annotations

from typing import Any

import pytest

from saml_middleware.config import StoreSettings, load_settings
from tests.test_config import assert_refused, base

REDIS = "redis://:hunter2-password@redis.internal:6380/2"


def test_store_defaults_to_memory() -> None:
    assert load_settings(base()).store == StoreSettings("memory")


def test_redis_store_settings() -> None:
    store = load_settings(
        base(
            store={
                "backend": "redis",
                "url": REDIS,
                "prefix": "myapp:saml:",
                "socket_timeout_seconds": 0.5,
                "connect_timeout_seconds": 1,
                "max_connections": 10,
            }
        )
    ).store
    assert store == StoreSettings("redis", REDIS, "myapp:saml:", 0.5, 1.0, 10)
    assert "hunter2" not in repr(store)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "redis://localhost:6379/0",
        "rediss://user:pw@cache.example.com:6380/1",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_redis_url_schemes(url: str) -> None:
    store = load_settings(base(store={"backend": "redis", "url": url})).store
    assert store.url == url and store.prefix == "saml:"
    assert store.socket_timeout_seconds == 2.0 and store.max_connections == 50


BAD = [
    ({"backend": "mongodb"}, "store.backend", "one of"),
    ({"backend": "redis"}, "store.url", "required"),
    ({"backend": "redis", "url": ""}, "store.url", "required"),
    ({"backend": "redis", "url": 6379}, "store.url", "string"),
    ({"backend": "redis", "url": "http://:hunter2@redis:6379"}, "store.url", "redis://"),
    ({"backend": "redis", "url": "redis://"}, "store.url", "redis://"),
    ({"backend": "redis", "url": "redis://:hunter2@h:99999"}, "store.url", "redis://"),
    ({"backend": "redis", "url": "redis://:hunter2@h/db"}, "store.url", "redis://"),
    ({"backend": "redis", "url": "redis://:hunter2@h /0"}, "store.url", "redis://"),
    ({"backend": "redis", "url": "unix://relative.sock"}, "store.url", "unix:///"),
    ({"backend": "redis", "url": REDIS, "prefix": ""}, "store.prefix", "printable"),
    ({"backend": "redis", "url": REDIS, "prefix": "a b"}, "store.prefix", "no spaces"),
    ({"backend": "redis", "url": REDIS, "prefix": 5}, "store.prefix", "string"),
    ({"backend": "redis", "url": REDIS, "prefix": "x" * 101}, "store.prefix", "100"),
    (
        {"backend": "redis", "url": REDIS, "socket_timeout_seconds": "2"},
        "store.socket_timeout_seconds",
        "number",
    ),
    (
        {"backend": "redis", "url": REDIS, "socket_timeout_seconds": True},
        "store.socket_timeout_seconds",
        "number",
    ),
    (
        {"backend": "redis", "url": REDIS, "connect_timeout_seconds": 0},
        "store.connect_timeout_seconds",
        "between",
    ),
    (
        {"backend": "redis", "url": REDIS, "connect_timeout_seconds": float("nan")},
        "store.connect_timeout_seconds",
        "number",
    ),
    (
        {"backend": "redis", "url": REDIS, "socket_timeout_seconds": 600},
        "store.socket_timeout_seconds",
        "between",
    ),
    ({"backend": "redis", "url": REDIS, "max_connections": 0}, "store.max_connections", "least"),
    ({"backend": "redis", "url": REDIS, "pool": 3}, "store.pool", "unknown"),
    ({"url": REDIS}, "store.url", "only for store.backend = 'redis'"),
    ({"prefix": "x:"}, "store.prefix", "only for"),
    ({"max_connections": 5}, "store.max_connections", "only for"),
]


@pytest.mark.parametrize(("section", "key", "fragment"), BAD)
def test_bad_store_settings_name_their_key_and_hide_the_url(
    section: dict[str, Any], key: str, fragment: str
) -> None:
    err = assert_refused(base(store=section), key, fragment)
    assert "hunter2" not in str(err)


def test_session_backend_store() -> None:
    settings = load_settings(base(session={"backend": "store"}))
    assert settings.session.backend == "store"
    assert load_settings(base()).session.backend == "cookie"


def test_unknown_session_backend() -> None:
    assert_refused(base(session={"backend": "redis"}), "session.backend", "'cookie', 'store'")
