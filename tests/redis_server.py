"""A private redis-server for the tests: on 127.0.0.1, a free port, stopped at the end.

`redis_url` (session fixture) is the shared server the store, session and SLO
suites use, each test under its own key prefix. It is `$SAML_TEST_REDIS_URL`
when set (CI may provide one), else a `redis-server` this fixture starts
(Debian's package; `scripts/test` installs it) with no persistence. Without
either, the Redis tests are skipped, unless `$SAML_REQUIRE_REDIS` is set (as
`scripts/test` does): then they fail, so CI cannot pass without Redis.

`RedisServer` is also used directly by the failure tests, which stop and
restart their own server. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import stop_process

START_SECONDS = 10.0
STOP_SECONDS = 5.0
# Loopback only, nothing written to disk, in the foreground (the fixture owns the process).
SERVER_OPTIONS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING there (raw RESP: no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_unavailable() -> str | None:
    """Why no Redis test can run here, or None when one can."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed (pip install 'saml-middleware[redis]')"
    if os.environ.get("SAML_TEST_REDIS_URL"):
        return None
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    return None


def skip_or_fail_without_redis() -> None:
    reason = redis_unavailable()
    if reason is None:
        return
    if os.environ.get("SAML_REQUIRE_REDIS"):
        pytest.fail(f"Redis is required here (SAML_REQUIRE_REDIS is set): {reason}")
    pytest.skip(reason)


class RedisServer:
    """One redis-server process on 127.0.0.1 that a test may stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None:
            return
        self.process = subprocess.Popen(
            ["redis-server", *SERVER_OPTIONS, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")
            if ping("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {START_SECONDS}s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        stop_process(process, STOP_SECONDS)


def started_server() -> RedisServer:
    """A started server on a free port (a few tries: the port may be taken meanwhile)."""
    for attempt in range(3):
        server = RedisServer()
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server shared by the whole test session."""
    skip_or_fail_without_redis()
    given = os.environ.get("SAML_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = started_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and restart."""
    skip_or_fail_without_redis()
    if shutil.which("redis-server") is None:
        pytest.skip("this test starts and stops its own redis-server, which is not installed")
    server = started_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own: tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"
