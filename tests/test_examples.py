"""The FastAPI, Flask and Django examples, driven in process through a full sign-in.

Each example's `build(settings)` is served with the demo's settings
(`saml_middleware.cli.demo.demo_settings`) around the session's development IdP;
the commands in their docstrings are started for real in tests/e2e/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from saml_middleware.claims import ENTRA_DISPLAY_NAME, ENTRA_EMAIL, ENTRA_ROLE
from saml_middleware.cli.demo import demo_settings
from saml_middleware.devidp import DevIdP, DevUser
from tests.adapter_apps import client_for, idp_initiated, login

REPO = Path(__file__).resolve().parent.parent
BASE = "http://app.example.test"  # the demo settings are for plain http (no Secure cookie)
HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}


def serve(devidp: DevIdP, build: Callable[..., Any], kind: str, protect: Any) -> httpx.Client:
    """An in-process client for an example's `build`, registered with the IdP."""
    app, engine = build(demo_settings(BASE, devidp.metadata_xml(), protect))
    devidp.add_service_provider(engine.sp_metadata_xml())
    client = client_for(app, kind, BASE)
    client.engine = engine  # type: ignore[attr-defined]
    return client


def h1(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert found, html
    return found.group(1).strip()


# -- FastAPI ------------------------------------------------------------------------------


@pytest.fixture
def fastapi_client(devidp: DevIdP) -> Iterator[httpx.Client]:
    from examples import fastapi_app

    with serve(devidp, fastapi_app.build, "asgi", fastapi_app.PROTECTED_PATHS) as client:
        yield client


def test_fastapi_home_is_public_with_a_sign_in_link(fastapi_client):
    reply = fastapi_client.get("/", headers=HTML)
    assert reply.status_code == 200
    assert 'href="/saml/login/?next=/profile">Sign in</a>' in reply.text


def test_fastapi_dependency_returns_the_user(fastapi_client, devidp):
    acs = login(fastapi_client, devidp, "bsimon", "/profile")
    assert acs.headers["location"] == "/profile"
    profile = fastapi_client.get("/profile", headers=HTML)
    assert profile.status_code == 200 and h1(profile.text) == "B.Simon"
    assert "objectidentifier" in profile.text
    me = fastapi_client.get("/api/me", headers=JSON).json()
    assert me["name_id"] == "B.Simon@contoso.com" and me["roles"] == ["Admin"]
    admin = fastapi_client.get("/admin", headers=HTML)
    assert admin.status_code == 200 and h1(admin.text) == "Admin"
    assert h1(fastapi_client.get("/", headers=HTML).text) == "Hello, B.Simon"


def test_fastapi_role_dependency_refuses_a_member(fastapi_client, devidp):
    login(fastapi_client, devidp, "ajones", "/profile")
    admin = fastapi_client.get("/admin", headers=HTML)
    assert admin.status_code == 403
    assert admin.json() == {"detail": "Your account does not have the role this page needs."}


def test_fastapi_api_without_session_is_401_json(fastapi_client):
    reply = fastapi_client.get("/api/me", headers=JSON)
    assert reply.status_code == 401
    assert reply.json()["error"] == "authentication_required"


def test_fastapi_dependency_guards_paths_the_middleware_leaves_open(devidp):
    from examples import fastapi_app

    with serve(devidp, fastapi_app.build, "asgi", ["/profile"]) as client:
        reply = client.get("/admin", headers=HTML)  # not protected by the middleware
    assert reply.status_code == 401 and reply.json() == {"detail": "Sign-in required."}


# -- Flask --------------------------------------------------------------------------------


@pytest.fixture
def flask_client(devidp: DevIdP) -> Iterator[httpx.Client]:
    from examples import flask_app

    with serve(devidp, flask_app.build, "wsgi", flask_app.PROTECTED_PATHS) as client:
        yield client


def test_flask_login_profile_admin_and_sign_out(flask_client, devidp):
    home = flask_client.get("/", headers=HTML)
    assert 'href="/saml/login/?next=/profile">Sign in</a>' in home.text
    acs = login(flask_client, devidp, "bsimon", "/profile")
    assert acs.status_code == 303 and acs.headers["location"] == "/profile"
    profile = flask_client.get("/profile", headers=HTML)
    assert profile.status_code == 200 and h1(profile.text) == "B.Simon"
    assert "<th>Roles</th><td>Admin</td>" in profile.text
    assert profile.headers["cache-control"] == "no-store"
    assert flask_client.get("/admin", headers=HTML).status_code == 200
    out = flask_client.post("/saml/logout/", headers=HTML)
    assert out.status_code == 303  # on to the dev IdP's Single Logout
    assert out.headers["location"].startswith(devidp.slo_url + "?SAMLRequest=")
    assert "Sign in</a>" in flask_client.get("/", headers=HTML).text


def test_flask_member_gets_403_from_roles_required(flask_client, devidp):
    entity_id = flask_client.engine.settings.sp.entity_id
    acs = idp_initiated(flask_client, devidp, entity_id, "ajones")
    assert acs.status_code == 303 and acs.headers["location"] == "/"
    assert h1(flask_client.get("/", headers=HTML).text) == "Hello, A.Jones"
    admin = flask_client.get("/admin", headers=HTML)
    assert admin.status_code == 403 and "does not have the role" in admin.text


def test_flask_escapes_what_the_idp_sends(devidp):
    from examples import flask_app

    evil = DevUser(
        key="evil",
        name_id="evil@contoso.com",
        display="<script>alert(1)</script>",
        claims={ENTRA_DISPLAY_NAME: ["<script>alert(1)</script>"], ENTRA_EMAIL: ["e@x"]},
    )
    idp = DevIdP("https://idp.example.test/idp", users=[evil])
    with serve(idp, flask_app.build, "wsgi", flask_app.PROTECTED_PATHS) as client:
        login(client, idp, "evil", "/profile")
        page = client.get("/profile", headers=HTML).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_flask_mounted_under_a_path(devidp):
    from examples import flask_app

    settings = demo_settings(f"{BASE}/app", devidp.metadata_xml(), flask_app.PROTECTED_PATHS)
    app, engine = flask_app.build(settings)
    devidp.add_service_provider(engine.sp_metadata_xml())
    mounted = DispatcherMiddleware(lambda e, s: s("404 Not Found", []) or [b""], {"/app": app})
    with client_for(mounted, "wsgi", BASE) as client:
        assert 'href="/app/saml/login/?next=/app/profile"' in client.get("/app/").text
        acs = login(client, devidp, "bsimon", "/app/profile")
        assert acs.headers["location"] == "/app/profile"
        profile = client.get("/app/profile", headers=HTML).text
        assert 'action="/app/saml/logout/"' in profile and 'href="/app/admin"' in profile


# -- Django -------------------------------------------------------------------------------

CAROL = "carol@contoso.com"


def _carol(key: str, roles: list[str]) -> DevUser:
    claims = {ENTRA_EMAIL: [CAROL], ENTRA_DISPLAY_NAME: ["Carol"], ENTRA_ROLE: roles}
    return DevUser(key=key, name_id=CAROL, display=f"Carol ({key})", claims=claims)


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, DevIdP]]:
    """The Django example (SQLite in a temp dir), with an IdP whose Carol can change roles."""
    pytest.importorskip("django")
    import django
    from django.core.management import call_command

    from examples.django_project import __main__ as django_main

    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DJANGO_EXAMPLE_DB", str(db))
        env.setenv("DJANGO_ALLOWED_HOSTS", "app.example.test")
        env.setenv("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        idp = DevIdP(
            "https://idp.example.test/idp",
            users=[
                _carol("carol-admin", ["admins"]),
                _carol("carol-member", ["developers"]),
                DevUser(key="dave", name_id="dave@contoso.com", display="Dave", claims={}),
            ],
        )
        app, engine = django_main.build(
            demo_settings(BASE, idp.metadata_xml(), django_main.PROTECTED_PATHS)
        )
        idp.add_service_provider(engine.sp_metadata_xml())
        yield app, idp


