"""Authorization helpers: require_roles (FastAPI/Starlette) and roles_required (Flask).

The user is put in place by a stub instead of a SAML sign-in: these tests are
about the helpers' decisions (401 anonymous, 403 missing role, pass otherwise).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.exceptions import HTTPException
from starlette.requests import Request

from saml_middleware import SAMLUser
from saml_middleware.authz import require_roles, roles_required
from saml_middleware.identity import ANONYMOUS
from tests.adapter_apps import client_for

ADMIN = SAMLUser(name_id="admin@x", user_id="1", roles=("Admin", "Member"))
MEMBER = SAMLUser(name_id="member@x", user_id="2", roles=("Member",))
USERS = {"admin": ADMIN, "member": MEMBER, "anonymous": ANONYMOUS}


# -- FastAPI -------------------------------------------------------------------------------


def fastapi_app() -> Any:
    app = FastAPI()

    @app.get("/me")
    async def me(user: Annotated[SAMLUser, Depends(require_roles())]) -> dict[str, str]:
        return {"name_id": user.name_id}

    @app.get("/admin")
    async def admin(user: Annotated[SAMLUser, Depends(require_roles("Admin"))]) -> dict[str, str]:
        return {"name_id": user.name_id}

    @app.get("/both")
    async def both(
        user: Annotated[SAMLUser, Depends(require_roles("Admin", "Member"))],
    ) -> dict[str, str]:
        return {"name_id": user.name_id}

    async def stub_middleware(scope: Any, receive: Any, send: Any) -> None:
        """Stands in for SAMLMiddleware: the user named by the `x-user` header."""
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-user", b"").decode()
            if who:
                scope["user"] = USERS[who]
        await app(scope, receive, send)

    return stub_middleware


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        ("anonymous", "/me", 401),
        ("anonymous", "/admin", 401),
        ("member", "/me", 200),
        ("member", "/admin", 403),
        ("member", "/both", 403),
        ("admin", "/admin", 200),
        ("admin", "/both", 200),
    ],
)
def test_require_roles_as_a_fastapi_dependency(who, path, status):
    with client_for(fastapi_app(), "asgi") as client:
        reply = client.get(path, headers={"x-user": who})
    assert reply.status_code == status
    if status == 200:
        assert reply.json() == {"name_id": USERS[who].name_id}
    else:
        assert reply.json()["detail"] in (
            "Sign-in required.",
            "Your account does not have the role this page needs.",
        )


def test_require_roles_adds_no_parameter_to_the_openapi_schema():
    app = FastAPI()

    @app.get("/admin")
    async def admin(user: Annotated[SAMLUser, Depends(require_roles("Admin"))]) -> None:
        return None

    assert "parameters" not in app.openapi()["paths"]["/admin"]["get"]


def _request(user: SAMLUser | None) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    if user is not None:
        scope["user"] = user
    return Request(scope)


def test_require_roles_called_directly_in_starlette():
    assert asyncio.run(require_roles("Admin")(_request(ADMIN))) is ADMIN
    with pytest.raises(HTTPException) as refused:
        asyncio.run(require_roles("Admin")(_request(MEMBER)))
    assert refused.value.status_code == 403
    with pytest.raises(HTTPException) as refused:
        asyncio.run(require_roles()(_request(ANONYMOUS)))
    assert refused.value.status_code == 401


def test_require_roles_without_the_middleware_is_a_programming_error():
    with pytest.raises(RuntimeError, match="SAMLMiddleware"):
        asyncio.run(require_roles()(_request(None)))


@pytest.mark.parametrize("bad", [("",), (None,), (["Admin"],)])
def test_role_names_must_be_strings(bad):
    with pytest.raises(TypeError):
        require_roles(*bad)
    with pytest.raises(TypeError):
        roles_required(*bad)


def test_require_roles_repr():
    assert repr(require_roles("Admin", "Ops")) == "require_roles('Admin', 'Ops')"


# -- Flask ---------------------------------------------------------------------------------


def flask_app() -> tuple[Flask, Any]:
    app = Flask(__name__)

    @app.get("/admin")
    @roles_required("Admin")
    def admin() -> str:
        return "admin area"

    @app.get("/signed-in")
    @roles_required()
    def signed_in() -> str:
        return "hello"

    @app.get("/async-admin")
    @roles_required("Admin")
    async def async_admin() -> str:
        return "async admin area"

    def stub_middleware(environ: dict[str, Any], start_response: Any) -> Any:
        """Stands in for SAMLWSGIMiddleware: the user named by the `x-user` header."""
        who = environ.get("HTTP_X_USER")
        if who:
            environ["saml.user"] = USERS[who]
        return app.wsgi_app(environ, start_response)

    return app, stub_middleware


@pytest.mark.parametrize(
    ("who", "path", "status", "text"),
    [
        ("anonymous", "/admin", 401, "Sign-in required."),
        ("anonymous", "/signed-in", 401, "Sign-in required."),
        ("member", "/signed-in", 200, "hello"),
        ("member", "/admin", 403, "does not have the role"),
        ("member", "/async-admin", 403, "does not have the role"),
        ("admin", "/admin", 200, "admin area"),
        ("admin", "/async-admin", 200, "async admin area"),
    ],
)
def test_roles_required_on_flask_views(who, path, status, text):
    _, wsgi = flask_app()
    with client_for(wsgi, "wsgi") as client:
        reply = client.get(path, headers={"x-user": who})
    assert reply.status_code == status
    assert text in reply.text


def test_roles_required_keeps_the_view_name():
    app, _ = flask_app()
    assert app.view_functions["admin"].__name__ == "admin"


def test_roles_required_without_the_middleware_is_a_programming_error():
    app, _ = flask_app()
    app.testing = True  # let the exception through instead of a 500 page
    with client_for(app, "wsgi") as client, pytest.raises(RuntimeError, match="SAMLWSGI"):
        client.get("/admin")
