"""Single Logout end to end through both adapters and the development IdP's own pages.

The app (ASGI or WSGI) and the dev IdP's Starlette app are both served in
process; a browser-like client for each follows the redirects by hand:
SP-initiated (the app's sign-out button, the IdP's `/slo`, back to the app's
`/saml/sls/`) and IdP-initiated (My Apps' "Sign out everywhere", the app's
`/saml/sls/`, back to the IdP's `/slo`), with cookie and server-side sessions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from saml_middleware.devidp import DevIdP, create_app
from tests.adapter_apps import client_for, login
from tests.forge import KeyPair
from tests.helpers import settings_for
from tests.test_adapters import asgi_app, json_get, wsgi_app


@pytest.fixture
def idp_browser(devidp: DevIdP) -> Iterator[httpx.Client]:
    """A client for the dev IdP's pages, mounted where its base URL says."""
    app = Starlette(routes=[Mount("/idp", app=create_app(devidp))])
    with client_for(app, "asgi", "https://idp.example.test") as client:
        yield client


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["cookie", "store"])
def app_browser(
    request: pytest.FixtureRequest, kind: str, devidp: DevIdP, sp_keys: KeyPair
) -> Iterator[httpx.Client]:
    key, cert = sp_keys.key_pem, sp_keys.cert_pem
    settings: dict[str, Any] = settings_for(
        devidp,
        session__backend=request.param,
        sp__key_pem=key,
        sp__cert_pem=cert,
        paths__after_logout="/public/me",
        paths__exempt=["/public"],
    )
    app, engine = (asgi_app if kind == "asgi" else wsgi_app)(settings)
    devidp.add_service_provider(engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        yield client


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def test_sp_initiated_single_logout(
    app_browser: httpx.Client, idp_browser: httpx.Client, devidp: DevIdP
) -> None:
    assert login(app_browser, devidp, "bsimon", "/me").status_code == 303
    assert json_get(app_browser, "/me").json()["auth"] is True

    out = app_browser.post("/saml/logout/")
    assert out.status_code == 303
    assert out.headers["location"].startswith(devidp.slo_url + "?")
    assert json_get(app_browser, "/me").status_code == 401  # signed out here already

    at_idp = idp_browser.get(path_and_query(out.headers["location"]))
    assert at_idp.status_code == 303, at_idp.text
    back = at_idp.headers["location"]
    assert back.startswith("https://app.example.test/saml/sls/?SAMLResponse=")
    assert "Signature=" in back

    done = app_browser.get(path_and_query(back))
    assert done.status_code == 303 and done.headers["location"] == "/public/me"
    assert json_get(app_browser, "/public/me").json()["auth"] is False


def test_idp_initiated_single_logout(
    app_browser: httpx.Client, idp_browser: httpx.Client, devidp: DevIdP
) -> None:
    assert login(app_browser, devidp, "bsimon", "/me").status_code == 303
    entity_id = "https://app.example.test/saml/metadata/"
    my_apps = idp_browser.get("/idp/")
    assert "Sign out everywhere" in my_apps.text

    start = idp_browser.post("/idp/logout-everywhere", data={"sp": entity_id, "user": "bsimon"})
    assert start.status_code == 303, start.text
    to_app = start.headers["location"]
    assert to_app.startswith("https://app.example.test/saml/sls/?SAMLRequest=")

    at_app = app_browser.get(path_and_query(to_app))
    assert at_app.status_code == 303, at_app.text
    assert at_app.headers["location"].startswith(devidp.slo_url + "?SAMLResponse=")
    assert json_get(app_browser, "/me").status_code == 401

    shown = idp_browser.get(path_and_query(at_app.headers["location"]))
    assert shown.status_code == 200
    assert "Signed out everywhere" in shown.text and "Success" in shown.text
    assert "(signed)" in shown.text


def test_forged_logout_request_through_the_adapter_is_refused(
    app_browser: httpx.Client, devidp: DevIdP
) -> None:
    assert login(app_browser, devidp, "bsimon", "/me").status_code == 303
    _, outbound = devidp.create_logout_request(
        "https://app.example.test/saml/metadata/", "B.Simon@contoso.com", sign=False
    )
    refused = app_browser.get(path_and_query(outbound.url))
    assert refused.status_code == 403 and "location" not in refused.headers
    assert json_get(app_browser, "/me").json()["auth"] is True