@pytest.fixture
def django_client(django_app: tuple[Any, DevIdP]) -> Iterator[httpx.Client]:
    with client_for(django_app[0], "wsgi", BASE) as client:
        yield client


def _groups(username: str) -> list[str]:
    from django.contrib.auth.models import User

    return sorted(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_django_user_is_created_just_in_time_with_groups(django_app, django_client):
    from django.contrib.auth.models import User

    _, idp = django_app
    assert not User.objects.filter(username=CAROL).exists()
    acs = login(django_client, idp, "carol-admin", "/profile")
    assert acs.status_code == 303 and acs.headers["location"] == "/profile"
    profile = django_client.get("/profile", headers=HTML)
    assert profile.status_code == 200 and h1(profile.text) == "Carol"
    assert "<th>Roles</th><td>Admin</td>" in profile.text
    user = User.objects.get(username=CAROL)
    assert user.email == CAROL and _groups(CAROL) == ["Admin"]
    assert user.has_usable_password() is False
    assert django_client.get("/admin", headers=HTML).status_code == 200


def test_django_groups_follow_the_roles_at_the_next_sign_in(django_app, django_client):
    _, idp = django_app
    login(django_client, idp, "carol-admin", "/profile")
    assert django_client.get("/profile", headers=HTML).status_code == 200
    assert _groups(CAROL) == ["Admin"]
    # The same person signs in again (same browser, same Django session) as a member now.
    acs = login(django_client, idp, "carol-member", "/saml/login/?next=/profile")
    assert acs.status_code == 303
    assert django_client.get("/profile", headers=HTML).status_code == 200
    assert _groups(CAROL) == ["Member"]
    assert django_client.get("/admin", headers=HTML).status_code == 403


def test_django_user_without_roles_has_no_groups_and_no_admin(django_app, django_client):
    _, idp = django_app
    assert login(django_client, idp, "dave", "/profile").status_code == 303
    assert django_client.get("/profile", headers=HTML).status_code == 200  # Django sees Dave
    assert _groups("dave@contoso.com") == []
    assert django_client.get("/admin", headers=HTML).status_code == 403


def test_django_logs_out_when_the_saml_session_ends(django_app, django_client):
    _, idp = django_app
    login(django_client, idp, "carol-admin", "/profile")
    assert h1(django_client.get("/", headers=HTML).text) == "Hello, Carol"
    assert django_client.post("/saml/logout/").status_code == 303
    home = django_client.get("/", headers=HTML)
    assert "Sign in</a>" in home.text
    assert django_client.get("/profile", headers=JSON).status_code == 401


def test_django_ignores_a_remote_user_header_from_the_client(django_client):
    home = django_client.get("/", headers={**HTML, "Remote-User": CAROL})
    assert "Sign in</a>" in home.text


# -- the commands in the docstrings -------------------------------------------------------


@pytest.mark.parametrize("module", ["examples.fastapi_app", "examples.flask_app"])
def test_example_help_runs(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr
    assert "--idp-port" in done.stdout


def test_example_bad_port_is_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "examples.flask_app", "--port", "http"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not a port number" in done.stderr and "Traceback" not in done.stderr
