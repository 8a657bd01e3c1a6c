"""The development IdP trusting apps on this machine: at their first AuthnRequest
(their metadata read from their entity ID URL) or from its "Add an application" page.

The SPs are the project's own engine, with their metadata served by a small
stdlib HTTP server on a free loopback port.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from saml_middleware.cli.demo import demo_settings
from saml_middleware.devidp import DevIdP, DevIdPError, create_app
from saml_middleware.devidp import idp as idp_module
from saml_middleware.devidp.local_sps import (
    LocalMetadataError,
    fetch_local_metadata,
    is_loopback_url,
)
from saml_middleware.engine import Engine, HttpRequest
from saml_middleware.keys import generate_key_pair

IDP_BASE = "http://127.0.0.1:9/idp"  # never contacted: the tests call the IdP in process
KEY_PEM, CERT_PEM = generate_key_pair("local SPs test IdP")


def make_idp(base_url: str = IDP_BASE, **kwargs: Any) -> DevIdP:
    return DevIdP(base_url, key_pem=KEY_PEM, cert_pem=CERT_PEM, **kwargs)


@dataclass
class Pages:
    """What the little HTTP server answers: path -> (status, headers, body)."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def web() -> Iterator[tuple[str, Pages]]:
    """A loopback HTTP server answering from `Pages`; (its origin, the pages)."""
    pages = Pages()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            pages.hits.append(self.path)
            status, headers, body = pages.routes.get(self.path, (404, {}, b"not here"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


def local_sp(idp: DevIdP, origin: str, pages: Pages) -> Engine:
    """An SP at `origin` whose metadata is served at its entity ID (/saml/metadata/)."""
    engine = Engine(demo_settings(origin, idp.metadata_xml(), ["/p"]))
    xml = engine.sp_metadata_xml().encode()
    pages.routes["/saml/metadata/"] = (200, {"Content-Type": "application/xml"}, xml)
    return engine


def authn_request(engine: Engine) -> str:
    """The SAMLRequest of the SP's HTTP-Redirect to the IdP."""
    reply = asyncio.run(
        engine.handle(HttpRequest("GET", "/saml/login/", headers={"accept": "text/html"}))
    )
    location = dict(reply.headers)["location"]  # type: ignore[union-attr]
    return parse_qs(urlsplit(location).query)["SAMLRequest"][0]


# -- which URLs may be fetched ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8000/saml/metadata/acme/", True),
        ("https://127.0.0.2/x", True),
        ("http://[::1]:8000/saml/metadata/", True),
        ("http://localhost:8000/", True),
        ("http://app.localhost/", True),
        ("http://10.0.0.1/saml/metadata/", False),
        ("http://example.com/saml/metadata/", False),
        ("http://127.0.0.1.nip.io/", False),  # a name to look up, even if it says 127...
        ("http://user@127.0.0.1/", False),
        ("ftp://127.0.0.1/", False),
        ("file:///etc/passwd", False),
        ("http://127.0.0.1:99999/", False),
        (" http://127.0.0.1/", False),
        ("urn:example:sp", False),
    ],
)
def test_only_loopback_urls_are_fetched(url: str, ok: bool) -> None:
    assert is_loopback_url(url) is ok


def test_fetch_refuses_what_is_not_local_without_connecting() -> None:
    with pytest.raises(LocalMetadataError, match="on this machine"):
        fetch_local_metadata("http://example.com/saml/metadata/")


def test_fetch_limits(web: tuple[str, Pages]) -> None:
    origin, pages = web
    pages.routes["/ok"] = (200, {}, b"<EntityDescriptor/>")
    pages.routes["/big"] = (200, {}, b"x" * 2048)
    pages.routes["/moved"] = (302, {"Location": "http://example.com/md"}, b"")
    pages.routes["/binary"] = (200, {}, b"\xff\xfe")
    assert fetch_local_metadata(f"{origin}/ok") == "<EntityDescriptor/>"
    with pytest.raises(LocalMetadataError, match="larger than 1024 bytes"):
        fetch_local_metadata(f"{origin}/big", max_bytes=1024)
    with pytest.raises(LocalMetadataError, match="redirects"):
        fetch_local_metadata(f"{origin}/moved")
    with pytest.raises(LocalMetadataError, match="HTTP 404"):
        fetch_local_metadata(f"{origin}/missing")
    with pytest.raises(LocalMetadataError, match="UTF-8"):
        fetch_local_metadata(f"{origin}/binary")
    assert "/moved" in pages.hits and len(pages.hits) == 5  # the redirect was not followed


def test_fetch_names_a_refused_connection() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(LocalMetadataError, match="connection refused"):
            fetch_local_metadata(f"http://127.0.0.1:{port}/saml/metadata/")


# -- trusting a local SP at its first AuthnRequest -------------------------------------


def test_default_trusts_local_sps_only_for_an_idp_on_loopback() -> None:
    assert make_idp("http://127.0.0.1:9000").trust_local_sps is True
    assert make_idp("http://localhost:9000/idp").trust_local_sps is True
    assert make_idp("https://idp.example.test/idp").trust_local_sps is False
    assert make_idp("https://idp.example.test/idp", trust_local_sps=True).trust_local_sps is True
    assert make_idp("http://127.0.0.1:9000", trust_local_sps=False).trust_local_sps is False


