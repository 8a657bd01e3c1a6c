"""SimpleSAMLphp 1.19 (Debian's package) as a foreign IdP for the browser tests.

`SimpleSAMLphp` runs it with PHP's built-in server (`php -S 127.0.0.1:<free
port>`, document root /usr/share/simplesamlphp/www) on a private config dir
(`SIMPLESAMLPHP_CONFIG_DIR`) and metadata dir under a pytest tmp dir: the
templates in tests/e2e/simplesamlphp/ with their `{{...}}` values filled in and a
fresh IdP key pair. Nothing under /etc or /usr/share is changed.

`register_sp` adds one of our SPs to its `saml20-sp-remote.php` from the XML
our `/saml/metadata/` serves, converted by SimpleSAMLphp's own metadata parser
(tests/e2e/simplesamlphp/sp_metadata.php), plus the options an admin adds by
hand. SimpleSAMLphp reads its metadata files at every request, so SPs can be
registered while it runs.

`serve_sp` serves one ASGI app with uvicorn in a thread, on a socket already
bound. Every wait is bounded. When a test fails, SimpleSAMLphp's log (every
SAML message it sent and received) is `<tmp>/log/simplesamlphp.log`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from saml_middleware.keys import generate_key_pair
from tests.e2e.servers import START_SECONDS, STOP_SECONDS, browser_available
from tests.helpers import stop_process

WWW = Path("/usr/share/simplesamlphp/www")
AUTOLOAD = Path("/usr/share/simplesamlphp/lib/_autoload.php")
TEMPLATES = Path(__file__).resolve().parent / "simplesamlphp"
# scripts/test installs SimpleSAMLphp and sets this: there the tests fail, never skip.
REQUIRED_BY = "SAML_REQUIRE_SIMPLESAMLPHP"


def simplesamlphp_missing() -> str | None:
    """Why the SimpleSAMLphp tests cannot run here, or None when they can."""
    if shutil.which("php") is None:
        return "php is not installed (apt-get install php-cli php-xml)"
    if not AUTOLOAD.is_file():
        return "SimpleSAMLphp is not installed (apt-get install simplesamlphp)"
    modules = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30).stdout
    if "dom" not in modules.split():
        return "PHP's XML extensions are missing (apt-get install php-xml)"
    return browser_available()


def skip_or_fail_without_simplesamlphp() -> None:
    """Skip (with the reason) where SimpleSAMLphp is missing; fail instead in CI."""
    reason = simplesamlphp_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRED_BY) or os.environ.get("CI"):
        pytest.fail(f"SimpleSAMLphp is required here ({REQUIRED_BY} or CI is set): {reason}")
    pytest.skip(reason, allow_module_level=True)


def bind_loopback() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, so a URL is known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", value)
    assert "{{" not in template, f"a template value is missing: {template}"
    return template


class SimpleSAMLphp:
    """One SimpleSAMLphp IdP on 127.0.0.1 under `root`; a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.metadata_dir = root / "metadata"
        with bind_loopback() as sock:  # php -S binds by itself: take a port that was free
            self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.server_log: IO[bytes] | None = None

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/saml2/idp/metadata.php"

    @property
    def entity_id(self) -> str:
        return self.metadata_url  # __DYNAMIC:1__ in saml20-idp-hosted.php

    def log(self) -> str:
        """The end of SimpleSAMLphp's own log, for failure messages."""
        path = self.root / "log" / "simplesamlphp.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def _write_config(self) -> None:
        for name in ("cert", "metadata", "log", "data", "tmp", "sessions", "config"):
            (self.root / name).mkdir(mode=0o700, exist_ok=True)
        values = {
            "BASE_URL": self.base_url,
            "DIR": str(self.root),
            "SECRET_SALT": secrets.token_hex(16),
            "ADMIN_PASSWORD": secrets.token_hex(16),
        }
        for name in ("config.php", "authsources.php"):
            (self.config_dir / name).write_text(_fill((TEMPLATES / name).read_text(), values))
        hosted = (TEMPLATES / "saml20-idp-hosted.php").read_text()
        (self.metadata_dir / "saml20-idp-hosted.php").write_text(_fill(hosted, values))
        (self.metadata_dir / "saml20-sp-remote.php").write_text("<?php\n")
        key_pem, cert_pem = generate_key_pair("SimpleSAMLphp test IdP", days=365)
        (self.root / "cert" / "idp.key").write_text(key_pem)
        (self.root / "cert" / "idp.crt").write_text(cert_pem)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(self.config_dir)}

    def start(self) -> None:
        self._write_config()
        self.server_log = (self.root / "php-server.log").open("wb")
        self.process = subprocess.Popen(
            # No OPcache: SPs are registered while it runs, and its metadata files are PHP.
            ["php", "-d", "opcache.enable=0", "-S", f"127.0.0.1:{self.port}"],
            cwd=WWW,
            env=self._env(),
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    reply = client.get(self.metadata_url)
                    if reply.status_code == 200 and b"IDPSSODescriptor" in reply.content:
                        return
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"SimpleSAMLphp did not answer {self.metadata_url}: {self.log()}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, STOP_SECONDS)
            self.process = None
        if self.server_log is not None:
            self.server_log.close()
            self.server_log = None

    def __enter__(self) -> SimpleSAMLphp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register_sp(self, metadata_xml: str, **options: Any) -> None:
        """Trust one SP: its metadata as SimpleSAMLphp converts it, then `options` over it.

        `options` are saml20-sp-remote settings (`assertion.encryption`, ...);
        None removes a key the conversion made (e.g. `NameIDFormat`).
        """
        work = self.root / "tmp"
        xml_path = work / f"sp-{secrets.token_hex(4)}.xml"
        xml_path.write_text(metadata_xml)
        options_path = xml_path.with_suffix(".json")
        options_path.write_text(json.dumps(options))
        converted = subprocess.run(
            ["php", str(TEMPLATES / "sp_metadata.php"), str(xml_path), str(options_path)],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert converted.returncode == 0 and converted.stdout.startswith("$metadata["), (
            f"SimpleSAMLphp refused our SP metadata: {converted.stderr or converted.stdout}"
        )
        with (self.metadata_dir / "saml20-sp-remote.php").open("a") as remote:
            remote.write(converted.stdout)


@contextmanager
def serve_sp(app: Any, sock: socket.socket) -> Iterator[None]:
    """Serve an ASGI app with uvicorn in a thread on `sock` until the block ends."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the SP app did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)
        sock.close()
