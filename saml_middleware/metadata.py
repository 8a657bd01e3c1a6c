"""The IdP's description, from any of the four ways an admin can give it.

An admin gives a metadata URL (Entra's "App Federation Metadata Url"), a
metadata file, the metadata XML itself, or the manual trio entity ID + SSO URL +
certificate (Contentstack style). Every form ends as one `IdPInfo`: the
endpoints and signing certificates read from the IDPSSODescriptor only, and a
clean `EntityDescriptor` holding just that, which the protocol layer hands to
pysaml2 as inline metadata.

Why the clean copy: pysaml2 trusts signing keys from *every* SAML 2.0 role of
an entity (`certs(issuer, "any")`), chokes on a KeyDescriptor without an
X509Certificate, and silently drops an entity whose `validUntil` has passed.
Entra's WS-Federation RoleDescriptors are dropped by pysaml2 (their protocol is
not SAML 2.0), but a clean copy makes the keys pysaml2 trusts exactly the ones
this module reports, whatever the IdP publishes.

This module parses XML with lxml and never imports pysaml2.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlunsplit

from cachetools import TLRUCache
from cryptography import x509
from lxml import etree

from .config import IdPSettings
from .errors import ConfigError, SAMLError
from .keys import EXPIRY_WARNING_DAYS
from .saml.times import xs_datetime
from .saml.xml import DS, MD, SAMLP, hardened_parser
from .urls import split_url

logger = logging.getLogger("saml_middleware.metadata")

BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"

MAX_METADATA_BYTES = 5_000_000
# After a failed refresh, try again no sooner than this (or the refresh interval).
RETRY_SECONDS = 300
# A signing certificate this close to its end is logged at each (re)load.
EXPIRY_WARNING = dt.timedelta(days=EXPIRY_WARNING_DAYS)
# A metadata file is stat()ed at most this often to notice a replaced file.
FILE_CHECK_SECONDS = 60

_MD = f"{{{MD}}}"
_DS = f"{{{DS}}}"
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*CERTIFICATE-----(.*?)-----END [A-Z0-9 ]*CERTIFICATE-----", re.S
)
_XML_DECLARATION = re.compile(r"^<\?xml[^>]*\?>")
_USED_BINDINGS = (BINDING_REDIRECT, BINDING_POST)


class MetadataError(ValueError):
    """IdP metadata that cannot be fetched or used; the message is a short reason."""


@dataclass(frozen=True)
class IdPInfo:
    """What the SP needs to know about its IdP, read from the IDPSSODescriptor."""

    entity_id: str
    sso_redirect_url: str | None
    sso_post_url: str | None
    slo_redirect_url: str | None
    slo_post_url: str | None
    signing_certs: tuple[str, ...]  # Base64 DER bodies, one line each
    cert_not_after: tuple[dt.datetime, ...]  # same order as signing_certs, UTC
    xml: str  # one clean EntityDescriptor, for pysaml2's inline metadata
    valid_until: dt.datetime | None = None  # the metadata's own validUntil, if any


# -- certificates ------------------------------------------------------------------


def normalize_certificate(text: str) -> str:
    """The Base64 DER body, on one line, of a certificate as an admin pastes it.

    Takes Entra's "Certificate (Base64)" file (PEM with BEGIN/END lines) or the
    bare body, with any whitespace, CRLF or literal `\\n` escapes (from .env files);
    of several PEM blocks the first is used.
    """
    if not isinstance(text, str):
        raise ValueError("not a valid X.509 certificate")
    text = text.replace("\\r", "\n").replace("\\n", "\n")
    block = _PEM_BLOCK.search(text)
    body = "".join((block.group(1) if block else text).split())
    try:
        der = base64.b64decode(body, validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise ValueError("not a valid X.509 certificate") from None
    return base64.b64encode(der).decode("ascii")


def _not_after(body: str) -> dt.datetime:
    cert = x509.load_der_x509_certificate(base64.b64decode(body))
    return cert.not_valid_after_utc


def _fingerprint(body: str) -> str:
    return hashlib.sha256(base64.b64decode(body)).hexdigest()[:16]


# -- building metadata ---------------------------------------------------------------


def _entity_xml(
    entity_id: str,
    certs: Iterable[str],
    sso: Iterable[tuple[str, str]],
    slo: Iterable[tuple[str, str, str | None]],
    name_id_formats: Iterable[str] = (),
    want_authn_requests_signed: str | None = "false",
) -> str:
    """One EntityDescriptor with one IDPSSODescriptor, in schema order."""
    nsmap = {"md": MD, "ds": DS}
    entity = etree.Element(_MD + "EntityDescriptor", nsmap=nsmap)
    entity.set("entityID", entity_id)
    idp = etree.SubElement(entity, _MD + "IDPSSODescriptor")
    idp.set("protocolSupportEnumeration", SAMLP)
    if want_authn_requests_signed is not None:
        idp.set("WantAuthnRequestsSigned", want_authn_requests_signed)
    for cert in certs:
        key = etree.SubElement(idp, _MD + "KeyDescriptor", use="signing")
        data = etree.SubElement(etree.SubElement(key, _DS + "KeyInfo"), _DS + "X509Data")
        etree.SubElement(data, _DS + "X509Certificate").text = cert
    for binding, location, response_location in slo:
        service = etree.SubElement(idp, _MD + "SingleLogoutService")
        service.set("Binding", binding)
        service.set("Location", location)
        if response_location:
            service.set("ResponseLocation", response_location)
    for name_id_format in name_id_formats:
        etree.SubElement(idp, _MD + "NameIDFormat").text = name_id_format
    for binding, location in sso:
        service = etree.SubElement(idp, _MD + "SingleSignOnService")
        service.set("Binding", binding)
        service.set("Location", location)
    return etree.tostring(entity, encoding="unicode", pretty_print=True)


def manual_metadata_xml(
    entity_id: str, sso_url: str, x509cert: str, slo_url: str | None = None
) -> str:
    """IdP metadata for an IdP given by hand (entity ID, SSO URL, certificate).

    SSO is offered with both the HTTP-Redirect and HTTP-POST bindings at `sso_url`;
    `slo_url`, when given, with HTTP-Redirect. Raises `ValueError` on bad input.
    """
    cert = normalize_certificate(x509cert)
    if not entity_id or not entity_id.strip():
        raise ValueError("entity_id must not be empty")
    for name, url in (("sso_url", sso_url), ("slo_url", slo_url)):
        if url is not None and not _is_http_url(url):
            raise ValueError(f"{name} must be an absolute http(s) URL")
    sso = [(BINDING_REDIRECT, sso_url), (BINDING_POST, sso_url)]
    slo = [(BINDING_REDIRECT, slo_url, None)] if slo_url else []
    try:
        return _entity_xml(entity_id, [cert], sso, slo)
    except ValueError:  # lxml refuses control characters
        raise ValueError("entity_id or a URL holds characters not allowed in XML") from None


def _is_http_url(url: str) -> bool:
    parts = split_url(url)
    if parts is None:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and url == url.strip()


# -- parsing metadata ----------------------------------------------------------------


def _shown(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _to_bytes(xml: bytes | str, max_bytes: int) -> bytes:
    if isinstance(xml, str):
        # lxml refuses str with an encoding declaration; pasted text often has one.
        text = _XML_DECLARATION.sub("", xml.strip().lstrip("\ufeff"))
        data = text.encode("utf-8")
    elif isinstance(xml, (bytes, bytearray)):
        data = bytes(xml).lstrip(b" \t\r\n")
    else:
        raise MetadataError("metadata must be bytes or str")
    if not data.strip():
        raise MetadataError("metadata is empty")
    if len(data) > max_bytes:
        raise MetadataError(f"metadata is larger than {max_bytes} bytes")
    return data


def _parse_xml(data: bytes) -> Any:
    if b"<!DOCTYPE" in data:  # cheap early refusal; the docinfo check below is the rule
        raise MetadataError("DOCTYPE is not allowed in metadata")
    try:
        root = etree.fromstring(data, hardened_parser(remove_comments=True))
    except etree.XMLSyntaxError as exc:
        raise MetadataError(f"not well-formed XML ({str(exc.msg)[:120]})") from None
    if root is None:
        raise MetadataError("metadata is empty")
    if root.getroottree().docinfo.doctype:
        raise MetadataError("DOCTYPE is not allowed in metadata")
    return root


def _xs_datetime(value: str) -> dt.datetime:
    """validUntil as a UTC datetime (metadata may carry an offset)."""
    try:
        return xs_datetime(value, utc_only=False)
    except SAMLError:
        raise MetadataError(f"validUntil is not a date: {_shown(value, 40)}") from None


def _valid_until(entity: Any) -> dt.datetime | None:
    """The earliest validUntil on the entity and the EntitiesDescriptors around it."""
    found = []
    node = entity
    while node is not None:
        if node.get("validUntil"):
            found.append(_xs_datetime(node.get("validUntil")))
        node = node.getparent()
    return min(found) if found else None


def _select_entity(root: Any, entity_id: str | None) -> Any:
    if root.tag == _MD + "EntityDescriptor":
        entities = [root]
    elif root.tag == _MD + "EntitiesDescriptor":
        entities = list(root.iter(_MD + "EntityDescriptor"))
        if not entities:
            raise MetadataError("no EntityDescriptor in the EntitiesDescriptor")
    else:
        raise MetadataError("not SAML 2.0 metadata (no EntityDescriptor)")
    if entity_id is not None:
        matching = [e for e in entities if e.get("entityID") == entity_id]
        if len(matching) > 1:
            raise MetadataError(f"entity {_shown(entity_id)} is listed more than once")
        if matching:
            return matching[0]
        if len(entities) == 1:
            found = entities[0].get("entityID") or ""
            raise MetadataError(f"entityID is {_shown(found)}, expected {_shown(entity_id)}")
        raise MetadataError(f"no entity {_shown(entity_id)} in the metadata")
    idps = [e for e in entities if e.find(_MD + "IDPSSODescriptor") is not None]
    if len(idps) > 1:
        raise MetadataError(f"the metadata lists {len(idps)} IdPs; choose one with idp.entity_id")
    return idps[0] if idps else entities[0]


def _idp_descriptor(entity: Any) -> Any:
    descriptors = entity.findall(_MD + "IDPSSODescriptor")
    if not descriptors:
        raise MetadataError("no IDPSSODescriptor")
    for descriptor in descriptors:
        if SAMLP in (descriptor.get("protocolSupportEnumeration") or "").split():
            return descriptor
    raise MetadataError("the IDPSSODescriptor does not support SAML 2.0")


def _signing_certs(idp: Any) -> list[str]:
    certs: list[str] = []
    for key in idp.findall(_MD + "KeyDescriptor"):
        if key.get("use") not in (None, "signing"):
            continue
        for element in key.iter(_DS + "X509Certificate"):
            try:
                cert = normalize_certificate(element.text or "")
            except ValueError:
                raise MetadataError(
                    "a signing certificate in the IDPSSODescriptor is not a valid X.509 certificate"
                ) from None
            if cert not in certs:
                certs.append(cert)
    if not certs:
        raise MetadataError("no signing certificate in the IDPSSODescriptor")
    return certs


def _endpoints(idp: Any, tag: str) -> list[tuple[str, str, str | None]]:
    """(binding, Location, ResponseLocation) of the Redirect and POST services."""
    found = []
    for service in idp.findall(_MD + tag):
        binding = service.get("Binding")
        if binding not in _USED_BINDINGS:
            continue
        location = (service.get("Location") or "").strip()
        response = (service.get("ResponseLocation") or "").strip() or None
        for url in (location, response):
            if url is not None and not _is_http_url(url):
                raise MetadataError(f"a {tag} Location is not an absolute http(s) URL")
        found.append((binding, location, response))
    return found


def _first(endpoints: list[tuple[str, str, str | None]], binding: str) -> str | None:
    return next((location for b, location, _ in endpoints if b == binding), None)


def parse_idp_metadata(
    xml: bytes | str, entity_id: str | None = None, *, now: float | None = None
) -> IdPInfo:
    """Read one IdP from SAML metadata (Entra's federation metadata included).

    The root may be an EntityDescriptor or an EntitiesDescriptor; from the latter
    the entity named `entity_id` is taken, or else the only IdP in it. Keys and
    endpoints come only from the IDPSSODescriptor: Entra's WS-Federation
    RoleDescriptors and the document's own Signature are not read (the signature
    is not checked: trust comes from how the document was obtained). `validUntil`
    is judged at `now` (epoch seconds; default: this machine's clock). Raises
    `MetadataError` with a short reason.
    """
    root = _parse_xml(_to_bytes(xml, MAX_METADATA_BYTES))
    entity = _select_entity(root, entity_id)
    found_id = (entity.get("entityID") or "").strip()
    if not found_id:
        raise MetadataError("the EntityDescriptor has no entityID")
    valid_until = _valid_until(entity)
    moment = time.time() if now is None else now
    if valid_until is not None and valid_until.timestamp() <= moment:
        raise MetadataError(f"metadata expired (validUntil {valid_until:%Y-%m-%dT%H:%M:%SZ})")
    idp = _idp_descriptor(entity)
    certs = _signing_certs(idp)
    sso = _endpoints(idp, "SingleSignOnService")
    if not sso:
        raise MetadataError("no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding")
    slo = _endpoints(idp, "SingleLogoutService")
    formats = [(f.text or "").strip() for f in idp.findall(_MD + "NameIDFormat")]
    want_signed = idp.get("WantAuthnRequestsSigned")
    try:
        clean = _entity_xml(
            found_id,
            certs,
            [(binding, location) for binding, location, _ in sso],
            slo,
            [f for f in formats if f],
            want_signed.strip() if want_signed else None,
        )
    except ValueError:
        raise MetadataError("the metadata holds characters not allowed in XML") from None
    return IdPInfo(
        entity_id=found_id,
        sso_redirect_url=_first(sso, BINDING_REDIRECT),
        sso_post_url=_first(sso, BINDING_POST),
        slo_redirect_url=_first(slo, BINDING_REDIRECT),
        slo_post_url=_first(slo, BINDING_POST),
        signing_certs=tuple(certs),
        cert_not_after=tuple(_not_after(c) for c in certs),
        xml=clean,
        valid_until=valid_until,
    )


# -- fetching metadata ---------------------------------------------------------------


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) (urllib would also follow ftp://)."""

    def redirect_request(  # type: ignore[no-untyped-def]
        self, req, fp, code, msg, headers, newurl
    ):
        parts = split_url(newurl)
        if parts is None or parts.scheme.lower() not in ("http", "https"):
            raise MetadataError("redirect not followed (not http(s))")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _network_reason(reason)
        return str(reason)[:100]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return "connection closed unexpectedly"
    return f"network error ({type(exc).__name__})"


def fetch_metadata(url: str, timeout: float = 10.0, max_bytes: int = MAX_METADATA_BYTES) -> bytes:
    """GET a metadata URL: http(s) only, bounded in time and size.

    Raises `MetadataError` with a short reason ("HTTP 404", "timed out",
    "connection refused", "too large", ...).
    """
    parts = split_url(url)
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        raise MetadataError("the metadata URL must be http(s)")
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "application/samlmetadata+xml, application/xml, text/xml",
            "User-Agent": "saml-middleware (metadata)",
        },
    )
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise MetadataError("too large")
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > max_bytes:
                    raise MetadataError("too large")
                if time.monotonic() > deadline:
                    raise MetadataError("timed out")
                chunks.append(chunk)
            return b"".join(chunks)
    except MetadataError:
        raise
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:  # urllib refused the redirect (scheme, or a loop)
            raise MetadataError(f"redirect not followed (HTTP {exc.code})") from None
        raise MetadataError(f"HTTP {exc.code}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise MetadataError(_network_reason(exc)) from None


# -- the live IdP description --------------------------------------------------------


def _safe_url(url: str) -> str:
    """The URL for logs: without any user:password@ part."""
    parts = split_url(url)
    if parts is None:
        return "(a metadata URL that cannot be parsed)"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


_NEXT_CHECK = "next-check"


class IdPMetadata:
    """The IdP description in force for one `IdPSettings`, kept fresh.

    `load()` once at start-up; then `current()` on each request (no I/O), with
    `refresh_if_due()` now and then: a metadata URL is fetched again every
    `metadata_refresh_seconds`, a metadata file re-read when it changes. A failed
    refresh keeps the last good copy. Read `version` before `current()`: it
    changes whenever the info does, so a client built from `current()` can be
    tagged with it and rebuilt when it moves.
    """

    def __init__(
        self,
        settings: IdPSettings,
        *,
        fetch: Callable[[str], bytes] = fetch_metadata,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._fetch = fetch
        self._clock = clock  # schedules refreshes
        # Judges the metadata's validUntil and the certificates' expiry (`diagnose --at`).
        self._wall_clock = wall_clock
        self._state: tuple[int, IdPInfo] | None = None
        self._file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # Holds one entry while the copy in force needs no check; it expires
        # (on `clock`) after the delay stored as its value.
        self._checked: TLRUCache[str, float] = TLRUCache(
            maxsize=1, ttu=lambda _key, delay, now: now + delay, timer=clock
        )

    # -- start-up --

    def load(self) -> IdPInfo:
        """Read the IdP description now; any problem is a `ConfigError` naming the key."""
        s = self.settings
        if s.source == "manual":
            info = self._load_manual()
        else:
            key = f"idp.{s.source}"
            data = self._read_source(key)
            try:
                info = parse_idp_metadata(data, s.entity_id, now=self._wall_clock())
            except MetadataError as exc:
                raise ConfigError(key, str(exc)) from None
        self._install(info)
        self._schedule_next()
        logger.info(
            "IdP metadata loaded from idp.%s: entity %s, %d signing certificate(s)",
            s.source,
            info.entity_id,
            len(info.signing_certs),
        )
        self._warn_if_expired(info)
        return info

    def _read_source(self, key: str) -> bytes | str:
        s = self.settings
        if s.source == "metadata_url":
            assert s.metadata_url is not None
            try:
                return self._fetch(s.metadata_url)
            except MetadataError as exc:
                raise ConfigError(key, f"could not fetch metadata ({exc})") from None
            except Exception as exc:  # an injected fetch may raise anything
                raise ConfigError(
                    key, f"could not fetch metadata ({_network_reason(exc)})"
                ) from None
        if s.source == "metadata_file":
            assert s.metadata_file is not None
            try:
                data, self._file_stamp = self._read_file(s.metadata_file)
            except OSError as exc:
                raise ConfigError(key, f"cannot read file ({exc.strerror or exc})") from None
            except MetadataError as exc:
                raise ConfigError(key, str(exc)) from None
            return data
        if s.source == "metadata_xml":
            assert s.metadata_xml is not None
            return s.metadata_xml
        raise ConfigError("idp", f"unknown metadata source {s.source!r}")

    def _load_manual(self) -> IdPInfo:
        s = self.settings
        try:
            normalize_certificate(s.x509cert or "")
        except ValueError as exc:
            raise ConfigError("idp.x509cert", str(exc)) from None
        if not s.entity_id or not s.entity_id.strip():
            raise ConfigError("idp.entity_id", "is required")
        for name in ("sso_url", "slo_url"):
            url = getattr(s, name)
            if (url is not None or name == "sso_url") and not _is_http_url(url or ""):
                raise ConfigError(f"idp.{name}", "must be an absolute http(s) URL")
        try:
            xml = manual_metadata_xml(s.entity_id, s.sso_url or "", s.x509cert or "", s.slo_url)
            return parse_idp_metadata(xml, s.entity_id, now=self._wall_clock())
        except ValueError as exc:
            raise ConfigError("idp.entity_id", str(exc)) from None

    @staticmethod
    def _read_file(path: str) -> tuple[bytes, tuple[int, int]]:
        stat = Path(path).stat()
        if stat.st_size > MAX_METADATA_BYTES:
            raise MetadataError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        return Path(path).read_bytes(), (stat.st_mtime_ns, stat.st_size)

    # -- the copy in force --

    def current(self) -> IdPInfo:
        """The IdP description in force (no I/O once loaded)."""
        state = self._state
        if state is None:
            return self.load()
        return state[1]

    @property
    def version(self) -> int:
        """A number that changes whenever `current()` changes (0 before `load`)."""
        state = self._state
        return state[0] if state else 0

    def _install(self, info: IdPInfo) -> None:
        old = self._state
        if old is not None and old[1] == info:
            return
        self._state = ((old[0] if old else 0) + 1, info)

    # -- refreshing --

    def _interval(self) -> float:
        if self.settings.source == "metadata_file":
            return min(FILE_CHECK_SECONDS, self.settings.metadata_refresh_seconds)
        return float(self.settings.metadata_refresh_seconds)

    def _schedule_next(self, delay: float | None = None) -> None:
        if self.settings.source in ("metadata_url", "metadata_file"):
            self._checked[_NEXT_CHECK] = self._interval() if delay is None else delay

    def is_due(self) -> bool:
        """True when a refresh would look at the source again."""
        if self.settings.source not in ("metadata_url", "metadata_file"):
            return False
        return self._state is None or _NEXT_CHECK not in self._checked

    def invalidate(self) -> None:
        """Make the next refresh look at the source now (an admin's "refresh", tests)."""
        self._checked.clear()

    async def refresh_if_due(self) -> IdPInfo:
        """Refresh in a worker thread when due; concurrent callers wait for one fetch."""
        if not self.is_due():
            return self.current()
        async with self._async_lock():
            if self.is_due():
                await asyncio.to_thread(self.refresh_if_due_sync)
        return self.current()

    def refresh_if_due_sync(self) -> IdPInfo:
        """`refresh_if_due` for synchronous callers (WSGI); blocks while fetching."""
        if not self.is_due():
            return self.current()
        with self._lock:
            if self._state is None:
                return self.load()
            if self.is_due():
                self._refresh()
        return self.current()

    def _async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks[loop] = asyncio.Lock()
        return lock

    def _refresh(self) -> None:
        s = self.settings
        assert self._state is not None
        old = self._state[1]
        # Without idp.entity_id, the entity found at start-up is the one kept.
        entity_id = s.entity_id or old.entity_id
        if s.source == "metadata_url":
            assert s.metadata_url is not None
            where = _safe_url(s.metadata_url)
        else:
            assert s.metadata_file is not None
            where = s.metadata_file
        try:
            if s.source == "metadata_url":
                assert s.metadata_url is not None
                data: bytes = self._fetch(s.metadata_url)
                stamp = None
            else:
                assert s.metadata_file is not None
                stat = Path(s.metadata_file).stat()
                if (stat.st_mtime_ns, stat.st_size) == self._file_stamp:
                    self._schedule_next()
                    return
                data, stamp = self._read_file(s.metadata_file)
            info = parse_idp_metadata(data, entity_id, now=self._wall_clock())
        except Exception as exc:
            if isinstance(exc, MetadataError):
                reason = str(exc)
            elif isinstance(exc, OSError) and s.source == "metadata_file":
                reason = f"cannot read file ({exc.strerror or type(exc).__name__})"
            else:
                reason = _network_reason(exc)
            retry = min(RETRY_SECONDS, s.metadata_refresh_seconds)
            logger.warning(
                "IdP metadata refresh from %s failed (%s); keeping the last good copy, "
                "next try in %d s",
                where,
                reason,
                retry,
            )
            self._schedule_next(retry)
            return
        if stamp is not None:
            self._file_stamp = stamp
        self._schedule_next()
        if info.signing_certs != old.signing_certs:
            logger.info(
                "IdP %s signing certificates changed (from %s): added %s, removed %s",
                info.entity_id,
                where,
                [_fingerprint(c) for c in info.signing_certs if c not in old.signing_certs],
                [_fingerprint(c) for c in old.signing_certs if c not in info.signing_certs],
            )
        self._install(info)
        self._warn_if_expired(info)

    def _warn_if_expired(self, info: IdPInfo) -> None:
        now = dt.datetime.fromtimestamp(self._wall_clock(), dt.timezone.utc)
        if info.cert_not_after and all(end <= now for end in info.cert_not_after):
            logger.warning(
                "every signing certificate of IdP %s has expired (latest on %s); "
                "logins will fail until the IdP publishes a new one",
                info.entity_id,
                max(info.cert_not_after).date().isoformat(),
            )
        elif info.cert_not_after and max(info.cert_not_after) - now < EXPIRY_WARNING:
            logger.warning(
                "the signing certificate of IdP %s expires on %s (in %d days): have the IdP "
                "publish its next one (Entra: Single sign-on > SAML Certificates > New "
                "certificate) before then",
                info.entity_id,
                max(info.cert_not_after).date().isoformat(),
                (max(info.cert_not_after) - now).days,
            )
