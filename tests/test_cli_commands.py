"""`saml-middleware keygen`, `metadata` and `check`: success and failure paths.

The IdP metadata `check` reads is served over real HTTP from 127.0.0.1 (a
`http.server` in a thread, stopped after each test), with certificates made here
with `cryptography`: valid, expired, or expiring within the warning window.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from saml_middleware.cli import main
from saml_middleware.cli.check import _store_status
from saml_middleware.config import load_settings
from saml_middleware.engine import Engine
from tests.fixtures_metadata import entra_metadata

REPO = Path(__file__).resolve().parent.parent
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
BASE = "https://app.example.test"
SECRET = "cli-test-secret-0123456789abcdef"
ENTITY = "https://sts.windows.net/3f1c6a0e-5b7d-4c2e-9a8b-0d1e2f3a4b5c/"


# -- fixtures: certificates, an IdP metadata server, settings files -----------------------


def make_cert(
    not_after: dt.timedelta, not_before: dt.timedelta = dt.timedelta(days=-400)
) -> tuple[str, str, str]:
    """A self-signed certificate valid from now+not_before to now+not_after.

    Returns (PEM, Base64 DER body, SHA-1 thumbprint as Entra shows it).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Microsoft Azure Federated SSO")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return pem, base64.b64encode(der).decode(), cert.fingerprint(hashes.SHA1()).hex().upper()


@pytest.fixture(scope="module")
def valid_cert() -> tuple[str, str, str]:
    return make_cert(dt.timedelta(days=365))


@pytest.fixture(scope="module")
def expired_cert() -> tuple[str, str, str]:
    return make_cert(dt.timedelta(days=-3))


@pytest.fixture(scope="module")
def expiring_cert() -> tuple[str, str, str]:
    return make_cert(dt.timedelta(days=10))


@dataclass
class MetadataServer:
    """Serves `documents` (path -> bytes) on 127.0.0.1; counts the requests."""

    documents: dict[str, bytes] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    origin: str = ""

    def url(self, path: str) -> str:
        return self.origin + path


@pytest.fixture
def idp_server() -> Iterator[MetadataServer]:
    served = MetadataServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.hits.append(self.path)
            body = served.documents.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def settings_dict(idp: dict[str, Any], **sections: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "base_url": BASE,
        "secret_key": SECRET,
        "idp": idp,
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
    }
    settings.update(sections)
    return settings


