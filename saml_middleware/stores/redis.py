"""The shared store: Redis, for more than one worker process or host.

    "store": {"backend": "redis", "url": "redis://redis.internal:6379/0", "prefix": "saml:"}

Every key gets `prefix`, so one Redis database can serve several apps. The
atomic operations are Redis's own: `SET NX PX` for the replay cache (of many
workers posting the same assertion at once, exactly one is told "first"),
`GETDEL` for taking an outstanding LogoutRequest once (a Lua script on servers
older than 6.2), `SET XX PX` for refreshing a session without resurrecting one that
Single Logout just deleted. Values are JSON.

One client per event loop. The engine is async in both adapters, but a
`redis.asyncio` connection (its streams, the pool's locks) belongs to the loop
that created it: ASGI runs one loop per process, so it gets one client; the
WSGI adapter gives each server thread a private, long-lived loop, so each
thread gets its own small pool, which is what a thread-safe sync client would
have given it too (one connection per busy thread), without a second code path
or a thread hop per command on the ASGI side. Clients of loops that have
closed are dropped when the next client is made.

Bounded waits: `connect_timeout_seconds` and `socket_timeout_seconds` on
every socket, one retry (a pooled connection that died with a Redis restart is
replaced at once, so recovery needs no restart of the app), and a bounded wait
for a free connection (`max_connections` per loop). Any failure is
`StoreUnavailable` (503); the outage is logged once, with the server's
address but never the URL's password, and its end is logged too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ..errors import ConfigError
from .base import StoreUnavailable

log = logging.getLogger("saml_middleware.store")
_T = TypeVar("_T")

# GETDEL for servers without it (< 6.2): GET and DEL in one atomic script.
_TAKE_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""


def redacted(url: str) -> str:
    """Where the server is (scheme://host:port or the socket path), never the password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "(invalid URL)"


def _milliseconds(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisStore:
    """The `Store` interface on Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "saml:",
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        max_connections: int = 50,
    ) -> None:
        self.prefix = prefix
        self.location = redacted(url)
        self._url = url
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "max_connections": max_connections,
            "timeout": socket_timeout,  # the wait for a free pooled connection
            "retry": Retry(NoBackoff(), 1),
        }
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._lock = threading.Lock()
        self._getdel = True
        self._down = False
        self._new_client()  # a bad URL is a start-up error, not a 503 at the first login

    def check_eviction_policy(self) -> None:
        """Warn at start-up when the server may evict keys to make room.

        Every key of ours has a TTL, so every `maxmemory-policy` but
        `noeviction` can drop a replay mark or a session before it expires (an
        assertion accepted twice, a session Single Logout cannot find). One
        synchronous command: start-up may have no event loop yet.
        """
        try:
            client = SyncRedis.from_url(
                self._url,
                socket_timeout=self._options["socket_timeout"],
                socket_connect_timeout=self._options["socket_connect_timeout"],
            )
            try:
                policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
            finally:
                client.close()
        except ResponseError:  # CONFIG renamed or disabled (most managed services)
            log.warning(
                "could not check the Redis store's maxmemory-policy at %s (CONFIG GET refused): "
                "make sure it is 'noeviction', or replay marks and sessions may be evicted",
                self.location,
            )
            return
        except (RedisError, OSError) as exc:
            log.warning(
                "could not check the Redis store's maxmemory-policy at %s (%s)",
                self.location,
                type(exc).__name__,
            )
            return
        if isinstance(policy, bytes):
            policy = policy.decode("utf-8", "replace")
        if policy != "noeviction":
            log.warning(
                "the Redis store at %s has maxmemory-policy %r: when it fills up it evicts "
                "keys, replay marks and sessions included (an assertion accepted twice, a "
                "session Single Logout cannot end). Fix: CONFIG SET maxmemory-policy "
                "noeviction (maxmemory-policy noeviction in redis.conf)",
                self.location,
                policy,
            )

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r}, prefix={self.prefix!r})"

    # -- clients, one per event loop ------------------------------------------------

    def _new_client(self) -> aioredis.Redis:
        try:
            pool = BlockingConnectionPool.from_url(self._url, **self._options)
            return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
        except (ValueError, TypeError) as exc:
            # redis-py's messages may quote the URL; ours never does.
            raise ConfigError(
                "store.url", f"is not a valid Redis URL ({type(exc).__name__})"
            ) from None

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        with self._lock:
            for closed in [other for other in self._clients if other.is_closed()]:
                del self._clients[closed]  # its sockets close when collected
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = self._new_client()
        return client

    async def aclose(self) -> None:
        """Close the connections of the running loop's client (tests, CLI, shutdown)."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- error handling ---------------------------------------------------------------

    async def _run(self, command: Callable[[aioredis.Redis], Awaitable[_T]]) -> _T:
        try:
            result = await command(self._client())
        except RedisError as exc:
            self._failed(exc)
            raise StoreUnavailable() from None
        except OSError as exc:  # a socket error redis-py did not wrap
            self._failed(exc)
            raise StoreUnavailable() from None
        if self._down:
            self._down = False
            log.warning("the Redis store at %s is reachable again", self.location)
        return result

    def _failed(self, exc: Exception) -> None:
        # Connection errors carry host:port only; a server's error reply could
        # echo a command, so only its type is logged.
        detail = type(exc).__name__
        if not isinstance(exc, ResponseError):
            detail = f"{detail}: {str(exc)[:200]}"
        if not self._down:
            self._down = True
            log.error(
                "the Redis store at %s failed (%s): sign-in answers 503 until it is back",
                self.location,
                detail,
            )
        else:
            log.debug("the Redis store at %s still fails (%s)", self.location, detail)

    # -- the Store interface ----------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        data = json.dumps(value, separators=(",", ":"))
        await self._run(lambda r: r.set(self._key(key), data, px=_milliseconds(ttl)))

    async def replace(self, key: str, value: dict[str, Any], ttl: float) -> bool:
        data = json.dumps(value, separators=(",", ":"))
        done = await self._run(
            lambda r: r.set(self._key(key), data, px=_milliseconds(ttl), xx=True)
        )
        return bool(done)

    async def get(self, key: str) -> dict[str, Any] | None:
        return _loads(await self._run(lambda r: r.get(self._key(key))))

    async def pop(self, key: str) -> dict[str, Any] | None:
        name = self._key(key)
        if not self._getdel:
            return _loads(await self._run(lambda r: r.eval(_TAKE_SCRIPT, 1, name)))

        async def take(r: aioredis.Redis) -> Any:
            try:
                return await r.getdel(name)
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self._getdel = False
                log.info("this Redis server has no GETDEL (before 6.2): using a Lua script")
                return await r.eval(_TAKE_SCRIPT, 1, name)

        return _loads(await self._run(take))

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        done = await self._run(
            lambda r: r.set(self._key(key), b"1", px=_milliseconds(ttl), nx=True)
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._run(lambda r: r.delete(self._key(key)))

    async def add_member(self, key: str, member: str, ttl: float) -> None:
        name = self._key(key)

        async def add(r: aioredis.Redis) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.sadd(name, member)
                pipe.pexpire(name, _milliseconds(ttl))
                return await pipe.execute()

        await self._run(add)

    async def members(self, key: str) -> set[str]:
        raw = await self._run(lambda r: r.smembers(self._key(key)))
        return {m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in raw}

    async def remove_member(self, key: str, member: str) -> None:
        await self._run(lambda r: r.srem(self._key(key), member))


def _loads(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None  # not ours (another app's key under a shared prefix): no value
    return value if isinstance(value, dict) else None
