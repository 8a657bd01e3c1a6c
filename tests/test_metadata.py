"""IdP metadata: the four forms, Entra's shape, pysaml2 loading, refresh and its failures."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from saml2.config import SPConfig

from saml_middleware.config import IdPSettings
from saml_middleware.errors import ConfigError
from saml_middleware.metadata import (
    IdPInfo,
    IdPMetadata,
    MetadataError,
    fetch_metadata,
    manual_metadata_xml,
    normalize_certificate,
    parse_idp_metadata,
)
from tests.fixtures_metadata import (
    ENTRA_ENTITY_ID,
    ENTRA_SAML2_URL,
    POST,
    REDIRECT,
    entities_document,
    entra_entity,
    entra_metadata,
    make_certificate,
)
from tests.helpers import Clock

LOGGER = "saml_middleware.metadata"


@dataclasses.dataclass(frozen=True)
class Cert:
    pem: str
    body: str
    not_after: Any


@pytest.fixture(scope="module")
def certs() -> tuple[Cert, Cert, Cert]:
    """Two IdP signing certificates (a rollover pair) and an unrelated third one."""
    return tuple(Cert(*make_certificate(name)) for name in ("idp-a", "idp-b", "other"))  # type: ignore[return-value]


def pysaml2_metadata(xml: str) -> Any:
    """Load metadata the way the protocol layer does: an SPConfig with inline metadata."""
    config = SPConfig().load(
        {
            "entityid": "https://app.example.com/saml/metadata/",
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": ["https://app.example.com/saml/acs/"]
                    }
                }
            },
            "metadata": {"inline": [xml]},
        }
    )
    return config.metadata


def settings(source: str, **values: Any) -> IdPSettings:
    fields: dict[str, Any] = {
        "metadata_url": None,
        "metadata_file": None,
        "metadata_xml": None,
        "entity_id": None,
        "sso_url": None,
        "slo_url": None,
        "x509cert": None,
        "metadata_refresh_seconds": 3600,
    }
    fields.update(values)
    return IdPSettings(source=source, **fields)


# -- certificates ---------------------------------------------------------------------


def test_normalize_certificate_accepts_what_admins_paste(certs):
    cert = certs[0]
    lines = [cert.body[i : i + 64] for i in range(0, len(cert.body), 64)]
    assert normalize_certificate(cert.pem) == cert.body
    assert normalize_certificate(cert.pem.replace("\n", "\r\n")) == cert.body
    assert normalize_certificate(cert.body) == cert.body
    assert normalize_certificate("\r\n".join(lines) + "\r\n") == cert.body
    assert normalize_certificate("  " + "\n   ".join(lines) + "  ") == cert.body
    # A PEM squeezed into one .env line with literal \n escapes.
    assert normalize_certificate(cert.pem.replace("\n", "\\n")) == cert.body


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage!",
        "TUlJQ3BEQ0NBWXlnQXdJQkFnSVU=",
        "-----BEGIN CERTIFICATE-----\n-----END",
    ],
)
def test_normalize_certificate_refuses_garbage(text):
    with pytest.raises(ValueError, match="^not a valid X.509 certificate$"):
        normalize_certificate(text)


# -- Entra-shaped metadata --------------------------------------------------------------


def test_entra_metadata_parses_with_both_certificates(certs):
    info = parse_idp_metadata(entra_metadata([certs[0].body, certs[1].body]))
    assert isinstance(info, IdPInfo)
    assert info.entity_id == ENTRA_ENTITY_ID
    assert info.sso_redirect_url == ENTRA_SAML2_URL
    assert info.sso_post_url == ENTRA_SAML2_URL
    assert info.slo_redirect_url == ENTRA_SAML2_URL
    assert info.slo_post_url is None
    assert info.signing_certs == (certs[0].body, certs[1].body)
    assert info.cert_not_after == (certs[0].not_after, certs[1].not_after)
    assert info.valid_until is None
    # The clean copy holds only the SAML part.
    assert "RoleDescriptor" not in info.xml
    assert "Signature" not in info.xml
    assert "ClaimTypesOffered" not in info.xml


def test_keys_are_read_only_from_the_idpsso_descriptor(certs):
    doc = entra_metadata([certs[0].body], wsfed_certs=[certs[2].body])
    info = parse_idp_metadata(doc)
    assert info.signing_certs == (certs[0].body,)
    assert certs[2].body not in info.xml


def test_clean_metadata_loads_into_pysaml2(certs):
    info = parse_idp_metadata(entra_metadata([certs[0].body, certs[1].body]))
    md = pysaml2_metadata(info.xml)
    assert md.identity_providers() == [ENTRA_ENTITY_ID]
    assert len(md.certs(ENTRA_ENTITY_ID, "idpsso", "signing")) == 2
    assert md.single_sign_on_service(ENTRA_ENTITY_ID, REDIRECT)[0]["location"] == ENTRA_SAML2_URL
    assert md.single_sign_on_service(ENTRA_ENTITY_ID, POST)[0]["location"] == ENTRA_SAML2_URL
    slo = md.single_logout_service(ENTRA_ENTITY_ID, REDIRECT, "idpsso")
    assert slo[0]["location"] == ENTRA_SAML2_URL


def test_pysaml2_on_raw_entra_metadata(certs):
    """What pysaml2 7.5 does with Entra's document as published (why we hand it a clean one).

    It loads, and drops the WS-Fed RoleDescriptors (their protocol is not SAML 2.0);
    but when a RoleDescriptor also claims SAML 2.0, pysaml2 trusts its keys for
    signatures (`certs(issuer, "any")`), which the clean copy rules out.
    """
    raw = entra_metadata([certs[0].body]).decode()
    md = pysaml2_metadata(raw)
    assert "role_descriptor" not in md[ENTRA_ENTITY_ID]
    assert len(md.certs(ENTRA_ENTITY_ID, "idpsso", "signing")) == 1

    wsfed = "http://docs.oasis-open.org/wsfed/federation/200706"
    doc = entra_metadata([certs[0].body], wsfed_certs=[certs[2].body]).decode()
    doc = doc.replace(
        f'protocolSupportEnumeration="{wsfed}"',
        f'protocolSupportEnumeration="{wsfed} urn:oasis:names:tc:SAML:2.0:protocol"',
    )
    trusted = {c for _, c in pysaml2_metadata(doc).certs(ENTRA_ENTITY_ID, "any", "signing")}
    assert any(certs[2].body[:60] in c.replace("\n", "") for c in trusted)

    clean = parse_idp_metadata(doc).xml
    trusted = {c for _, c in pysaml2_metadata(clean).certs(ENTRA_ENTITY_ID, "any", "signing")}
    assert [c.replace("\n", "") for c in trusted] == [certs[0].body]


def test_text_with_declaration_and_whitespace_parses(certs):
    text = "\n   " + entra_metadata([certs[0].body]).decode() + "\n"
    assert parse_idp_metadata(text).entity_id == ENTRA_ENTITY_ID


def test_key_descriptor_without_use_counts_and_encryption_keys_do_not(certs):
    doc = (
        entra_metadata([certs[0].body])
        .decode()
        .replace(
            '<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">',
            '<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<KeyDescriptor><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data>'
            f"<X509Certificate>{certs[1].body}</X509Certificate></X509Data></KeyInfo>"
            '</KeyDescriptor><KeyDescriptor use="encryption">'
            '<KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data>'
            f"<X509Certificate>{certs[2].body}</X509Certificate></X509Data></KeyInfo>"
            '</KeyDescriptor><KeyDescriptor use="signing">'
            '<KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><KeyName>k</KeyName></KeyInfo>'
            "</KeyDescriptor>",
        )
    )
    info = parse_idp_metadata(doc)
    assert info.signing_certs == (certs[1].body, certs[0].body)
    # pysaml2 raises KeyError on a KeyDescriptor without X509Data; the clean copy has none.
    assert len(pysaml2_metadata(info.xml).certs(ENTRA_ENTITY_ID, "idpsso", "signing")) == 2


# -- manual metadata ---------------------------------------------------------------------


def test_manual_metadata_builds_and_loads_into_pysaml2(certs):
    entity_id = 'https://idp.example.com/?a=1&b="x"<y>'
    xml = manual_metadata_xml(
        entity_id, "https://idp.example.com/sso", certs[0].pem, "https://idp.example.com/slo"
    )
    info = parse_idp_metadata(xml, entity_id)
    assert info.entity_id == entity_id
    assert info.sso_redirect_url == info.sso_post_url == "https://idp.example.com/sso"
    assert info.slo_redirect_url == "https://idp.example.com/slo"
    assert info.signing_certs == (certs[0].body,)
    assert 'WantAuthnRequestsSigned="false"' in info.xml
    md = pysaml2_metadata(info.xml)
    assert md.identity_providers() == [entity_id]
    assert len(md.certs(entity_id, "idpsso", "signing")) == 1
    assert md.single_sign_on_service(entity_id, POST)[0]["location"].endswith("/sso")


def test_manual_metadata_without_slo(certs):
    info = parse_idp_metadata(manual_metadata_xml("urn:idp", "https://idp/sso", certs[0].body))
    assert info.slo_redirect_url is None
    assert "SingleLogoutService" not in info.xml


def test_manual_metadata_refuses_bad_input(certs):
    with pytest.raises(ValueError, match="not a valid X.509 certificate"):
        manual_metadata_xml("urn:idp", "https://idp/sso", "nope")
    with pytest.raises(ValueError, match="sso_url"):
        manual_metadata_xml("urn:idp", "javascript:alert(1)", certs[0].body)
    with pytest.raises(ValueError, match="not allowed in XML"):
        manual_metadata_xml("urn:idp\x00", "https://idp/sso", certs[0].body)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b'<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol2;"/>',
        b'<?xml version="1.0"?>\n<!DOCTYPE EntityDescriptor SYSTEM "http://127.0.0.1:9/x.dtd">'
        b'<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<x>&e;</x>".encode("utf-16"),
    ],
)
def test_doctype_is_refused(doc):
    with pytest.raises(MetadataError, match="DOCTYPE"):
        parse_idp_metadata(doc)


def test_doctype_is_refused_in_text():
    with pytest.raises(MetadataError, match="DOCTYPE"):
        parse_idp_metadata('<!DOCTYPE a><a xmlns="urn:oasis:names:tc:SAML:2.0:metadata"/>')


def _idp_part(doc: bytes) -> tuple[str, str]:
    text = doc.decode()
    start = text.index("  <IDPSSODescriptor")
    end = text.index("</IDPSSODescriptor>") + len("</IDPSSODescriptor>\n")
    return text, text[start:end]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d, c: b"", "metadata is empty"),
        (lambda d, c: b"<EntityDescriptor", "not well-formed XML"),
        (lambda d, c: b"<html><body>Sign in</body></html>", "not SAML 2.0 metadata"),
        (lambda d, c: entra_metadata([c], with_idp=False), "no IDPSSODescriptor"),
        (lambda d, c: entra_metadata([c], with_sso=False), "no SingleSignOnService"),
        (lambda d, c: entra_metadata([]), "no signing certificate"),
        (lambda d, c: entra_metadata(["TUlJQmFk"]), "not a valid X.509 certificate"),
        (
            lambda d, c: d.replace(
                b"<EntityDescriptor ", b'<EntityDescriptor validUntil="2001-01-01T00:00:00Z" '
            ),
            "metadata expired",
        ),
        (
            lambda d, c: d.replace(
                f'Location="{ENTRA_SAML2_URL}"/>\n    <SingleSignOnService'.encode(),
                b'Location="javascript:alert(1)"/>\n    <SingleSignOnService',
            ),
            r"not an absolute http\(s\) URL",
        ),
        (
            lambda d, c: d.replace(b"SAML:2.0:protocol", b"SAML:1.1:protocol"),
            "does not support SAML 2.0",
        ),
        (
            lambda d, c: d.replace(
                b"<EntityDescriptor ", b'<EntityDescriptor validUntil="2030-13-45T00:00:00Z" '
            ),
            "validUntil is not a date",
        ),
        (lambda d, c: d + b" " * 5_000_000, "larger than"),
    ],
)
def test_unusable_metadata_is_refused_with_a_short_reason(certs, change, reason):
    doc = change(entra_metadata([certs[0].body]), certs[0].body)
    with pytest.raises(MetadataError, match=reason) as caught:
        parse_idp_metadata(doc)
    assert len(str(caught.value)) < 200
    assert "\n" not in str(caught.value)


def test_valid_until_in_the_future_is_kept_out_of_the_clean_copy(certs):
    doc = entra_metadata([certs[0].body]).replace(
        b"<EntityDescriptor ", b'<EntityDescriptor validUntil="2999-01-01T00:00:00.1234567Z" '
    )
    info = parse_idp_metadata(doc)
    assert info.valid_until is not None and info.valid_until.year == 2999
    assert "validUntil" not in info.xml


def test_entity_id_must_match(certs):
    doc = entra_metadata([certs[0].body])
    assert parse_idp_metadata(doc, ENTRA_ENTITY_ID).entity_id == ENTRA_ENTITY_ID
    with pytest.raises(MetadataError, match="expected 'https://sts.windows.net/other/'"):
        parse_idp_metadata(doc, "https://sts.windows.net/other/")


def test_entities_descriptor_selection(certs):
    tid_b = "00000000-0000-0000-0000-00000000000b"
    a = entra_entity([certs[0].body])
    b = entra_entity([certs[1].body], tenant_id=tid_b)
    sp_only = (
        '<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:sp">'
        '<SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<AssertionConsumerService index="0" Location="https://sp/acs" '
        f'Binding="{POST}"/></SPSSODescriptor></EntityDescriptor>\n'
    )
    both = entities_document(a, b, sp_only)
    with pytest.raises(MetadataError, match="lists 2 IdPs; choose one with idp.entity_id"):
        parse_idp_metadata(both)
    chosen = parse_idp_metadata(both, f"https://sts.windows.net/{tid_b}/")
    assert chosen.signing_certs == (certs[1].body,)
    assert chosen.xml.count("EntityDescriptor ") == 1
    assert pysaml2_metadata(chosen.xml).identity_providers() == [chosen.entity_id]
    with pytest.raises(MetadataError, match="no entity 'urn:nobody' in the metadata"):
        parse_idp_metadata(both, "urn:nobody")
    # Nested groups and a single IdP beside an SP: the IdP is picked.
    nested = entities_document(sp_only, entities_document(a).decode().split("\n", 1)[1])
    assert parse_idp_metadata(nested).entity_id == ENTRA_ENTITY_ID
    with pytest.raises(MetadataError, match="listed more than once"):
        parse_idp_metadata(entities_document(a, a), ENTRA_ENTITY_ID)


# -- fetching ------------------------------------------------------------------------------


@dataclasses.dataclass
class Served:
    url: str = ""
    status: int = 200
    body: bytes = b""
    hits: int = 0
    delay: float = 0.0
    location: str | None = None


@pytest.fixture
def server() -> Iterator[Served]:
    """A metadata server on 127.0.0.1 (free port), stopped at the end of the test."""
    state = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.hits += 1
            if state.delay:
                time.sleep(state.delay)
            try:
                if state.location:
                    self.send_response(302)
                    self.send_header("Location", state.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(state.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = httpd.server_address[1]
    state.url = (
        f"http://127.0.0.1:{port}/tid/federationmetadata/2007-06/federationmetadata.xml?appid=app"
    )
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/metadata.xml"


def test_fetch_metadata(server, certs):
    server.body = entra_metadata([certs[0].body])
    assert fetch_metadata(server.url) == server.body
    server.status = 404
    with pytest.raises(MetadataError, match="^HTTP 404$"):
        fetch_metadata(server.url)
    server.status = 200
    with pytest.raises(MetadataError, match="^too large$"):
        fetch_metadata(server.url, max_bytes=100)


def test_fetch_metadata_refusals(server):
    with pytest.raises(MetadataError, match="http"):
        fetch_metadata("file:///etc/passwd")
    with pytest.raises(MetadataError, match="^connection refused$"):
        fetch_metadata(_closed_port_url())
    for target in ("file:///etc/passwd", "ftp://127.0.0.1/metadata.xml"):
        server.location = target
        with pytest.raises(MetadataError, match="^redirect not followed"):
            fetch_metadata(server.url)
    server.location = None
    server.delay = 0.5
    with pytest.raises(MetadataError, match="^timed out$"):
        fetch_metadata(server.url, timeout=0.1)


# -- IdPMetadata ---------------------------------------------------------------------------


def test_metadata_url_load_refresh_failure_and_recovery(server, certs, caplog):
    server.body = entra_metadata([certs[0].body])
    clock = Clock(1000.0)
    idp = IdPMetadata(settings("metadata_url", metadata_url=server.url), clock=clock)
    first = idp.load()
    assert first.signing_certs == (certs[0].body,)
    assert idp.current() is first
    assert idp.version == 1
    assert server.hits == 1

    # Not due yet: no fetch.
    clock.now += 3599
    assert asyncio.run(idp.refresh_if_due()) is first
    assert server.hits == 1

    # Due: the rollover certificate appears.
    server.body = entra_metadata([certs[0].body, certs[1].body])
    clock.now += 2
    with caplog.at_level(logging.INFO, logger=LOGGER):
        second = asyncio.run(idp.refresh_if_due())
    assert server.hits == 2
    assert second.signing_certs == (certs[0].body, certs[1].body)
    assert idp.current() is second
    assert idp.version == 2
    assert any("signing certificates changed" in r.getMessage() for r in caplog.records)

    # The IdP breaks: the last good copy stays in force, one warning.
    caplog.clear()
    server.status = 500
    clock.now += 3601
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert asyncio.run(idp.refresh_if_due()) is second
    assert server.hits == 3
    assert idp.version == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert server.url in message and "HTTP 500" in message
    assert "EntityDescriptor" not in message

    # No refetch on every request; a retry after 300 s.
    clock.now += 299
    assert asyncio.run(idp.refresh_if_due()) is second
    assert server.hits == 3
    clock.now += 2
    assert asyncio.run(idp.refresh_if_due()) is second
    assert server.hits == 4

    # Recovery: the IdP now lists only the new certificate.
    server.status = 200
    server.body = entra_metadata([certs[1].body])
    clock.now += 301
    third = asyncio.run(idp.refresh_if_due())
    assert server.hits == 5
    assert third.signing_certs == (certs[1].body,)
    assert idp.version == 3

    # The same document again: same version (no pysaml2 client rebuild).
    clock.now += 3601
    assert asyncio.run(idp.refresh_if_due()) == third
    assert idp.version == 3
    assert server.hits == 6


def test_invalidate_makes_the_next_refresh_fetch(server, certs):
    server.body = entra_metadata([certs[0].body])
    idp = IdPMetadata(settings("metadata_url", metadata_url=server.url), clock=Clock(1000.0))
    idp.load()
    assert not idp.is_due()
    server.body = entra_metadata([certs[1].body])
    idp.invalidate()
    assert asyncio.run(idp.refresh_if_due()).signing_certs == (certs[1].body,)
    assert server.hits == 2 and not idp.is_due()


def test_broken_document_on_refresh_keeps_last_copy(server, certs, caplog):
    server.body = entra_metadata([certs[0].body])
    clock = Clock(1000.0)
    idp = IdPMetadata(settings("metadata_url", metadata_url=server.url), clock=clock)
    first = idp.load()
    server.body = b"<html>maintenance</html>"
    clock.now += 3601
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert idp.refresh_if_due_sync() is first
    assert "not SAML 2.0 metadata" in caplog.text
    assert "maintenance" not in caplog.text

    # A document for another entity is refused too (the start-up entity is pinned).
    server.body = entra_metadata([certs[1].body], tenant_id="other")
    clock.now += 301
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert idp.refresh_if_due_sync() is first
    assert "expected" in caplog.text


def test_concurrent_callers_fetch_once(certs):
    calls = []
    body = entra_metadata([certs[0].body])

    def slow_fetch(url: str) -> bytes:
        calls.append(url)
        time.sleep(0.05)
        return body

    clock = Clock(1000.0)
    idp = IdPMetadata(
        settings("metadata_url", metadata_url="https://idp.example/md"),
        fetch=slow_fetch,
        clock=clock,
    )
    idp.load()
    clock.now += 3601

    async def many() -> list[IdPInfo]:
        return await asyncio.gather(*(idp.refresh_if_due() for _ in range(10)))

    results = asyncio.run(many())
    assert len(calls) == 2  # start-up + one refresh
    assert all(r is results[0] for r in results)
    # A second event loop works too (the asyncio lock is per loop).
    clock.now += 3601
    asyncio.run(many())
    assert len(calls) == 3


def test_startup_with_404_names_the_key(server):
    server.status = 404
    with pytest.raises(ConfigError) as caught:
        IdPMetadata(settings("metadata_url", metadata_url=server.url)).load()
    assert caught.value.key == "idp.metadata_url"
    assert str(caught.value) == "idp.metadata_url: could not fetch metadata (HTTP 404)"


def test_startup_with_connection_refused():
    with pytest.raises(
        ConfigError, match=r"^idp.metadata_url: could not fetch metadata \(connection refused\)$"
    ):
        IdPMetadata(settings("metadata_url", metadata_url=_closed_port_url())).load()


def test_startup_with_unusable_document(server):
    server.body = b"<html/>"
    with pytest.raises(ConfigError, match="^idp.metadata_url: not SAML 2.0 metadata"):
        IdPMetadata(settings("metadata_url", metadata_url=server.url)).load()


def test_metadata_file_is_reread_when_it_changes(tmp_path, certs, caplog):
    path = tmp_path / "entra.xml"
    path.write_bytes(entra_metadata([certs[0].body]))
    clock = Clock(1000.0)
    idp = IdPMetadata(settings("metadata_file", metadata_file=str(path)), clock=clock)
    first = idp.load()
    assert first.signing_certs == (certs[0].body,)

    clock.now += 61  # unchanged file: same copy
    assert asyncio.run(idp.refresh_if_due()) is first

    path.write_bytes(entra_metadata([certs[0].body, certs[1].body]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert asyncio.run(idp.refresh_if_due()) is first  # checked a moment ago
    clock.now += 61
    second = asyncio.run(idp.refresh_if_due())
    assert second.signing_certs == (certs[0].body, certs[1].body)
    assert idp.version == 2

    path.unlink()
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert asyncio.run(idp.refresh_if_due()) is second
    assert "cannot read file" in caplog.text


def test_metadata_file_errors_at_startup(tmp_path):
    path = tmp_path / "md.xml"
    path.write_text("<EntityDescriptor")
    with pytest.raises(ConfigError, match="^idp.metadata_file: not well-formed XML"):
        IdPMetadata(settings("metadata_file", metadata_file=str(path))).load()
    with pytest.raises(ConfigError, match=r"^idp.metadata_file: cannot read file"):
        IdPMetadata(settings("metadata_file", metadata_file=str(tmp_path / "gone.xml"))).load()


def test_metadata_xml_source(certs):
    xml = entra_metadata([certs[0].body]).decode()
    idp = IdPMetadata(settings("metadata_xml", metadata_xml=xml, entity_id=ENTRA_ENTITY_ID))
    info = idp.load()
    assert info.entity_id == ENTRA_ENTITY_ID
    assert not idp.is_due()
    assert asyncio.run(idp.refresh_if_due()) is info
    no_idp = entra_metadata([certs[0].body], with_idp=False).decode()
    with pytest.raises(ConfigError, match="^idp.metadata_xml: no IDPSSODescriptor$"):
        IdPMetadata(settings("metadata_xml", metadata_xml=no_idp)).load()
    with pytest.raises(ConfigError, match="^idp.metadata_xml: entityID is"):
        IdPMetadata(settings("metadata_xml", metadata_xml=xml, entity_id="urn:other")).load()


def test_manual_source(certs):
    manual = settings(
        "manual",
        entity_id=ENTRA_ENTITY_ID,
        sso_url=ENTRA_SAML2_URL,
        slo_url=ENTRA_SAML2_URL,
        x509cert=certs[0].pem,
    )
    idp = IdPMetadata(manual)
    info = idp.load()
    assert info.sso_redirect_url == ENTRA_SAML2_URL
    assert info.slo_redirect_url == ENTRA_SAML2_URL
    assert info.signing_certs == (certs[0].body,)
    assert idp.version == 1 and not idp.is_due()
    assert len(pysaml2_metadata(info.xml).certs(ENTRA_ENTITY_ID, "idpsso", "signing")) == 1

    bad = dataclasses.replace(manual, x509cert="MIIB not a cert")
    with pytest.raises(ConfigError) as caught:
        IdPMetadata(bad).load()
    assert str(caught.value) == "idp.x509cert: not a valid X.509 certificate"
    assert "MIIB" not in str(caught.value)


def test_expired_certificates_are_reported(caplog):
    pem, body, _ = make_certificate("expired", days=-1)
    xml = manual_metadata_xml("urn:idp", "https://idp/sso", pem)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        IdPMetadata(settings("metadata_xml", metadata_xml=xml)).load()
    assert "every signing certificate of IdP urn:idp has expired" in caplog.text


@pytest.mark.parametrize(("days", "warned"), [(10, True), (60, False)])
def test_a_certificate_expiring_within_30_days_is_reported(caplog, days, warned):
    pem, _, _ = make_certificate("soon", days=days)
    xml = manual_metadata_xml("urn:idp", "https://idp/sso", pem)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        IdPMetadata(settings("metadata_xml", metadata_xml=xml)).load()
    assert ("the signing certificate of IdP urn:idp expires on" in caplog.text) is warned


def test_fixture_builder_output_is_what_entra_publishes(certs):
    """Guard the fixture itself: the parts a parser must step over are present."""
    doc = entra_metadata([certs[0].body, certs[1].body]).decode()
    for part in (
        '<EntityDescriptor ID="_',
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">',
        'xsi:type="fed:SecurityTokenServiceType"',
        'xsi:type="fed:ApplicationServiceType"',
        "<fed:ClaimTypesOffered>",
        "<fed:PassiveRequestorEndpoint>",
    ):
        assert part in doc
    assert doc.count("<X509Certificate>") == 1 + 3 * 2
