"""The WSGI adapter: the same engine as the ASGI side, behind a WSGI callable.

    flask_app.wsgi_app = SAMLWSGIMiddleware(flask_app.wsgi_app, settings=SETTINGS)
    application = SAMLWSGIMiddleware(get_wsgi_application(), settings=SETTINGS)  # Django

It turns the environ into an `HttpRequest`, lets the engine answer, and for a
request the app should see sets `environ["saml.user"]` (the `SAMLUser`),
`environ["saml.auth_scopes"]` ("authenticated" plus the roles, as ASGI's
`request.auth.scopes`) and `environ["REMOTE_USER"]` (the NameID, so Django's
`RemoteUserMiddleware` and other REMOTE_USER consumers work). The middleware
owns REMOTE_USER: without a SAML session it is removed, so a stale value from
elsewhere can never pass for a signed-in user.

The engine is async; WSGI is not. Each server thread drives it on a private
event loop of its own (closed when the thread ends), so nothing is shared
between threads but the engine itself. Paths are matched on PATH_INFO; every
URL sent to the browser starts with SCRIPT_NAME, so a mounted app works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from .config import Settings
from .engine import Engine
from .errors import SAMLError
from .http import HttpRequest, PassThrough, Response, parse_cookies
from .identity import SAMLUser
from .sessions import SessionBackend
from .stores import Store

log = logging.getLogger("saml_middleware.wsgi")

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
_T = TypeVar("_T")

_READ_CHUNK = 65536


class SAMLWSGIMiddleware:
    """SAML sign-in for a WSGI app (Flask, Django, Pyramid, plain WSGI).

    Use `SAMLWSGIMiddleware(app, settings=SETTINGS)`; the settings are those of
    `SAMLMiddleware` (docs/configuration.md), validated here, at construction,
    and so are `store` and `sessions`.
    """

    def __init__(
        self,
        app: WSGIApp,
        settings: Mapping[str, Any] | Settings,
        *,
        store: Store | None = None,
        sessions: SessionBackend | None = None,
    ) -> None:
        self.app = app
        self.engine = Engine(settings, store=store, sessions=sessions)
        self._loops = _ThreadLoops()

    def invalidate_tenant(self, slug: str | None = None) -> None:
        """Apply an admin's change to an organization (all, for None) from the next request."""
        self.engine.invalidate_tenant(slug)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reply = self._loops.run(self.engine.handle(_request(environ)))
        if isinstance(reply, Response):
            start_response(_status_line(reply.status), _response_headers(reply))
            return [reply.body]
        _put_user(environ, reply.user)
        return self.app(environ, _with_cookie(start_response, reply))


class _ThreadLoops:
    """One event loop per thread, created on first use and closed when the thread ends."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._spare: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop().run_until_complete(coro)
        # Called from inside a running loop (an ASGI-to-WSGI bridge running us on
        # its own loop): that loop cannot be re-entered, so a helper thread runs it.
        return self._helper().submit(self._run_here, coro).result()

    def _run_here(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self._loop().run_until_complete(coro)

    def _loop(self) -> asyncio.AbstractEventLoop:
        holder: _LoopHolder | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = self._local.holder = _LoopHolder()
        return holder.loop

    def _helper(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._spare is None:
                self._spare = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="saml-wsgi"
                )
            return self._spare


class _LoopHolder:
    """Owns a thread's loop; dropped with the thread's locals, it closes the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        loop = self.loop
        if not loop.is_closed() and not loop.is_running():
            loop.close()


def _request(environ: Environ) -> HttpRequest:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if isinstance(value, str) and value:
            headers[key.replace("_", "-").lower()] = value
    if "host" not in headers and environ.get("SERVER_NAME"):
        headers["host"] = f"{environ['SERVER_NAME']}:{environ.get('SERVER_PORT', '')}".rstrip(":")

    async def read_body(limit: int) -> bytes:
        return _read_input(environ, limit)

    return HttpRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=_native_to_text(environ.get("PATH_INFO", "")) or "/",
        query_string=str(environ.get("QUERY_STRING", "")),
        headers=headers,
        cookies=parse_cookies(headers.get("cookie", "")),
        read_body=read_body,
        root_path=_native_to_text(environ.get("SCRIPT_NAME", "")),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
    )


def _native_to_text(value: Any) -> str:
    """PEP 3333 paths are bytes decoded as latin-1: recover the UTF-8 text (as ASGI has it)."""
    text = str(value or "")
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # not a PEP 3333 string: already text
        return text


def _read_input(environ: Environ, limit: int) -> bytes:
    """The body from wsgi.input: never more than `limit` + 1 bytes, never past its end."""
    stream = environ.get("wsgi.input")
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    if declared.isdigit():
        remaining = min(int(declared), limit + 1)
    elif environ.get("wsgi.input_terminated"):
        remaining = limit + 1  # a chunked body the server ends for us
    else:
        remaining = 0  # PEP 3333: without CONTENT_LENGTH, reading may block forever
    if stream is None or remaining == 0:
        return b""
    chunks: list[bytes] = []
    try:
        while remaining > 0:
            chunk = stream.read(min(remaining, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except (OSError, ValueError) as exc:
        log.info("reading the request body failed: %s", exc)
        raise SAMLError("malformed", "The request was interrupted.", 400) from None
    body = b"".join(chunks)
    if len(body) > limit:
        raise SAMLError("too_large", "The sign-in answer is too large.", 413)
    return body


def _put_user(environ: Environ, user: SAMLUser) -> None:
    environ["saml.user"] = user
    if user.is_authenticated:
        environ["saml.auth_scopes"] = ("authenticated", *user.roles)
        environ["REMOTE_USER"] = user.name_id
    else:
        environ["saml.auth_scopes"] = ()
        environ.pop("REMOTE_USER", None)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _response_headers(reply: Response) -> list[tuple[str, str]]:
    return [*reply.headers, ("content-length", str(len(reply.body)))]


def _with_cookie(start_response: StartResponse, reply: PassThrough) -> StartResponse:
    if reply.set_cookie is None:
        return start_response
    cookie = reply.set_cookie

    def start_with_cookie(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        return start_response(status, [*headers, ("Set-Cookie", cookie)], exc_info)

    return start_with_cookie
