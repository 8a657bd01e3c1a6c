"""The one failure policy for the app's hooks (hooks.py): `AccessDenied` is the refusal
it names; any other crash is logged with its traceback and answered 503, never 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from saml_middleware import AccessDenied
from saml_middleware.engine import Engine, Response
from tests.helpers import header, request
from tests.test_tenants import tenant_settings

pytestmark = pytest.mark.anyio


async def test_a_tenants_loader_refusal_is_its_own_answer() -> None:
    def load(slug: str) -> dict[str, Any] | None:
        raise AccessDenied("This organization is blocked.")

    engine = Engine(tenant_settings(load))
    reply = await engine.handle(request("GET", "/saml/login/acme/"))
    assert isinstance(reply, Response) and reply.status == 403
    assert header(reply, "x-saml-error") == "access_denied"


async def test_a_crashing_resolver_is_logged_and_a_503(caplog: pytest.LogCaptureFixture) -> None:
    def resolver(path: str, host: str) -> str | None:
        raise RuntimeError("directory down")

    engine = Engine(tenant_settings(lambda slug: None, tenant_options={"resolver": resolver}))
    with caplog.at_level(logging.ERROR, logger="saml_middleware.engine"):
        reply = await engine.handle(request("GET", "/app/", headers={"accept": "text/html"}))
    assert isinstance(reply, Response) and reply.status == 503
    assert header(reply, "x-saml-error") == "tenant_unavailable"
    assert b"Traceback" not in reply.body
    (record,) = [r for r in caplog.records if "tenant_options.resolver failed" in r.getMessage()]
    assert record.exc_info is not None
