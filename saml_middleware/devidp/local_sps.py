"""Trusting service providers on this machine without being told about them first.

NOT FOR PRODUCTION, like the rest of the development IdP. A real IdP (Entra)
learns about an application when an admin registers it; the development IdP,
when it runs on a loopback address, may instead trust an SP that also runs on
this machine the moment it first sends an AuthnRequest: the SP's entity ID is
then (by this project's convention) the URL of its metadata, so the IdP reads
the metadata from there. That is what makes "create an organization, paste the
development IdP's metadata URL, press Test SSO" work with no step at the IdP.

The fetch is narrow on purpose: http(s) URLs whose host is a loopback address
or `localhost` only (never a name that must be looked up), no user info, no
redirects, a short timeout and a size limit.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from ..loopback import is_loopback_host

# SP metadata is a few KB; a megabyte is generous (the CLI's --sp-metadata limit).
MAX_SP_METADATA_BYTES = 1024 * 1024
SP_METADATA_TIMEOUT_SECONDS = 5.0


class LocalMetadataError(ValueError):
    """The SP metadata could not be read from its URL; the message is a short reason."""


def is_loopback_url(url: str) -> bool:
    """An http(s) URL on a loopback host, with no user info (the only URLs fetched)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and "@" not in parts.netloc
        and url == url.strip()
        and is_loopback_host(parts.hostname)
    )


def is_loopback_origin(url: str) -> bool:
    """Whether `url` (the IdP's own base URL) is served on a loopback host."""
    try:
        return is_loopback_host(urlsplit(url).hostname)
    except ValueError:
        return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could leave the loopback host: never follow one."""

    def redirect_request(  # type: ignore[no-untyped-def]
        self, req, fp, code, msg, headers, newurl
    ):
        raise LocalMetadataError(f"the URL redirects (HTTP {code}); give the final URL")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _reason(reason)
        return str(reason)[:100]
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the application running?)"
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return "connection closed unexpectedly"
    return f"network error ({type(exc).__name__})"


def fetch_local_metadata(
    url: str,
    *,
    timeout: float = SP_METADATA_TIMEOUT_SECONDS,
    max_bytes: int = MAX_SP_METADATA_BYTES,
) -> str:
    """GET SP metadata from a loopback URL; raises `LocalMetadataError` with a short reason."""
    if not is_loopback_url(url):
        raise LocalMetadataError(
            "only http(s) URLs on this machine (127.0.0.1, ::1, localhost) are fetched"
        )
    opener = urllib.request.build_opener(_NoRedirects())
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/samlmetadata+xml, application/xml, text/xml",
            "User-Agent": "saml-middleware development IdP",
        },
    )
    try:
        reply: Any
        with opener.open(request, timeout=timeout) as reply:
            body: bytes = reply.read(max_bytes + 1)
    except LocalMetadataError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise LocalMetadataError(_reason(exc)) from None
    if len(body) > max_bytes:
        raise LocalMetadataError(f"larger than {max_bytes} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalMetadataError("not UTF-8 text") from None
