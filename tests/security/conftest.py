"""Fixtures of the attack suite: the trusted IdP, an attacker, the SP's keys, a canary.

Keys are made at test time (nothing generated is checked in). The IdP is built
once per session: each SP registered with it rebuilds its pysaml2 server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from tests.forge import KeyPair
from tests.helpers import settings_for
from tests.security.harness import IDP_URL, Acs


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
def security_idp(idp_keys: KeyPair) -> DevIdP:
    return DevIdP(IDP_URL, key_pem=idp_keys.key_pem, cert_pem=idp_keys.cert_pem)


@pytest.fixture(scope="session")
def make_acs(security_idp: DevIdP, idp_keys: KeyPair) -> Callable[..., Acs]:
    """`make_acs(**overrides)`: a fresh engine (fresh store) for `settings_for` overrides.

    The IdP learns the engine's metadata when the engine first needs a response.
    """

    def make(**overrides: Any) -> Acs:
        return Acs(Engine(settings_for(security_idp, **overrides)), security_idp, idp_keys)

    return make


class Canary:
    """A TCP listener on 127.0.0.1 that counts connections: proof of no outbound fetch."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/canary"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()


@pytest.fixture(scope="session")
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()
