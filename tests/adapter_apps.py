"""One synchronous HTTP client over either adapter, and the SAML round trip it drives.

`client_for(app, kind)` talks to an ASGI or a WSGI app in process through the
same httpx.Client API, so a test written once runs against both adapters.
`login` performs the SP-initiated round trip with the development IdP.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from saml_middleware.devidp import DevIdP
from tests.helpers import SP_BASE


class SyncASGITransport(httpx.BaseTransport):
    """httpx.ASGITransport driven from synchronous code, on a private event loop."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = asyncio.new_event_loop()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self._loop.run_until_complete(send())

    def close(self) -> None:
        self._loop.close()


def client_for(app: Any, kind: str, base_url: str = SP_BASE) -> httpx.Client:
    """A client for an in-process app; `kind` is "asgi" or "wsgi"."""
    transport: httpx.BaseTransport
    if kind == "asgi":
        transport = SyncASGITransport(app)
    elif kind == "wsgi":
        transport = httpx.WSGITransport(app=app)
    else:
        raise ValueError(kind)
    return httpx.Client(transport=transport, base_url=base_url)


def to_idp(client: httpx.Client, page: str) -> httpx.Response:
    """Visit a protected page (or the login URL itself) as a browser; the redirect to the IdP."""
    reply = client.get(page, headers={"accept": "text/html"})
    if "/saml/login/" not in page:
        assert reply.status_code == 303, (reply.status_code, reply.text)
        reply = client.get(reply.headers["location"], headers={"accept": "text/html"})
    assert reply.status_code == 303, (reply.status_code, reply.text)
    return reply


def login(
    client: httpx.Client,
    devidp: DevIdP,
    user: str = "bsimon",
    page: str = "/me",
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """The SP-initiated round trip from `page`; returns the ACS answer (303 when signed in)."""
    redirect = to_idp(client, page)
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    info = devidp.parse_authn_request(query["SAMLRequest"][0], "redirect")
    saml_response = devidp.create_response(
        user, sp_entity_id=info.sp_entity_id, in_response_to=info.request_id
    )
    return client.post(
        urlsplit(info.acs_url).path,
        data={"SAMLResponse": saml_response, "RelayState": query["RelayState"][0]},
        headers=headers or {},
    )


def idp_initiated(
    client: httpx.Client,
    devidp: DevIdP,
    sp_entity_id: str,
    user: str = "bsimon",
    relay_state: str | None = None,
    *,
    acs_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """An unsolicited Response posted to the ACS (or `acs_url`'s path when given)."""
    saml_response = devidp.create_response(
        user, sp_entity_id=sp_entity_id, in_response_to=None, acs_url=acs_url
    )
    form = {"SAMLResponse": saml_response}
    if relay_state is not None:
        form["RelayState"] = relay_state
    target = (
        urlsplit(acs_url).path
        if acs_url
        else urlsplit(sp_entity_id).path.replace("/metadata/", "/acs/")
    )
    return client.post(target, data=form, headers=headers or {})
