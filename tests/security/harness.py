"""The ACS under attack: post forged responses through the engine and check each refusal.

`Acs` is one engine trusting one development IdP whose key the tests hold. A
test mints a genuine response, forges it (tests/forge.py), posts it, and then
`assert_refused(reply, code)` checks everything a refusal must be (docs/security.md,
"No oracle"): the status, the code, no cookie, no redirect, no stack trace, the
browser still anonymous on its next request, and for signature and decryption
failures the one answer that gives no oracle.

The real refusal code is read from the engine's log record (`saml_error`): the
browser sees `UNVERIFIABLE_CODE` for all of `UNVERIFIABLE`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lxml import etree

from saml_middleware.devidp import DevIdP
from saml_middleware.engine import Engine, PassThrough, Response
from saml_middleware.errors import SAMLError
from saml_middleware.http import error_response
from saml_middleware.saml.sp import UNVERIFIABLE, UNVERIFIABLE_CODE
from tests import forge
from tests.forge import KeyPair
from tests.helpers import Browser, header, request

IDP_URL = "https://idp.example.test/idp"
EVIL = "https://evil.test"
RELAY = "/after-login"
VICTIM = "admin@contoso.com"


class RefusalLog(logging.Handler):
    """Collects the refusal codes the engine logs (`extra={"saml_error": code}`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.codes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        code = getattr(record, "saml_error", None)
        if code is not None:
            self.codes.append(code)


@contextmanager
def refusal_log() -> Iterator[RefusalLog]:
    """Capture the engine's refusal codes for the duration of the block."""
    handler = RefusalLog()
    logger = logging.getLogger("saml_middleware.engine")
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@dataclass
class Acs:
    """One engine trusting `idp`, and the steps of a forged login against it."""

    engine: Engine
    idp: DevIdP
    keys: KeyPair
    last_browser: Browser | None = None  # the browser of the last post
    last_code: str | None = None  # the refusal code the engine logged for the last post

    @property
    def cookie_name(self) -> str:
        return self.engine.settings.session.cookie_name

    @property
    def skew(self) -> int:
        return self.engine.settings.security.clock_skew_seconds

    def register(self) -> None:
        """Have the IdP trust this engine's metadata (the IdP keeps its server if unchanged)."""
        self.idp.add_service_provider(self.engine.sp_metadata_xml())

    def mint_encoded(self, in_response_to: str | None = None, **options: object) -> str:
        """A genuine response for bsimon, Base64 as the IdP posts it."""
        self.register()
        return self.idp.create_response(
            "bsimon",
            sp_entity_id=self.engine.settings.sp.entity_id,
            in_response_to=in_response_to,
            **options,  # type: ignore[arg-type]
        )

    def mint(self, in_response_to: str | None = None, **options: object) -> etree._Element:
        """A genuine response for bsimon, decoded for mutation."""
        return forge.decode(self.mint_encoded(in_response_to, **options))

    async def start_login(self, browser: Browser) -> str:
        """Start an SP-initiated login; the ID of the AuthnRequest the engine remembers."""
        self.register()
        saml_request, _ = await browser.start_login(RELAY)
        return self.idp.parse_authn_request(saml_request, "redirect").request_id

    async def post(self, root: etree._Element, browser: Browser | None = None) -> Response:
        return await self.post_encoded(forge.encode(root), browser)

    async def post_encoded(self, saml_response: str, browser: Browser | None = None) -> Response:
        browser = browser or Browser(self.engine, self.idp)
        self.last_browser = browser
        with refusal_log() as log:
            reply = await browser.post_acs(saml_response, relay_state=RELAY)
        self.last_code = log.codes[-1] if log.codes else None
        return reply

    async def post_resigned(
        self,
        root: etree._Element,
        *,
        response: bool = False,
        algorithm: str = "sha256",
        browser: Browser | None = None,
    ) -> Response:
        """Re-sign with the trusted IdP key, then post."""
        forge.resign(root, self.keys, response=response, algorithm=algorithm)
        return await self.post(root, browser)

    async def assert_refused(self, reply: Response, code: str, status: int = 403) -> None:
        """A refusal with `code`: nothing set, nowhere sent, the browser still anonymous."""
        shown = UNVERIFIABLE_CODE if code in UNVERIFIABLE else code
        assert (reply.status, self.last_code) == (status, code), (
            reply.status,
            self.last_code,
            reply.body[:300],
        )
        assert header(reply, "x-saml-error") == shown
        assert header(reply, "set-cookie") is None
        assert header(reply, "location") is None
        assert b"Traceback" not in reply.body
        if code in UNVERIFIABLE:
            assert reply.body == unverifiable_body(self.engine)
        browser = self.last_browser
        # No session (a login binding of its own, still unused, may remain).
        assert browser is not None and set(browser.cookies) <= {f"{self.cookie_name}_login"}
        after = await browser.get(RELAY)  # a protected page: still sent to sign in
        assert isinstance(after, Response) and after.status == 303, after
        assert (header(after, "location") or "").startswith("/saml/login/")

    async def assert_logged_in(self, reply: Response, name_id: str = "B.Simon@contoso.com") -> None:
        assert reply.status == 303, (reply.status, self.last_code)
        assert header(reply, "location") == RELAY
        assert self.last_browser is not None
        passed = await self.last_browser.get(RELAY)
        assert isinstance(passed, PassThrough)
        assert passed.user.is_authenticated and passed.user.name_id == name_id


def unverifiable_body(engine: Engine) -> bytes:
    """The one page every signature, key, algorithm or decryption refusal shows."""
    reply = error_response(
        SAMLError("invalid_signature", "x"), request("POST", "/saml/acs/", headers={})
    )
    return reply.body