def test_an_unknown_local_sp_is_trusted_at_its_first_request(web: tuple[str, Pages]) -> None:
    origin, pages = web
    idp = make_idp(IDP_BASE)
    engine = local_sp(idp, origin, pages)
    info = idp.parse_authn_request(authn_request(engine), "redirect")
    assert info.sp_entity_id == f"{origin}/saml/metadata/"
    assert info.acs_url == f"{origin}/saml/acs/"
    assert pages.hits == ["/saml/metadata/"]
    assert (info.sp_entity_id, info.acs_url) in idp.service_providers()
    # Trusted now: a response for it is made, and a second request fetches nothing.
    assert idp.create_response("bsimon", sp_entity_id=info.sp_entity_id, in_response_to="x")
    idp.parse_authn_request(authn_request(engine), "redirect")
    assert pages.hits == ["/saml/metadata/"]


def test_a_stale_copy_is_read_again(web: tuple[str, Pages], monkeypatch) -> None:
    origin, pages = web
    idp = make_idp(IDP_BASE)
    engine = local_sp(idp, origin, pages)
    idp.parse_authn_request(authn_request(engine), "redirect")
    monkeypatch.setattr(idp_module, "LOCAL_SP_REFRESH_SECONDS", 0.0)
    idp.parse_authn_request(authn_request(engine), "redirect")
    assert pages.hits == ["/saml/metadata/", "/saml/metadata/"]
    # The SP is down: the copy it has keeps serving.
    pages.routes.clear()
    assert idp.parse_authn_request(authn_request(engine), "redirect").acs_url.endswith("/acs/")


def test_a_local_sp_whose_metadata_cannot_be_read_is_refused_with_the_reason(
    web: tuple[str, Pages],
) -> None:
    origin, pages = web
    idp = make_idp(IDP_BASE)
    engine = local_sp(idp, origin, pages)
    pages.routes.clear()
    with pytest.raises(DevIdPError, match=r"could not read SP metadata .*HTTP 404"):
        idp.parse_authn_request(authn_request(engine), "redirect")


def test_metadata_of_another_entity_is_refused(web: tuple[str, Pages]) -> None:
    origin, pages = web
    idp = make_idp(IDP_BASE)
    engine = local_sp(idp, origin, pages)
    other = Engine(demo_settings("http://127.0.0.1:1", idp.metadata_xml(), ["/p"]))
    pages.routes["/saml/metadata/"] = (200, {}, other.sp_metadata_xml().encode())
    with pytest.raises(DevIdPError, match="describes 'http://127.0.0.1:1/saml/metadata/'"):
        idp.parse_authn_request(authn_request(engine), "redirect")


def test_without_trust_or_off_loopback_an_unknown_sp_stays_unknown(
    web: tuple[str, Pages],
) -> None:
    origin, pages = web
    idp = make_idp(IDP_BASE, trust_local_sps=False)
    engine = local_sp(idp, origin, pages)
    with pytest.raises(DevIdPError, match="unknown service provider"):
        idp.parse_authn_request(authn_request(engine), "redirect")
    trusting = make_idp(IDP_BASE)
    remote = Engine(demo_settings("https://sp.example.test", trusting.metadata_xml(), ["/p"]))
    with pytest.raises(DevIdPError, match="unknown service provider"):
        trusting.parse_authn_request(authn_request(remote), "redirect")
    assert pages.hits == []


# -- the "Add an application" page ------------------------------------------------------


@pytest.fixture
def idp_client() -> Iterator[tuple[DevIdP, httpx.Client]]:
    from tests.adapter_apps import SyncASGITransport

    idp = make_idp("http://127.0.0.1:9", trust_local_sps=False)
    transport = SyncASGITransport(create_app(idp))
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:9") as client:
        yield idp, client


def test_add_an_application_from_its_metadata_url(
    web: tuple[str, Pages], idp_client: tuple[DevIdP, httpx.Client]
) -> None:
    origin, pages = web
    idp, client = idp_client
    local_sp(idp, origin, pages)
    my_apps = client.get("/")
    assert 'href="http://127.0.0.1:9/apps/new"' in my_apps.text
    form = client.get("/apps/new")
    assert form.status_code == 200 and 'action="http://127.0.0.1:9/apps"' in form.text
    added = client.post("/apps", data={"metadata_url": f"{origin}/saml/metadata/"})
    assert added.status_code == 303 and added.headers["location"] == "http://127.0.0.1:9/"
    assert f"{origin}/saml/metadata/" in client.get("/").text


def test_add_an_application_from_pasted_xml(idp_client: tuple[DevIdP, httpx.Client]) -> None:
    idp, client = idp_client
    engine = Engine(demo_settings("https://sp.example.test", idp.metadata_xml(), ["/p"]))
    added = client.post("/apps", data={"metadata_xml": engine.sp_metadata_xml()})
    assert added.status_code == 303
    assert "https://sp.example.test/saml/metadata/" in client.get("/").text


@pytest.mark.parametrize(
    ("data", "headers", "reason"),
    [
        ({}, {}, "give either"),
        ({"metadata_url": "http://127.0.0.1:1/x", "metadata_xml": "<x/>"}, {}, "give either"),
        ({"metadata_url": "http://example.com/md"}, {}, "on this machine"),
        ({"metadata_xml": "<not metadata"}, {}, "could not be read"),
        ({"metadata_url": "http://127.0.0.1:1/x"}, {"origin": "https://evil.example"}, "own page"),
    ],
)
def test_add_an_application_refusals(
    idp_client: tuple[DevIdP, httpx.Client], data: dict[str, str], headers: dict, reason: str
) -> None:
    idp, client = idp_client
    refused = client.post("/apps", data=data, headers=headers)
    assert refused.status_code == 400 and reason in refused.text
    assert "Traceback" not in refused.text
    assert idp.service_providers() == []
