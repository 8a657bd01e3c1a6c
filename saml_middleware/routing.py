"""Which endpoint a path is, and the canonical forms paths, slugs, hosts and URLs are compared in.

Three rules live here, each in one place:

* URLs (a Response's Destination and Recipient, a sign-out message's
  Destination) are compared with the configured endpoint URLs after RFC 3986
  normalisation only (`normalized_url`): scheme and host case, the default
  port, an empty path equal to "/". Nothing else is forgiven: the path, its
  case and its trailing slash must be the configured ones.
* The middleware's endpoints (`EndpointRoutes`) are the configured paths,
  either slash variant, matched exactly; an organization's take the slug in a
  `{slug}` path segment, read in canonical form.
* Decisions that protect the app's own views (`paths.protect`/`exempt`, which
  organization a path or host names) read every spelling of a path a router,
  a server or a proxy might treat as the same (`path_spellings`): case, `//`,
  `.` and `..` segments, percent-encoding, `;params`, backslashes. A slug or
  host that names no valid organization in canonical form is refused, never
  taken for "no organization" (`canonical_slug`, `canonical_host`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

# An organization slug, as Contentstack's "SSO Name": lowercase letters, digits
# and hyphens; it becomes a URL path segment and part of the SP entity ID.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
SLUG_PLACEHOLDER = "{slug}"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# How many rounds of percent-decoding a spelling may need (a proxy or a framework
# may decode once more than the server did).
_DECODE_ROUNDS = 3
# A path that no spelling rule changes: nothing to decode, split or resolve.
_PLAIN_PATH = re.compile(r"(?:/[a-z0-9_~!$&'()*+,=:@-][a-z0-9._~!$&'()*+,=:@-]*)*/?")


# -- URLs -------------------------------------------------------------------------------


def normalized_url(url: str) -> str | None:
    """`url` after RFC 3986 normalisation (6.2.2.1 scheme and host case; 6.2.3 default
    port, empty path as "/"), or None when it is not an absolute http(s) URL.

    Everything after the authority (path, query, fragment) is kept byte for byte;
    a URL with spaces or control characters is refused (urlsplit would drop some).
    """
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    authority_at = len(parts.scheme) + 3
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or url[len(scheme) : authority_at] != "://"
    ):
        return None
    rest = url[authority_at + len(parts.netloc) :]
    user, at, _ = parts.netloc.rpartition("@")
    host = parts.hostname  # lower case
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{user}{at}{host}{rest if rest.startswith('/') else '/' + rest}"


def url_in(url: str | None, configured: Iterable[str]) -> bool:
    """Whether `url` is one of the `configured` URLs, as `normalized_url` compares them."""
    if not url:
        return False
    received = normalized_url(url)
    return received is not None and any(received == normalized_url(c) for c in configured)


# -- paths, slugs, hosts ------------------------------------------------------------------


def canonical_path(path: str) -> str:
    """The one spelling of `path` every lenient router would agree on.

    Backslashes read as slashes, percent-decoded (a few rounds), `;params` cut from
    each segment, empty and `.` segments dropped, `..` resolved, lower case, no
    trailing slash ("/" for the root).
    """
    if _PLAIN_PATH.fullmatch(path):
        return path.rstrip("/") or "/"
    value = path.replace("\\", "/")
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(value, errors="surrogateescape").replace("\\", "/")
        if decoded == value:
            break
        value = decoded
    segments: list[str] = []
    for segment in value.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return ("/" + "/".join(segments)).lower()


def path_spellings(path: str) -> tuple[str, ...]:
    """`path` as received and in canonical form (one item when they agree)."""
    canonical = canonical_path(path)
    if canonical == (path.rstrip("/") or "/"):
        return (path,)
    return (path, canonical)


def canonical_slug(text: str) -> str | None:
    """The organization slug `text` names (case and percent-encoding forgiven), or None
    when it names none: a caller refuses such a slug rather than ignore it."""
    value = text
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(value)
        if decoded == value:
            break
        value = decoded
    value = value.lower()
    return value if SLUG.fullmatch(value) else None


def canonical_host(host: str) -> str | None:
    """A Host header's name in canonical form: no port, lower case, percent-decoded,
    no trailing dot, IDNA A-labels; None when it is not a host name."""
    value = unquote(host.strip())
    if value.startswith("["):  # an IPv6 literal: never an organization's host
        return value[: value.index("]") + 1].lower() if "]" in value else None
    value = value.rsplit(":", 1)[0] if ":" in value else value
    value = value.removesuffix(".")
    try:
        ascii_name = value.encode("idna").decode("ascii") if value else ""
    except UnicodeError:
        return None
    return ascii_name.lower() or None


# -- the middleware's endpoints -----------------------------------------------------------


def _segments(path: str) -> tuple[str, ...]:
    """A configured path's segments, ignoring its trailing slash ("/" has none) and
    its query (an ACS URL's, if any: requests are routed by the path)."""
    trimmed = path.split("?", 1)[0].rstrip("/")
    return tuple(trimmed.split("/")[1:]) if trimmed else ()


def paths_overlap(first: str, second: str) -> bool:
    """Whether some request path would reach both configured paths (`{slug}` segments
    match any valid slug; either slash variant of a path reaches it)."""
    a, b = _segments(first), _segments(second)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if x == SLUG_PLACEHOLDER and canonical_slug(y) is not None:
            continue
        if y == SLUG_PLACEHOLDER and canonical_slug(x) is not None:
            continue
        return False
    return True


class EndpointRoutes:
    """Request path -> (endpoint name, organization slug) for the configured paths.

    `own` holds the app's own endpoint paths, `organization` the templates with a
    `{slug}` segment. Paths are matched exactly, either slash variant; a template's
    slug segment is read by `canonical_slug` and, when it names no valid slug,
    routed with slug "" (the endpoint answers 404). Any other path under `prefix`
    is the middleware's too (404), as it always was.
    """

    def __init__(
        self,
        prefix: str,
        own: Mapping[str, tuple[str, ...]],
        organization: Mapping[str, tuple[str, ...]],
    ) -> None:
        self._prefix = prefix
        self._exact = {
            "/" + "/".join(_segments(path)): name for name, paths in own.items() for path in paths
        }
        self._templates = [
            (_segments(path), name) for name, paths in organization.items() for path in paths
        ]

    def match(self, path: str) -> tuple[str, str | None] | None:
        trimmed = path[:-1] if path.endswith("/") and path != "/" else path
        name = self._exact.get(trimmed)
        if name is not None:
            return name, None
        if self._templates:
            segments = tuple(trimmed.split("/")[1:]) if trimmed != "/" else ()
            for template, name in self._templates:
                slug = _template_slug(template, segments)
                if slug is not None:
                    return name, slug
        if path == self._prefix or path.startswith(self._prefix + "/"):
            return "", None
        return None


def _template_slug(template: tuple[str, ...], segments: tuple[str, ...]) -> str | None:
    """The slug (canonical, or "" when not valid) if `segments` fit `template`, else None."""
    if len(template) != len(segments):
        return None
    slug = None
    for expected, received in zip(template, segments, strict=True):
        if expected == SLUG_PLACEHOLDER:
            if not received:
                return None
            slug = canonical_slug(received) or ""
        elif expected != received:
            return None
    return slug
