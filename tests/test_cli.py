"""The command line, and the demo app driven in-process through a full SAML round trip."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from saml_middleware.cli import main
from saml_middleware.cli.demo import build_demo_app
from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine
from tests.helpers import settings_for, stop_process

REPO = Path(__file__).resolve().parent.parent
HOST, PORT = "127.0.0.1", 8000
BASE = f"http://{HOST}:{PORT}"
WAIT_SECONDS = 30


# -- a tiny HTML form reader ----------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(a.get("action", ""), a.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag in ("input", "select") and self._current is not None and a.get("name"):
            self._current.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._current.text += data


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def path_of(url: str) -> str:
    """The path (and query) of an absolute URL, for the in-process client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- the command line ---------------------------------------------------------------------


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "dev-idp" in out


@pytest.mark.parametrize("command", ["demo", "dev-idp"])
def test_subcommand_help(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out
    if command == "dev-idp":
        assert "--users" in out and "--sp-metadata" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
        (["demo", "--port", "99999"], "port out of range"),
        (["demo", "--port", "http"], "not a port number"),
        (["demo", "--host", "0.0.0.0"], "not a loopback address"),
        (["dev-idp", "--host", "example.com"], "not a loopback address"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, expected):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("saml-middleware: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err


def test_dev_idp_bad_users_file_is_one_line(capsys, tmp_path):
    missing = tmp_path / "missing.json"
    assert main(["dev-idp", "--port", "0", "--users", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--users" in err and "missing.json" in err

    broken = tmp_path / "users.json"
    broken.write_text('[{"key": "x"}]')
    assert main(["dev-idp", "--port", "0", "--users", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "user #1" in err and "Traceback" not in err


def test_dev_idp_bad_sp_metadata_is_one_line(capsys, tmp_path):
    bad = tmp_path / "sp.xml"
    bad.write_text("<not-metadata/>")
    assert main(["dev-idp", "--port", "0", "--sp-metadata", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sp-metadata" in err and "Traceback" not in err


def test_port_in_use_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "saml_middleware", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and "invalid choice" in done.stderr
    done = subprocess.run(
        [sys.executable, "examples/starlette_app.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert done.returncode == 0 and "saml-middleware demo" in done.stdout, done.stderr


# -- dev-idp, served for real ------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    first_line: str


@pytest.fixture
def served_dev_idp(tmp_path) -> Iterator[tuple[Server, DevIdP, Engine]]:
    """`dev-idp --port 0` trusting an SP (metadata from a file); stopped afterwards."""
    placeholder = DevIdP("http://127.0.0.1:1/idp")  # only to build a valid SP
    engine = Engine(settings_for(placeholder))
    sp_file = tmp_path / "sp.xml"
    sp_file.write_text(engine.sp_metadata_xml())
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saml_middleware",
            "dev-idp",
            "--port",
            "0",
            "--sp-metadata",
            str(sp_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
        try:
            first = lines.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            pytest.fail(f"dev-idp did not start: {(tmp_path / 'server.log').read_text()}")
        yield Server(process, first), placeholder, engine
    finally:
        stop_process(process, 10)
        log.close()


def test_dev_idp_serves_metadata_and_my_apps(served_dev_idp):
    server, _, engine = served_dev_idp
    assert server.first_line.startswith("saml-middleware dev-idp: metadata at http://127.0.0.1:")
    metadata_url = server.first_line.split(" at ", 1)[1].strip()
    assert metadata_url.endswith("/metadata")
    origin = metadata_url.rsplit("/", 1)[0]
    with httpx.Client(timeout=10) as client:
        for _ in range(100):  # the line is printed just before uvicorn starts serving
            try:
                reply = client.get(metadata_url)
                break
            except httpx.ConnectError:
                threading.Event().wait(0.1)
        assert reply.status_code == 200
        assert "IDPSSODescriptor" in reply.text and metadata_url in reply.text
        my_apps = client.get(origin + "/")
    assert engine.settings.sp.entity_id in my_apps.text
    assert "B.Simon" in my_apps.text


# -- the demo app, in-process -------------------------------------------------------------


@pytest.fixture
def demo_app():
    return build_demo_app(HOST, PORT)


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def post_auto_form(client: httpx.AsyncClient, html: str) -> httpx.Response:
    """What the browser does with the IdP's auto-posting form: POST it to the SP's ACS."""
    (form,) = forms(html)
    assert form.method == "post" and form.action == f"{BASE}/saml/acs/"
    assert form.fields["SAMLResponse"]
    return await client.post(path_of(form.action), data=form.fields)


async def sign_in(client: httpx.AsyncClient, user: str, page: str = "/profile") -> httpx.Response:
    """SP-initiated: from a protected page, through the IdP's sign-in page, back to the page."""
    first = await client.get(page, headers={"accept": "text/html"})
    assert first.status_code == 303
    assert first.headers["location"] == f"/saml/login/?next={page}"
    to_idp = await client.get(first.headers["location"])
    assert to_idp.status_code == 303
    assert to_idp.headers["location"].startswith(f"{BASE}/idp/sso/redirect?SAMLRequest=")
    sign_in_page = await client.get(path_of(to_idp.headers["location"]))
    assert sign_in_page.status_code == 200, sign_in_page.text
    for name in ("B.Simon", "A.Jones", "C.Norole"):
        assert f"Sign in as {name}" in sign_in_page.text
    (choice,) = [f for f in forms(sign_in_page.text) if f.fields.get("user") == user]
    assert choice.action == f"{BASE}/idp/sso/continue"
    auto_post = await client.post(path_of(choice.action), data=choice.fields)
    assert auto_post.status_code == 200, auto_post.text
    assert forms(auto_post.text)[0].fields.get("RelayState")
    acs = await post_auto_form(client, auto_post.text)
    assert acs.status_code == 303, acs.text
    assert acs.headers["location"] == page
    assert "saml_session=" in acs.headers["set-cookie"]
    assert "Secure" not in acs.headers["set-cookie"]  # the demo runs on plain http
    return acs


@pytest.mark.anyio
async def test_demo_full_sp_initiated_login(demo_app):
    async with client_for(demo_app) as client:
        home = await client.get("/")
        assert home.status_code == 200
        assert 'href="/saml/login/?next=/profile"' in home.text and "Sign in" in home.text

        await sign_in(client, "bsimon")
        profile = await client.get("/profile")
        assert profile.status_code == 200
        assert "<h1>B.Simon</h1>" in profile.text
        assert "B.Simon@contoso.com" in profile.text
        assert "Admin" in profile.text
        assert "http://schemas.microsoft.com/identity/claims/objectidentifier" in profile.text
        assert '<form method="post" action="/saml/logout/"' in profile.text
        assert "Hello, B.Simon" in (await client.get("/")).text

        admin = await client.get("/admin")
        assert admin.status_code == 200 and "Only the Admin role" in admin.text

        confirm = await client.get("/saml/logout/")  # a GET only shows the button
        assert confirm.status_code == 200 and "set-cookie" not in confirm.headers
        assert (await client.get("/profile")).status_code == 200
        signed_out = await client.post("/saml/logout/")
        assert signed_out.status_code == 303  # on to the dev IdP's Single Logout
        assert "/idp/slo?SAMLRequest=" in signed_out.headers["location"]
        again = await client.get("/profile", headers={"accept": "text/html"})
        assert again.status_code == 303 and again.headers["location"].startswith("/saml/login/")


@pytest.mark.anyio
async def test_demo_member_is_refused_admin(demo_app):
    async with client_for(demo_app) as client:
        await sign_in(client, "ajones", page="/admin")
        assert (await client.get("/admin")).status_code == 403
        profile = await client.get("/profile")
        assert "A.Jones" in profile.text and "Member" in profile.text


@pytest.mark.anyio
async def test_demo_idp_initiated_from_my_apps(demo_app):
    async with client_for(demo_app) as client:
        to_slash = await client.get("/idp")
        assert to_slash.status_code in (307, 308)
        my_apps = await client.get("/idp/")
        assert my_apps.status_code == 200
        (tile,) = forms(my_apps.text)
        assert tile.action == f"{BASE}/idp/initiate"
        assert tile.fields["sp"] == f"{BASE}/saml/metadata/"
        auto_post = await client.post(
            path_of(tile.action),
            data={"sp": tile.fields["sp"], "user": "bsimon", "RelayState": "/profile"},
        )
        assert auto_post.status_code == 200, auto_post.text
        acs = await post_auto_form(client, auto_post.text)
        assert acs.status_code == 303, acs.text
        assert acs.headers["location"] == "/profile"
        profile = await client.get("/profile")
        assert profile.status_code == 200
        assert "<h1>B.Simon</h1>" in profile.text and "Admin" in profile.text


@pytest.mark.anyio
async def test_demo_idp_initiated_without_relay_state_lands_on_home(demo_app):
    async with client_for(demo_app) as client:
        auto_post = await client.post(
            "/idp/initiate", data={"sp": f"{BASE}/saml/metadata/", "user": "ajones"}
        )
        acs = await post_auto_form(client, auto_post.text)
        assert acs.status_code == 303 and acs.headers["location"] == "/"
        assert "Hello, A.Jones" in (await client.get("/")).text


@pytest.mark.anyio
async def test_demo_api_client_gets_401(demo_app):
    async with client_for(demo_app) as client:
        reply = await client.get("/profile", headers={"accept": "application/json"})
    assert reply.status_code == 401


def test_demo_secret_is_fresh_per_app():
    from saml_middleware.cli.demo import demo_settings

    first = demo_settings(BASE, "<xml/>", ["/profile"])
    second = demo_settings(BASE, "<xml/>", ["/profile"])
    assert first["secret_key"] != second["secret_key"] and len(first["secret_key"]) >= 32
    assert first["session"] == {"https_only": False}
