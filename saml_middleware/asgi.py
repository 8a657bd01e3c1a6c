"""The ASGI adapter: a pure ASGI middleware around the engine.

It translates the scope into an `HttpRequest`, fills `scope["user"]` and
`scope["auth"]` (so Starlette's `request.user` and `@requires(...)` work
unchanged), and only touches the app's response to add a refreshed session
cookie. Lifespan and other scopes pass straight through; a websocket on a
protected path without a session is closed with 1008 (policy violation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .engine import Engine
from .errors import SAMLError
from .http import HttpRequest, PassThrough, Response, parse_cookies
from .identity import SAMLUser
from .sessions import SessionBackend
from .stores import Store


class SAMLMiddleware:
    """SAML sign-in for an ASGI app.

    Use `SAMLMiddleware(app, settings=SETTINGS)` or
    `app.add_middleware(SAMLMiddleware, settings=SETTINGS)`. `store` and
    `sessions` replace the store and the session backend the settings name
    (docs/configuration.md, "Your own store or session backend").
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Mapping[str, Any] | Settings,
        *,
        store: Store | None = None,
        sessions: SessionBackend | None = None,
    ) -> None:
        self.app = app
        self.engine = Engine(settings, store=store, sessions=sessions)
        self._cookie_name = self.engine.settings.session.cookie_name

    def invalidate_tenant(self, slug: str | None = None) -> None:
        """Apply an admin's change to an organization (all, for None) from the next request."""
        self.engine.invalidate_tenant(slug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # inline: one coroutine less per request
            user = self.engine.signed_in_user(
                _path(scope), _cookies(scope.get("headers", ())).get(self._cookie_name)
            )
            if user is not None:  # nothing but a valid cookie session to look at
                _put_user(scope, user)
                await self.app(scope, receive, send)
                return
            reply = await self.engine.handle(_request(scope, receive))
            if isinstance(reply, Response):
                await _send_response(reply, send)
                return
            _put_user(scope, reply.user)
            await self.app(scope, receive, _with_cookie(send, reply))
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = await self.engine.websocket_user(_request(scope, receive))
        if user is None:
            await send(
                {"type": "websocket.close", "code": 1008, "reason": "authentication required"}
            )
            return
        _put_user(scope, user)
        await self.app(scope, receive, send)


def _path(scope: Scope) -> str:
    """The request path below the mount point."""
    root_path = scope.get("root_path", "")
    path = scope.get("path", "/")
    return _route_path(path, root_path) if root_path or not path else path


def _request(scope: Scope, receive: Receive) -> HttpRequest:
    raw_headers = scope.get("headers", ())
    root_path = scope.get("root_path", "")
    scheme = scope.get("scheme", "http")
    if type(scheme) is not str:
        scheme = str(scheme)
    return HttpRequest(
        method=scope.get("method", "GET"),
        path=_path(scope),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=_header_dict(raw_headers),
        cookies=_cookies(raw_headers),
        read_body=_BodyReader(receive).read,
        root_path=root_path,
        scheme=_HTTP_SCHEMES.get(scheme, scheme),
    )


_HTTP_SCHEMES = {"wss": "https", "ws": "http"}


def _header_dict(raw_headers: Any) -> dict[str, str]:
    """Lower-case names; repeated headers joined (Cookie with "; ", others with ", ")."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        joiner = "; " if name == "cookie" else ", "
        headers[name] = f"{headers[name]}{joiner}{value}" if name in headers else value
    return headers


def _cookies(raw_headers: Any) -> dict[str, str]:
    """The cookies of the Cookie headers (Starlette's parser), cached by header value."""
    values = [
        v for n, v in raw_headers if n == b"cookie" or (len(n) == 6 and n.lower() == b"cookie")
    ]
    if not values:
        return {}
    header = values[0] if len(values) == 1 else b"; ".join(values)
    parsed = _parsed_cookies.get(header)
    if parsed is None:
        parsed = parse_cookies(header.decode("latin-1"))
        if len(header) <= _COOKIE_CACHE_MAX_BYTES:
            if len(_parsed_cookies) >= _COOKIE_CACHE_SIZE:
                _parsed_cookies.clear()
            _parsed_cookies[header] = parsed
    return parsed


# Cookie header -> its parsed cookies (a dict's single operations are atomic).
_parsed_cookies: dict[bytes, dict[str, str]] = {}
_COOKIE_CACHE_SIZE = 512
_COOKIE_CACHE_MAX_BYTES = 8192


class _BodyReader:
    """Reads the request body once, up to a limit (see `read`)."""

    __slots__ = ("_receive",)

    def __init__(self, receive: Receive) -> None:
        self._receive = receive

    async def read(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise SAMLError("malformed", "The request was interrupted.", 400)
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise SAMLError("too_large", "The sign-in answer is too large.", 413)
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _route_path(path: str, root_path: str) -> str:
    """The path below the mount point (ASGI servers and Starlette's Mount keep it in `path`)."""
    if root_path and path.startswith(root_path):
        if path == root_path:
            return "/"
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path or "/"


def _put_user(scope: Scope, user: SAMLUser) -> None:
    scope["user"] = user
    scope["auth"] = (
        AuthCredentials(["authenticated", *user.roles])
        if user.is_authenticated
        else AuthCredentials()
    )


async def _send_response(reply: Response, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _with_cookie(send: Send, reply: PassThrough) -> Send:
    if reply.set_cookie is None:
        return send
    cookie = reply.set_cookie.encode("latin-1")

    async def send_with_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
        await send(message)

    return send_with_cookie
