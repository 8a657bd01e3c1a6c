"""Test helpers: settings around the development IdP, a tiny browser for the engine, a
clock to move, a loopback canary, the property tests' budget."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import hypothesis

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, HttpRequest, PassThrough, Response

SP_BASE = "https://app.example.test"
SECRET = "test-secret-key-0123456789abcdef"


def settings_for(trusted_idp: DevIdP, **overrides: Any) -> dict[str, Any]:
    """A valid settings dict trusting `trusted_idp`; `section__key=value` overrides one key."""
    settings: dict[str, Any] = {
        "base_url": SP_BASE,
        "secret_key": SECRET,
        "idp": {"metadata_xml": trusted_idp.metadata_xml()},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
        # scripts/test runs the ACS and security suites once per backend.
        "security": {"crypto_backend": os.environ.get("SAML_TEST_CRYPTO_BACKEND", "inprocess")},
    }
    for key, value in overrides.items():
        if "__" in key:
            section, name = key.split("__", 1)
            settings.setdefault(section, {})[name] = value
        else:
            settings[key] = value
    return copy.deepcopy(settings) if not callable(settings.get("provision")) else settings


class Clock:
    """A clock the test moves: `now`, in seconds since the epoch (default: the real time)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def request(
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> HttpRequest:
    """An `HttpRequest` for `url` (path and query), with an optional urlencoded form."""
    parts = urlsplit(url)
    all_headers = {k.lower(): v for k, v in (headers or {}).items()}
    if form is not None:
        body = urlencode(form).encode()
        all_headers.setdefault("content-type", "application/x-www-form-urlencoded")
    payload = body or b""

    async def read_body(limit: int) -> bytes:
        return payload

    return HttpRequest(
        method=method,
        path=parts.path,
        query_string=parts.query,
        headers=all_headers,
        cookies=dict(cookies or {}),
        read_body=read_body,
    )


def header(reply: Response, name: str) -> str | None:
    for key, value in reply.headers:
        if key.lower() == name:
            return value
    return None


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def set_cookies(reply: Response, name: str | None = None) -> list[str]:
    """The reply's Set-Cookie headers (those of cookie `name` only, when given)."""
    return [
        value
        for key, value in reply.headers
        if key.lower() == "set-cookie" and (name is None or value.startswith(name + "="))
    ]


def remember_cookies(cookies: dict[str, str], reply: Response | PassThrough) -> None:
    """Apply every Set-Cookie of `reply` to a browser's cookie jar (an empty value deletes)."""
    if isinstance(reply, Response):
        set_cookies = [value for name, value in reply.headers if name.lower() == "set-cookie"]
    else:
        set_cookies = [reply.set_cookie] if reply.set_cookie else []
    for set_cookie in set_cookies:
        name = set_cookie.split("=", 1)[0]
        value = cookie_value(set_cookie)
        if value:
            cookies[name] = value
        else:
            cookies.pop(name, None)


@dataclass
class Browser:
    """Follows the SP-initiated flow against an engine and the development IdP."""

    engine: Engine
    idp: DevIdP
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def cookie_name(self) -> str:
        return self.engine.settings.session.cookie_name

    async def get(self, url: str, *, accept: str = "text/html") -> Response | PassThrough:
        reply = await self.engine.handle(
            request("GET", url, headers={"accept": accept}, cookies=self.cookies)
        )
        self._remember(reply)
        return reply

    async def post_acs(self, saml_response: str, relay_state: str | None = None) -> Response:
        form = {"SAMLResponse": saml_response}
        if relay_state is not None:
            form["RelayState"] = relay_state
        reply = await self.engine.handle(
            request("POST", "/saml/acs/", form=form, cookies=self.cookies)
        )
        assert isinstance(reply, Response)
        self._remember(reply)
        return reply

    def _remember(self, reply: Response | PassThrough) -> None:
        remember_cookies(self.cookies, reply)

    async def start_login(self, page: str = "/dashboard") -> tuple[str, str | None]:
        """Visit a protected page; return (AuthnRequest, RelayState) sent to the IdP."""
        reply = await self.get(page)
        assert isinstance(reply, Response) and reply.status == 303
        reply = await self.get(header(reply, "location") or "")
        assert isinstance(reply, Response) and reply.status == 303
        location = header(reply, "location") or ""
        assert location.startswith(self.idp.sso_redirect_url)
        query = parse_qs(urlsplit(location).query)
        return query["SAMLRequest"][0], query.get("RelayState", [None])[0]

    async def login(self, user: str = "bsimon", page: str = "/dashboard") -> Response:
        """The whole SP-initiated round trip; returns the ACS reply."""
        saml_request, relay_state = await self.start_login(page)
        info = self.idp.parse_authn_request(saml_request, "redirect")
        saml_response = self.idp.create_response(
            user,
            sp_entity_id=info.sp_entity_id,
            in_response_to=info.request_id,
            acs_url=info.acs_url,
        )
        return await self.post_acs(saml_response, relay_state)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a server the test started: terminate, then kill if it will not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


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


# The property tests' budget: `SAML_FUZZ_EXAMPLES` examples in all (default 200),
# shared between a module's tests in proportion to their cost.
FUZZ_EXAMPLES = int(os.environ.get("SAML_FUZZ_EXAMPLES", "200"))


def fuzz_budget(share: float, *, at_least: int, derandomize: bool = False) -> Any:
    """Hypothesis settings for a test with `share` of the budget: no deadline (xmlsec
    calls vary), no example database (nothing written into the checkout)."""
    return hypothesis.settings(
        max_examples=max(at_least, int(FUZZ_EXAMPLES * share)),
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=[
            hypothesis.HealthCheck.too_slow,
            hypothesis.HealthCheck.data_too_large,
        ],
        database=None,
    )
