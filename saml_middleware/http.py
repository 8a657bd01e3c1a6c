"""HTTP without a framework: the request the adapters give, the answers the engine gives.

`HttpRequest` is what an adapter makes of its request; the engine answers
`Response` (the middleware answers the browser) or `PassThrough` (the app
answers, with this user). `error_response` is the one place a refusal
becomes an HTTP answer; `Site` knows this site's origins (the redirects it
allows, the public URL a request arrived at).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import cookies as http_cookies
from urllib.parse import parse_qs, quote, urlsplit

from .config import SLUG, Settings
from .errors import SAMLError
from .identity import SAMLUser
from .pages import auto_post_form, error_page
from .saml.sp import Outgoing, public_error
from .urls import split_url

# The engine's logger: operators filter on it for the warnings below.
log = logging.getLogger("saml_middleware.engine")

NO_STORE = ("cache-control", "no-store")
# A page of ours that must not be framed (clickjacking: a sign-out button, Test SSO).
UNFRAMED_PAGE = [
    ("content-type", "text/html; charset=utf-8"),
    NO_STORE,
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
]
# Distinct configuration warnings kept per engine (each is logged once).
_MAX_WARNINGS = 32


@dataclass
class HttpRequest:
    """A framework-neutral request; the body is read only when an endpoint needs it."""

    method: str
    path: str
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    cookies: Mapping[str, str] = field(default_factory=dict)
    read_body: Callable[[int], Awaitable[bytes]] | None = None
    # Where the app is mounted (WSGI SCRIPT_NAME, ASGI root_path): `path` is
    # matched below it, and every URL sent to the browser starts with it.
    root_path: str = ""
    scheme: str = ""  # the request's own scheme ("http"/"https"), before any proxy

    def query(self, name: str) -> str | None:
        values = parse_qs(self.query_string, keep_blank_values=True).get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An answer the middleware gives itself."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class PassThrough:
    """Let the app answer, with `user` in scope (and a refreshed cookie, if any)."""

    user: SAMLUser
    set_cookie: str | None = None


Reply = Response | PassThrough


def error_response(err: SAMLError, request: HttpRequest, set_cookie: str | None = None) -> Response:
    """The one place a refusal becomes an HTTP answer.

    Signature, key, algorithm and decryption refusals all get the same
    answer (`saml.sp.public_error`): no oracle. The real code is logged.
    """
    err = public_error(err)
    headers = [("x-saml-error", err.code), NO_STORE]
    if set_cookie is not None:
        headers.append(("set-cookie", set_cookie))
    if err.status == 405:
        headers.append(("allow", "POST"))
    if wants_json(request):
        body = json.dumps({"error": err.code, "reason": err.reason}).encode()
        return Response(err.status, [("content-type", "application/json"), *headers], body)
    return Response(
        err.status,
        [("content-type", "text/html; charset=utf-8"), *headers],
        error_page(err.status, err.reason, err.code),
    )


def login_required(
    request: HttpRequest, login_path: str, set_cookie: str | None = None
) -> Response:
    """A protected page without a session: a page navigation goes (303) to `login_path`
    with `next` (the page), anything else gets 401 JSON naming the login URL."""
    root = mount_path(request.root_path)
    target = root + request.path + (f"?{request.query_string}" if request.query_string else "")
    login_url = f"{location(root)}{login_path}?next={quote(target, safe='/')}"
    extra = [("set-cookie", set_cookie)] if set_cookie is not None else []
    if request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", ""):
        return Response(303, [("location", login_url), NO_STORE, *extra])
    body = json.dumps({"error": "authentication_required", "login_url": login_url}).encode()
    return Response(401, [("content-type", "application/json"), NO_STORE, *extra], body)


def outgoing_response(outgoing: Outgoing, headers: list[tuple[str, str]]) -> Response:
    """A message on its way to the IdP: a redirect, or the auto-posted form."""
    if outgoing.form is None:
        return Response(303, [("location", outgoing.url), *headers])
    return Response(
        200,
        [("content-type", "text/html; charset=utf-8"), *headers],
        auto_post_form(outgoing.url, outgoing.form),
    )


async def read_form(request: HttpRequest, limit: int) -> dict[str, list[str]]:
    """The request's urlencoded form, at most `limit` bytes of it (413 beyond)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise SAMLError("malformed", "The sign-in answer must be a submitted form.", 400)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SAMLError("too_large", "The sign-in answer is too large.", 413)
    if request.read_body is None:
        raise SAMLError("malformed", "The sign-in answer is empty.", 400)
    body = await request.read_body(limit)
    if len(body) > limit:
        raise SAMLError("too_large", "The sign-in answer is too large.", 413)
    try:
        return parse_qs(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=16,
        )
    except (UnicodeDecodeError, ValueError):
        raise SAMLError("malformed", "The sign-in answer is not a valid form.", 400) from None