def write_json(tmp_path: Path, settings: dict[str, Any], name: str = "settings.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(settings, indent=2))
    return str(path)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    return status, captured.out, captured.err


def assert_one_line_error(err: str, *expected: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("saml-middleware: error: "), err
    for text in expected:
        assert text in lines[0], err


def serve_entra(server: MetadataServer, *bodies: str) -> str:
    """Entra-shaped federation metadata with these signing certificates; returns its URL."""
    server.documents["/federationmetadata.xml"] = entra_metadata(list(bodies))
    return server.url("/federationmetadata.xml")


# -- --help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, options",
    [
        ("keygen", ["--out-dir", "--kind", "--bits", "--days", "--common-name", "--force"]),
        ("metadata", ["--settings", "--tenant"]),
        ("check", ["--settings"]),
    ],
)
def test_help(capsys, command, options):
    status, out, err = run([command, "--help"], capsys)
    assert status == 0 and err == ""
    for option in options:
        assert option in out


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    for command in ("keygen", "metadata", "check", "demo", "dev-idp"):
        assert command in out


# -- keygen -------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_0600_and_its_certificate(tmp_path, capsys):
    out_dir = tmp_path / "secrets"  # created
    status, out, err = run(["keygen", "--out-dir", str(out_dir), "--days", "30"], capsys)
    assert status == 0 and err == ""
    key_path, cert_path = out_dir / "sp.key", out_dir / "sp.crt"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key() == key.public_key()
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert str(key_path.resolve()) in out and str(cert_path.resolve()) in out

    # The printed snippet is the settings that use the files, and they load.
    (snippet,) = [line.strip() for line in out.splitlines() if line.strip().startswith('"sp"')]
    sp = json.loads("{" + snippet + "}")["sp"]
    assert sp == {"key_file": str(key_path.resolve()), "cert_file": str(cert_path.resolve())}
    settings = load_settings(
        {"base_url": BASE, "secret_key": SECRET, "sp": sp, "idp": {"metadata_url": BASE + "/x"}}
    )
    assert settings.sp.key_pem == key_path.read_text()


def test_keygen_ec_and_rsa_bits(tmp_path, capsys):
    status, out, _ = run(["keygen", "--out-dir", str(tmp_path / "ec"), "--kind", "ec"], capsys)
    assert status == 0 and "EC P-256" in out
    key = serialization.load_pem_private_key((tmp_path / "ec/sp.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"

    argv = ["keygen", "--out-dir", str(tmp_path / "rsa"), "--bits", "3072", "--common-name", "cn"]
    status, out, _ = run(argv, capsys)
    assert status == 0 and "RSA 3072" in out
    key = serialization.load_pem_private_key((tmp_path / "rsa/sp.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    cert = x509.load_pem_x509_certificate((tmp_path / "rsa/sp.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=cn"


@pytest.mark.parametrize("existing", ["sp.key", "sp.crt"])
def test_keygen_never_overwrites_without_force(tmp_path, capsys, existing):
    (tmp_path / existing).write_text("precious")
    status, out, err = run(["keygen", "--out-dir", str(tmp_path)], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, existing, "already exists", "--force")
    assert (tmp_path / existing).read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # nothing else written


def test_keygen_refuses_a_symlink_in_the_way(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.write_text("do not touch")
    (tmp_path / "sp.key").symlink_to(target)
    status, _, err = run(["keygen", "--out-dir", str(tmp_path)], capsys)
    assert status == 1 and "already exists" in err
    assert target.read_text() == "do not touch"


def test_keygen_force_replaces_and_tightens_the_mode(tmp_path, capsys):
    old_key = tmp_path / "sp.key"
    old_key.write_text("old")
    old_key.chmod(0o644)
    (tmp_path / "sp.crt").write_text("old")
    status, _, err = run(["keygen", "--out-dir", str(tmp_path), "--force"], capsys)
    assert status == 0 and err == ""
    assert "PRIVATE KEY" in old_key.read_text()
    assert stat.S_IMODE(old_key.stat().st_mode) == 0o600
    assert "CERTIFICATE" in (tmp_path / "sp.crt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sp.crt", "sp.key"]  # no temp files


@pytest.mark.parametrize(
    "argv, status, expected",
    [
        (["--kind", "ec", "--bits", "4096"], 1, "--bits is only for --kind rsa"),
        (["--bits", "1024"], 2, "invalid choice: 1024"),
        (["--days", "0"], 2, "--days"),
        (["--days", "soon"], 2, "not a number of days"),
        (["--kind", "dsa"], 2, "invalid choice: 'dsa'"),
        (["--common-name", ""], 2, "--common-name"),
    ],
)
def test_keygen_bad_options_are_one_line(tmp_path, capsys, argv, status, expected):
    code, out, err = run(["keygen", "--out-dir", str(tmp_path), *argv], capsys)
    assert code == status and out == ""
    assert_one_line_error(err, expected)
    assert list(tmp_path.iterdir()) == []


def test_keygen_unwritable_directory_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(["keygen", "--out-dir", str(blocker / "sub")], capsys)
    assert status == 1
    assert_one_line_error(err, "cannot write")


# -- metadata -----------------------------------------------------------------------------


def test_metadata_prints_only_the_sp_metadata(tmp_path, capsys, idp_server, valid_cert):
    url = serve_entra(idp_server, valid_cert[1])
    spec = write_json(tmp_path, settings_dict({"metadata_url": url}))
    status, out, err = run(["metadata", "--settings", spec], capsys)
    assert status == 0 and err == ""
    root = etree.fromstring(out.encode())  # the whole of stdout is one XML document
    assert root.tag == f"{MD}EntityDescriptor"
    assert root.get("entityID") == f"{BASE}/saml/metadata/"
    (acs,) = root.iter(f"{MD}AssertionConsumerService")
    assert acs.get("Location") == f"{BASE}/saml/acs/"
    assert out.endswith("\n") and out.count("<?xml") <= 1
    assert idp_server.hits == []  # the IdP is not contacted
    # Exactly what the running middleware serves at /saml/metadata/.
    served = Engine(settings_dict({"metadata_url": url})).sp_metadata_xml()
    assert out.strip() == served.strip()


def test_metadata_needs_no_reachable_idp_and_includes_the_sp_certificate(tmp_path, capsys):
    assert main(["keygen", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    sp = {"key_file": str(tmp_path / "sp.key"), "cert_file": str(tmp_path / "sp.crt")}
    # Entra's metadata URL does not exist before the app is created there: a placeholder.
    idp = {"metadata_url": "http://127.0.0.1:1/federationmetadata.xml"}
    spec = write_json(tmp_path, settings_dict(idp, sp=sp))
    status, out, err = run(["metadata", "--settings", spec], capsys)
    assert status == 0 and err == ""
    root = etree.fromstring(out.encode())
    body = "".join((tmp_path / "sp.crt").read_text().splitlines()[1:-1])
    certs = [
        "".join((e.text or "").split())
        for e in root.iter("{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
    ]
    assert body in certs


def test_metadata_of_one_organization(tmp_path, capsys):
    settings = settings_dict({"metadata_url": "https://idp.example/md"})
    settings["tenants"] = {"acme": {"idp": {"metadata_url": "https://idp.example/acme.xml"}}}
    spec = write_json(tmp_path, settings)
    status, out, err = run(["metadata", "--settings", spec, "--tenant", "acme"], capsys)
    assert status == 0, err
    root = etree.fromstring(out.encode())
    assert root.get("entityID").endswith("/saml/metadata/acme/")
    acs = root.find(".//{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert acs.get("Location").endswith("/saml/acs/acme/")
    status, out, err = run(["metadata", "--settings", spec, "--tenant", "globex"], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, "--tenant", "no organization 'globex'")


def test_metadata_tenant_needs_tenants(tmp_path, capsys):
    spec = write_json(tmp_path, settings_dict({"metadata_url": "https://idp.example/md"}))
    status, out, err = run(["metadata", "--settings", spec, "--tenant", "acme"], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, "--tenant", "no tenants")


def test_check_lists_each_organizations_values(tmp_path, capsys, idp_server, valid_cert):
    settings = settings_dict({"metadata_url": "https://idp.example/md"})
    del settings["idp"]
    url = serve_entra(idp_server, valid_cert[1])
    settings["tenants"] = {"acme": {"idp": {"metadata_url": url}}}
    status, out, err = run(["check", "--settings", write_json(tmp_path, settings)], capsys)
    assert status == 0, out + err
    assert "== Organization acme" in out
    assert "/saml/acs/acme/" in out and "metadata --tenant acme" in out


def test_metadata_bad_settings_print_nothing_on_stdout(tmp_path, capsys):
    spec = write_json(tmp_path, settings_dict({"metadata_url": "not a url"}))
    status, out, err = run(["metadata", "--settings", spec], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, "idp.metadata_url")


# -- check --------------------------------------------------------------------------------


def report_lines(out: str) -> dict[str, str]:
    """The report's `label   value` lines, by label."""
    found = {}
    for line in out.splitlines():
        if line.startswith("  ") and "  " in line.strip():
            label, value = line.strip().split("  ", 1)
            found[label] = value.strip()
    return found


def test_check_with_a_valid_certificate(tmp_path, capsys, idp_server, valid_cert):
    url = serve_entra(idp_server, valid_cert[1])
    spec = write_json(tmp_path, settings_dict({"metadata_url": url}))
    status, out, err = run(["check", "--settings", spec], capsys)
    assert status == 0, out
    assert err == ""
    lines = report_lines(out)
    assert lines["Identifier (Entity ID)"] == f"{BASE}/saml/metadata/"
    assert lines["Reply URL (ACS URL)"] == f"{BASE}/saml/acs/"
    assert lines["Sign-on URL"] == f"{BASE}/saml/login/"
    assert lines["entity ID"] == ENTITY
    assert (
        lines["SSO URL"]
        == "https://login.microsoftonline.com/3f1c6a0e-5b7d-4c2e-9a8b-0d1e2f3a4b5c/saml2"
    )
    assert lines["SLO URL"].startswith("https://login.microsoftonline.com/")
    assert valid_cert[2] in lines["signing certificate 1"]
    assert "expires" in lines["signing certificate 1"]
    assert lines["attributes"] == "preset entra"
    assert lines["role claim"] == "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    assert lines["roles.map"] == "admins -> Admin; developers -> Member"
    assert lines["store"].startswith("memory (in-process")
    clock = dt.datetime.strptime(lines["clock"].split()[0], "%Y-%m-%dT%H:%M:%SZ")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs((now - clock).total_seconds()) < 60
    assert "error:" not in out and "warning:" not in out
    assert out.rstrip().endswith("check: OK")
    assert idp_server.hits == ["/federationmetadata.xml"]


def test_check_with_an_expired_certificate_fails(tmp_path, capsys, idp_server, expired_cert):
    url = serve_entra(idp_server, expired_cert[1])
    spec = write_json(tmp_path, settings_dict({"metadata_url": url}))
    status, out, err = run(["check", "--settings", spec], capsys)
    assert status == 1 and err == ""
    (line,) = [x for x in out.splitlines() if x.startswith("error:")]
    assert line.startswith("error: idp.metadata_url: signing certificate 1")
    assert expired_cert[2] in line and "expired" in line
    assert "EXPIRED" in report_lines(out)["signing certificate 1"]
    assert "1 error(s)" in out.splitlines()[-1]


def test_check_warns_of_a_certificate_expiring_soon(tmp_path, capsys, idp_server, expiring_cert):
    url = serve_entra(idp_server, expiring_cert[1])
    spec = write_json(tmp_path, settings_dict({"metadata_url": url}))
    status, out, _ = run(["check", "--settings", spec], capsys)
    assert status == 0, out
    (line,) = [x for x in out.splitlines() if x.startswith("warning:")]
    assert line.startswith("warning: idp.metadata_url: signing certificate 1")
    assert "under 30 days" in line and expiring_cert[2] in line
    assert "in 9 days" in out or "in 10 days" in out
    assert out.rstrip().endswith("check: OK with 1 warning(s)")


def test_check_rollover_with_one_expired_certificate_is_a_warning(
    tmp_path, capsys, idp_server, valid_cert, expired_cert
):
    url = serve_entra(idp_server, expired_cert[1], valid_cert[1])
    spec = write_json(tmp_path, settings_dict({"metadata_url": url}))
    status, out, _ = run(["check", "--settings", spec], capsys)
    assert status == 0, out
    lines = report_lines(out)
    assert "EXPIRED" in lines["signing certificate 1"]
    assert "expires" in lines["signing certificate 2"]
    (line,) = [x for x in out.splitlines() if x.startswith("warning:")]
    assert "idp.metadata_url" in line and expired_cert[2] in line


def test_check_metadata_url_not_found(tmp_path, capsys, idp_server):
    spec = write_json(tmp_path, settings_dict({"metadata_url": idp_server.url("/missing.xml")}))
    status, out, _ = run(["check", "--settings", spec], capsys)
    assert status == 1
    assert "error: idp.metadata_url: could not fetch metadata (HTTP 404)" in out.splitlines()
    # The rest of the report is still there: the values to paste, the store, the clock.
    lines = report_lines(out)
    assert lines["Reply URL (ACS URL)"] == f"{BASE}/saml/acs/"
    assert "store" in lines and "clock" in lines


def test_check_manual_idp_with_an_expired_certificate_names_x509cert(
    tmp_path, capsys, expired_cert
):
    idp = {
        "entity_id": ENTITY,
        "sso_url": "https://login.microsoftonline.com/t/saml2",
        "x509cert": expired_cert[0],
    }
    spec = write_json(tmp_path, settings_dict(idp))
    status, out, _ = run(["check", "--settings", spec], capsys)
    assert status == 1
    assert any(x.startswith("error: idp.x509cert: signing certificate 1") for x in out.splitlines())
    assert report_lines(out)["SLO URL"].startswith("none")


def test_check_settings_from_toml(tmp_path, capsys, idp_server, valid_cert):
    url = serve_entra(idp_server, valid_cert[1])
    path = tmp_path / "saml.toml"
    path.write_text(
        f'base_url = "{BASE}"\n'
        f'secret_key = "{SECRET}"\n'
        "[idp]\n"
        f'metadata_url = "{url}"\n'
        "[attributes]\n"
        'map = { email = "mail" }\n'
        "[roles.map]\n"
        'admins = ["Admin"]\n'
    )
    status, out, _ = run(["check", "--settings", str(path)], capsys)
    assert status == 0, out
    lines = report_lines(out)
    assert lines["attributes"] == "preset entra; email <- mail"
    assert lines["roles.map"] == "admins -> Admin"


def test_check_settings_from_module_attribute(tmp_path, capsys, monkeypatch, valid_cert):
    name = f"saml_settings_{uuid.uuid4().hex}"
    idp = {"entity_id": ENTITY, "sso_url": "https://idp.example/sso", "x509cert": valid_cert[1]}
    (tmp_path / f"{name}.py").write_text(
        "def provision(user):\n    return user\n\n"
        f"SAML = {settings_dict(idp)!r}\n"
        'SAML["provision"] = provision\n'
    )
    monkeypatch.chdir(tmp_path)
    try:
        status, out, _ = run(["check", "--settings", f"{name}:SAML"], capsys)
    finally:
        sys.modules.pop(name, None)
    assert status == 0, out
    lines = report_lines(out)
    assert lines["provision"] == f"{name}.provision"
    assert lines["SSO URL"] == "https://idp.example/sso"
    assert str(tmp_path) not in sys.path


def test_check_from_the_console_in_a_project_directory(tmp_path, valid_cert):
    """As a user runs it: a subprocess, settings importable from the current directory."""
    idp = {"entity_id": ENTITY, "sso_url": "https://idp.example/sso", "x509cert": valid_cert[1]}
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "saml.py").write_text(f"SETTINGS = {settings_dict(idp)!r}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "saml_middleware", "check", "--settings", "myapp.saml:SETTINGS"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert "Reply URL (ACS URL)" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "saml_middleware", "check", "--settings", "myapp.saml:NOPE"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert_one_line_error(done.stderr, "myapp.saml has no attribute NOPE")


@pytest.mark.parametrize(
    "change, key",
    [
        ({"base_url": "app.example.test"}, "base_url"),
        ({"secret_key": "short"}, "secret_key"),
        ({"idp": {"metadata_url": "ftp://idp.example/md"}}, "idp.metadata_url"),
        ({"idp": {"entity_id": ENTITY, "sso_url": "https://idp.example/sso"}}, "idp.x509cert"),
        ({"roles": {"map": {"admins": 5}}}, "roles.map.admins"),
        ({"sessions": {}}, "sessions"),
        ({"store": {"backend": "postgres"}}, "store.backend"),
    ],
)
def test_check_bad_settings_are_one_line_naming_the_key(tmp_path, capsys, change, key):
    settings = settings_dict({"metadata_url": "https://idp.example/md"})
    settings.update(change)
    spec = write_json(tmp_path, settings)
    status, out, err = run(["check", "--settings", spec], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, f"settings: {key}: ")


def test_check_reports_settings_that_cannot_work(tmp_path, capsys, valid_cert):
    idp = {"entity_id": ENTITY, "sso_url": "https://idp.example/sso", "x509cert": valid_cert[1]}
    settings = settings_dict(
        idp,
        base_url="http://app.example.test",
        roles={"map": {}, "require_mapped_role": True},
    )
    spec = write_json(tmp_path, settings)
    status, out, _ = run(["check", "--settings", spec], capsys)
    assert status == 1
    problems = [x for x in out.splitlines() if x.startswith(("error:", "warning:"))]
    assert any(x.startswith("error: roles.require_mapped_role: ") for x in problems)
    assert any(x.startswith("warning: base_url: plain http") for x in problems)
    assert any(x.startswith("warning: session.https_only: ") for x in problems)


def test_check_local_http_is_fine(tmp_path, capsys, valid_cert):
    idp = {"entity_id": ENTITY, "sso_url": "https://idp.example/sso", "x509cert": valid_cert[1]}
    settings = settings_dict(idp, base_url="http://127.0.0.1:8000", session={"https_only": False})
    status, out, _ = run(["check", "--settings", write_json(tmp_path, settings)], capsys)
    assert status == 0 and "warning:" not in out, out
    assert report_lines(out)["Sign-on URL"] == "http://127.0.0.1:8000/saml/login/"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.json", None, "no such file"),
        ("broken.json", '{"base_url": ', "not valid JSON (line 1"),
        ("list.json", "[]", "must hold a JSON object"),
        ("twice.json", '{"idp": {}, "idp": {}}', "key 'idp' appears twice"),
        ("broken.toml", "base_url = ", "not valid TOML"),
        ("settings.yaml", "base_url: x", "use a .json or .toml file"),
    ],
)
def test_check_unreadable_settings_files(tmp_path, capsys, name, content, expected):
    if content is not None:
        (tmp_path / name).write_text(content)
    status, out, err = run(["check", "--settings", str(tmp_path / name)], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, f"--settings {tmp_path / name}: {expected}")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("no_such_module_xyz:SETTINGS", "no module named 'no_such_module_xyz'"),
        ("json:loads", "is a function, not a settings dict"),
        ("json:NOPE", "json has no attribute NOPE"),
        ("not a spec", "not a .json or .toml file, nor module:attribute"),
    ],
)
def test_check_bad_module_attribute(capsys, spec, expected):
    status, out, err = run(["check", "--settings", spec], capsys)
    assert status == 1 and out == ""
    assert_one_line_error(err, expected)


def test_check_module_that_fails_to_import(tmp_path, capsys, monkeypatch):
    name = f"broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('no database\\nhere')\n")
    monkeypatch.chdir(tmp_path)
    status, _, err = run(["check", "--settings", f"{name}:SETTINGS"], capsys)
    assert status == 1
    assert_one_line_error(err, f"importing {name} failed: RuntimeError: no database here")


def test_toml_without_tomllib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """Python 3.10 has no tomllib: without the tomli backport, say so in one line."""
    import builtins

    real_import = builtins.__import__

    def no_toml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("tomllib", "tomli"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_toml)
    path = tmp_path / "saml.toml"
    path.write_text(f'base_url = "{BASE}"\n')
    status, _, err = run(["check", "--settings", str(path)], capsys)
    assert status == 1
    assert_one_line_error(err, "reading TOML needs Python 3.11 or later", "tomli")


def test_store_status_reports_an_unreachable_shared_store():
    """A shared store (redis) is probed with one read; a failure names the key, not the URL."""

    class Down:
        async def get(self, key: str) -> None:
            raise ConnectionRefusedError("redis://:hunter2@cache:6379 refused")

    class Up:
        async def get(self, key: str) -> None:
            return None

    @dataclass
    class FakeStore:
        backend: str = "redis"
        url: str | None = "redis://:hunter2@cache:6379"

    @dataclass
    class FakeSettings:
        store: FakeStore = field(default_factory=FakeStore)

    status, problem = asyncio.run(_store_status(FakeSettings(), Down()))  # type: ignore[arg-type]
    assert status == "redis: NOT reachable"
    assert problem == "not reachable (ConnectionRefusedError)"
    assert "hunter2" not in status + problem
    status, problem = asyncio.run(_store_status(FakeSettings(), Up()))  # type: ignore[arg-type]
    assert status == "redis: reachable" and problem is None


def test_keygen_leaves_no_key_without_its_certificate(tmp_path, capsys, monkeypatch):
    from saml_middleware.cli import keygen

    real_write = keygen._write_new

    def failing_write(path: Path, text: str, mode: int, force: bool) -> None:
        if path.name == "sp.crt":
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, text, mode, force)

    monkeypatch.setattr(keygen, "_write_new", failing_write)
    status, _, err = run(["keygen", "--out-dir", str(tmp_path)], capsys)
    assert status == 1
    assert_one_line_error(err, "cannot write", "sp.crt", "Permission denied")
    assert list(tmp_path.iterdir()) == []