def parse_cookies(header: str) -> dict[str, str]:
    """The cookies of a Cookie header, read as browsers write them (Starlette's and
    Django's algorithm, not `SimpleCookie`, which drops a whole header over one odd
    cookie): a chunk without "=" is a nameless cookie; values are unquoted."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        key, _, value = chunk.partition("=") if "=" in chunk else ("", "", chunk)
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = http_cookies._unquote(value)
    return cookies


def single(form: Mapping[str, list[str]], name: str, *, required: bool = False) -> str | None:
    values = form.get(name, [])
    if len(values) > 1:
        raise SAMLError("malformed", f"The form repeats {name}.", 400)
    if required and not values:
        raise SAMLError("malformed", f"The form has no {name}.", 400)
    return values[0] if values else None


def require_method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise SAMLError("method_not_allowed", f"Use {' or '.join(allowed)} here.", 405)


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def location(url: str) -> str:
    """`url` safe for a Location header: spaces and non-ASCII characters percent-encoded."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


def mount_path(root_path: str) -> str:
    """The mount path without its trailing slash; "" unless it is a plain local path."""
    root = root_path.rstrip("/")
    if not root:
        return ""
    if local_path(root) != root or "?" in root or "#" in root or len(root) > 1024:
        log.warning("ignored a mount path (SCRIPT_NAME / root_path) that is not a plain path")
        return ""
    return root


def local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site ("/x?y"), never "//host" or a URL."""
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    if target.startswith("//") or any(ord(c) < 0x20 or c == "\\" for c in target):
        return None
    parts = split_url(target)
    return target if parts and not parts.scheme and not parts.netloc else None


class Site:
    """This site's origins: where a redirect may go, where a request came in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._warned: set[str] = set()

    def safe_redirect(self, target: str | None) -> str | None:
        """`target` if it is a same-origin path or an allowed host's URL, else None."""
        if not target or len(target) > 2048:
            return None
        if any(ord(c) < 0x20 or c == "\\" for c in target):
            return None
        if local_path(target):
            return target
        parts = split_url(target)
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        base = urlsplit(self.settings.base_url)
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return target
        if parts.hostname.lower() in self.settings.security.allowed_redirect_hosts:
            return target
        return None

    def public_origin(self, request: HttpRequest) -> str | None:
        """The origin (scheme://host) the browser used, or None when it is not known.

        Behind a proxy the request's own scheme and Host are the proxy's, so they
        count only with `security.trust_forwarded_headers`; then X-Forwarded-Proto
        and X-Forwarded-Host (their last value: the one the nearest proxy added)
        replace them, but only when they name base_url's origin or a host in
        `allowed_redirect_hosts`: anything else is ignored, and logged. The result
        feeds the operator's warnings, never a decision: base_url alone makes the
        ACS URL that a Response's Destination and Recipient must match.
        """
        if not self.settings.security.trust_forwarded_headers:
            return None
        own_host = request.headers.get("host", "")
        proto = _last_value(request.headers.get("x-forwarded-proto"))
        host = _last_value(request.headers.get("x-forwarded-host"))
        if not proto and not host:
            return _origin(request.scheme, own_host)
        forwarded = _origin(proto or request.scheme, host or own_host)
        if forwarded is not None and self.origin_allowed(forwarded):
            return forwarded
        self._warn_once(
            f"forwarded:{proto}:{host}",
            "ignored X-Forwarded-Proto %r / X-Forwarded-Host %r: %s is neither base_url's "
            "origin nor on a host in security.allowed_redirect_hosts",
            proto[:100],
            host[:100],
            (forwarded or "that")[:200],
        )
        return None

    def origin_allowed(self, origin: str) -> bool:
        if origin == _base_origin(self.settings.base_url) or self._organization_origin(origin):
            return True
        parts = split_url(origin)
        hostname = (parts.hostname if parts else None) or ""
        return hostname in self.settings.security.allowed_redirect_hosts

    def cross_site(self, request: HttpRequest) -> bool:
        """Whether a POST comes from another site (Sec-Fetch-Site: cross-site, or an
        Origin that is neither base_url's nor an allowed host's: "null" counts as foreign)."""
        origin = request.headers.get("origin")
        if origin is not None:
            parts = split_url(origin.strip())
            origin = (_origin(parts.scheme, parts.netloc) if parts else None) or ""
        return request.headers.get("sec-fetch-site") == "cross-site" or (
            origin is not None and not self.origin_allowed(origin)
        )

    def check_public_url(self, request: HttpRequest) -> None:
        """Warn (once) when the browser reached us elsewhere than base_url says."""
        base_path = urlsplit(self.settings.base_url).path.rstrip("/")
        root = mount_path(request.root_path)
        if root != base_path:
            self._warn_once(
                f"mount:{root}",
                "the app is mounted at %r (WSGI SCRIPT_NAME / ASGI root_path) but base_url's "
                "path is %r: the browser is sent to the mount path, the IdP to base_url; "
                "make them agree (e.g. uvicorn --root-path, or SCRIPT_NAME for WSGI)",
                root[:200],
                base_path,
            )
        origin = self.public_origin(request)
        base_origin = _base_origin(self.settings.base_url)
        if origin is not None and origin != base_origin and not self._organization_origin(origin):
            self._warn_once(
                f"origin:{origin}",
                "a request reached %s, but base_url says %s: the IdP sends users back to "
                "base_url, so they sign in there, not here",
                origin[:200],
                base_origin,
            )

    def _organization_origin(self, origin: str) -> bool:
        """Whether `origin` is an organization's own (`tenant_options.base_url`)."""
        options = self.settings.tenant_options
        if options is None or options.base_url is None:
            return False
        template = _base_origin(options.base_url.replace("{slug}", "x-slug-x"))
        head, _, tail = template.partition("x-slug-x")
        if not (origin.startswith(head) and origin.endswith(tail)):
            return False
        return bool(SLUG.fullmatch(origin[len(head) : len(origin) - len(tail)]))

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        # Bounded: a client varying forged headers cannot grow it or flood the log.
        if key in self._warned:
            return
        if len(self._warned) >= _MAX_WARNINGS:
            log.debug(message, *args)
            return
        self._warned.add(key)
        log.warning(message, *args)


_HOST_PORT = re.compile(
    r"(?P<name>[a-z0-9](?:[a-z0-9.\-]{0,251}[a-z0-9])?|\[[0-9a-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)


def _origin(scheme: str, host: str) -> str | None:
    """A normalized origin ("https://host[:port]"), or None when either part is not valid."""
    scheme = scheme.strip().lower()
    match = _HOST_PORT.fullmatch(host.strip().lower())
    if scheme not in ("http", "https") or match is None:
        return None
    name, port = match.group("name"), match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    if port is None or int(port) == (443 if scheme == "https" else 80):
        return f"{scheme}://{name}"
    return f"{scheme}://{name}:{int(port)}"


def _base_origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return _origin(parts.scheme, parts.netloc) or f"{parts.scheme}://{parts.netloc}"


def _last_value(header: str | None) -> str:
    """The last of a comma-separated header's values: the one the nearest proxy set."""
    return (header or "").rsplit(",", 1)[-1].strip()
