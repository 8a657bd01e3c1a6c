"""A foreign IdP: SimpleSAMLphp 1.19 (Debian's) and our SP, in Chromium.

One SimpleSAMLphp (tests/e2e/simplesamlphp.py) serves the whole module; our SP
is the Starlette example app behind `SAMLMiddleware`, served in-process by
uvicorn, three times with three settings, each registered at SimpleSAMLphp
from the XML its own `/saml/metadata/` serves:

- `plain_sp`: no SP key; SP- and IdP-initiated login, roles, Single Logout;
- `signed_sp`: an SP key, signed AuthnRequests; SimpleSAMLphp requires the
  signature (`validate.authnrequest`, and `validate.logout` for our logout
  messages) and encrypts assertions to us (`assertion.encryption`);
- `persistent_sp`: `sp.name_id_format` persistent and no NameIDFormat in its
  SimpleSAMLphp entry, so only the AuthnRequest's NameIDPolicy can ask for it.

Our SP reads SimpleSAMLphp's IdP metadata from `/saml2/idp/metadata.php`.
Users (tests/e2e/simplesamlphp/authsources.php): bsimon (staff, member ->
Admin, Member) and ajones (member -> Member), password = username.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest

from tests.e2e.servers import ARTIFACTS, STEP_MS, sign_out
from tests.e2e.simplesamlphp import (
    SimpleSAMLphp,
    bind_loopback,
    serve_sp,
    skip_or_fail_without_simplesamlphp,
)

skip_or_fail_without_simplesamlphp()  # skips here without php/SimpleSAMLphp; fails in CI

from playwright.sync_api import Page, expect  # noqa: E402

from examples.starlette_app import PROTECTED_PATHS, create_app  # noqa: E402
from saml_middleware import SAMLMiddleware  # noqa: E402
from saml_middleware.keys import generate_key_pair  # noqa: E402

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
# What the profile page shows for bsimon: name, email, roles (staff -> Admin, member -> Member).
B_SIMON = ("B.Simon", "B.Simon@contoso.com", ["Admin", "Member"])


@dataclass(frozen=True)
class SP:
    """One of our SPs as the browser sees it."""

    url: str
    entity_id: str


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleSAMLphp]:
    with SimpleSAMLphp(tmp_path_factory.mktemp("simplesamlphp")) as server:
        yield server


def settings(base_url: str, idp: SimpleSAMLphp, name: str, **changes: Any) -> dict[str, Any]:
    """The example app's settings against SimpleSAMLphp; `changes` replace top-level keys."""
    return {
        "base_url": base_url,
        "secret_key": secrets.token_urlsafe(32),
        "idp": {"metadata_url": idp.metadata_url},
        # All SPs share 127.0.0.1 (cookies ignore ports): one cookie name each.
        "session": {"https_only": False, "cookie_name": f"session_{name}"},
        "paths": {"protect": list(PROTECTED_PATHS)},
        "attributes": {"preset": "generic"},  # uid, email, displayName
        "roles": {
            "attribute": "eduPersonAffiliation",
            "map": {"staff": ["Admin"], "member": ["Member"]},
        },
        "security": {"crypto_backend": os.environ.get("SAML_TEST_CRYPTO_BACKEND", "inprocess")},
        **changes,
    }


def sp_key_pair(directory: Path) -> dict[str, str]:
    key_pem, cert_pem = generate_key_pair("saml_middleware test SP", days=365)
    (directory / "sp.key").write_text(key_pem)
    (directory / "sp.crt").write_text(cert_pem)
    return {"key_file": str(directory / "sp.key"), "cert_file": str(directory / "sp.crt")}


def start_sp(
    idp: SimpleSAMLphp, name: str, changes: dict[str, Any], **registration: Any
) -> Iterator[SP]:
    """Serve one SP (`changes` to its settings), register its served metadata, yield it."""
    sock = bind_loopback()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = SAMLMiddleware(create_app(), settings=settings(base_url, idp, name, **changes))
    with serve_sp(app, sock):
        metadata = httpx.get(f"{base_url}/saml/metadata/", timeout=10)
        assert metadata.status_code == 200, metadata.text
        idp.register_sp(metadata.text, **registration)
        entity_id = re.search(r'entityID="([^"]+)"', metadata.text)
        assert entity_id is not None
        yield SP(base_url, entity_id.group(1))


@pytest.fixture(scope="module")
def plain_sp(idp: SimpleSAMLphp) -> Iterator[SP]:
    yield from start_sp(idp, "plain", {})


@pytest.fixture(scope="module")
def signed_sp(idp: SimpleSAMLphp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SP]:
    keys = sp_key_pair(tmp_path_factory.mktemp("signed-sp"))
    yield from start_sp(
        idp,
        "signed",
        {"sp": {**keys, "sign_authn_requests": True}},
        **{"validate.authnrequest": True, "assertion.encryption": True, "validate.logout": True},
    )


@pytest.fixture(scope="module")
def persistent_sp(idp: SimpleSAMLphp) -> Iterator[SP]:
    # Without the converted NameIDFormat, SimpleSAMLphp 1.19 answers with a transient
    # NameID unless the AuthnRequest's NameIDPolicy asks for another format.
    # No user_id attribute (uid) either: user_id is the NameID.
    changes = {
        "sp": {"name_id_format": PERSISTENT},
        "attributes": {"preset": None, "map": {"email": "email", "display_name": "displayName"}},
    }
    yield from start_sp(idp, "persistent", changes, NameIDFormat=None)


# -- steps ------------------------------------------------------------------------------


def sign_in_at_simplesamlphp(page: Page, idp: SimpleSAMLphp, user: str) -> None:
    """SimpleSAMLphp's own login form: username, password (= username), Login."""
    expect(page).to_have_url(re.compile(re.escape(f"{idp.base_url}/module.php/core/loginuserpass")))
    page.locator("#username").fill(user)
    page.locator("#password").fill(user)
    page.locator("#submit_button").click()


def user_row(page: Page, label: str) -> Any:
    """The value cell of one row of the profile's user table (its header, exactly)."""
    header = page.locator("th").get_by_text(label, exact=True)
    return page.locator("table#user tr").filter(has=header).locator("td")


def user_field(page: Page, label: str) -> str:
    return str(user_row(page, label).inner_text())


def expect_profile(page: Page, sp: SP, name: str, email: str, roles: list[str]) -> None:
    expect(page).to_have_url(f"{sp.url}/profile")
    expect(page.locator("h1")).to_have_text(name)
    expect(user_row(page, "Email")).to_have_text(email)
    expect(user_row(page, "Roles")).to_have_text(", ".join(roles))


def sp_initiated_login(page: Page, idp: SimpleSAMLphp, sp: SP, user: str) -> None:
    page.goto(f"{sp.url}/profile")  # -> /saml/login/ -> SimpleSAMLphp's SSOService
    sign_in_at_simplesamlphp(page, idp, user)  # -> auto-posted Response -> /saml/acs/


def expect_signed_out(page: Page, idp: SimpleSAMLphp, sp: SP) -> None:
    """Our session is gone, and so is SimpleSAMLphp's: /profile asks for a password again."""
    page.goto(f"{sp.url}/")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    page.goto(f"{sp.url}/profile")
    expect(page.locator("#password")).to_be_visible()


def sso_url(idp: SimpleSAMLphp) -> re.Pattern[str]:
    """SimpleSAMLphp's SSO endpoint with a message: where our AuthnRequests go."""
    return re.compile(re.escape(f"{idp.base_url}/saml2/idp/SSOService.php") + r"\?.*")


def decoded_saml_response(post_data: str | None) -> str:
    form = parse_qs(post_data or "")
    return base64.b64decode(form["SAMLResponse"][0]).decode()


def inflated_authn_request(url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    return zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()


# -- scenarios --------------------------------------------------------------------------


def test_simplesamlphp_schema_checks_our_sp_metadata(idp: SimpleSAMLphp, plain_sp: SP) -> None:
    """What "registered as-is" rests on: SP metadata its schema forbids is refused."""
    served = httpx.get(f"{plain_sp.url}/saml/metadata/", timeout=10).text
    # An element the metadata schema does not allow there, which the parser would ignore.
    broken = re.sub(r"<(\w+:)?NameIDFormat>", r"<\1Unknown/><\1NameIDFormat>", served, count=1)
    assert broken != served
    with pytest.raises(AssertionError, match="refused our SP metadata"):
        idp.register_sp(broken)


def test_sp_initiated_login_shows_user_and_roles(
    page: Page, idp: SimpleSAMLphp, plain_sp: SP
) -> None:
    sp_initiated_login(page, idp, plain_sp, "bsimon")

    expect_profile(page, plain_sp, *B_SIMON)
    assert user_field(page, "Issuer") == idp.entity_id
    assert user_field(page, "User ID") == "bsimon"  # the generic preset's uid
    # The NameID format of our metadata, which the converted entry keeps.
    assert (user_field(page, "NameID"), user_field(page, "NameID format")) == (B_SIMON[1], EMAIL)
    expect(page.locator("table#attributes")).to_contain_text("eduPersonAffiliation")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "simplesamlphp-profile.png"), full_page=True)
    admin = page.goto(f"{plain_sp.url}/admin")
    assert admin is not None and admin.status == 200


def test_roles_mapped_from_a_simplesamlphp_attribute(
    page: Page, idp: SimpleSAMLphp, plain_sp: SP
) -> None:
    sp_initiated_login(page, idp, plain_sp, "ajones")  # eduPersonAffiliation: member only

    expect_profile(page, plain_sp, "A.Jones", "A.Jones@contoso.com", ["Member"])
    admin = page.goto(f"{plain_sp.url}/admin")
    assert admin is not None and admin.status == 403


def test_idp_initiated_login(page: Page, idp: SimpleSAMLphp, plain_sp: SP) -> None:
    query = urlencode({"spentityid": plain_sp.entity_id, "RelayState": "/profile"})
    page.goto(f"{idp.base_url}/saml2/idp/SSOService.php?{query}")
    sign_in_at_simplesamlphp(page, idp, "bsimon")

    expect_profile(page, plain_sp, *B_SIMON)


def test_sp_initiated_single_logout(page: Page, idp: SimpleSAMLphp, plain_sp: SP) -> None:
    sp_initiated_login(page, idp, plain_sp, "bsimon")
    expect(page).to_have_url(f"{plain_sp.url}/profile")

    with page.expect_request(re.compile(re.escape(idp.base_url) + ".*SingleLogoutService")):
        sign_out(page)  # our LogoutRequest -> SimpleSAMLphp -> its LogoutResponse -> /saml/sls/
    expect(page).to_have_url(f"{plain_sp.url}/")
    expect_signed_out(page, idp, plain_sp)


def test_idp_initiated_single_logout(page: Page, idp: SimpleSAMLphp, plain_sp: SP) -> None:
    sp_initiated_login(page, idp, plain_sp, "bsimon")
    expect(page).to_have_url(f"{plain_sp.url}/profile")

    return_to = quote(f"{plain_sp.url}/", safe="")
    with page.expect_request(re.compile(re.escape(f"{plain_sp.url}/saml/sls") + ".*")) as sls:
        page.goto(f"{idp.base_url}/saml2/idp/SingleLogoutService.php?ReturnTo={return_to}")
    assert "SAMLRequest=" in sls.value.url  # SimpleSAMLphp's LogoutRequest reached us
    expect(page).to_have_url(f"{plain_sp.url}/")
    expect_signed_out(page, idp, plain_sp)


def test_signed_authn_requests_and_encrypted_assertions(
    page: Page, idp: SimpleSAMLphp, signed_sp: SP
) -> None:
    sso = sso_url(idp)
    with page.expect_request(sso) as authn_request:
        page.goto(f"{signed_sp.url}/profile")
    query = parse_qs(urlsplit(authn_request.value.url).query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert query["Signature"][0]

    acs = re.compile(re.escape(f"{signed_sp.url}/saml/acs"))
    with page.expect_request(lambda r: bool(acs.match(r.url)) and r.method == "POST") as post:
        sign_in_at_simplesamlphp(page, idp, "bsimon")
    response = decoded_saml_response(post.value.post_data)
    assert "EncryptedAssertion" in response
    assert not re.search(r"<(\w+:)?Assertion[ >]", response)
    # What SimpleSAMLphp 1.19 encrypts with (fixed for certificate keys): RSA-OAEP + AES-128-CBC.
    assert f'Algorithm="{RSA_OAEP_MGF1P}"' in response
    assert f'Algorithm="{AES128_CBC}"' in response
    expect_profile(page, signed_sp, *B_SIMON)


def test_simplesamlphp_refuses_our_request_unsigned(
    page: Page, idp: SimpleSAMLphp, signed_sp: SP
) -> None:
    """validate.authnrequest is in force: the same AuthnRequest without its signature fails."""
    sso = sso_url(idp)
    page.route(sso, lambda route: route.abort())
    with page.expect_request(sso) as authn_request:
        page.goto(f"{signed_sp.url}/profile")
    page.unroute(sso)
    query = parse_qs(urlsplit(authn_request.value.url).query)
    unsigned = urlencode({"SAMLRequest": query["SAMLRequest"][0]})
    page.goto(f"{idp.base_url}/saml2/idp/SSOService.php?{unsigned}")
    expect(page.locator("body")).to_contain_text("no signature found on message")
    expect(page.locator("#password")).to_have_count(0)


def test_signed_single_logout(page: Page, idp: SimpleSAMLphp, signed_sp: SP) -> None:
    """Our signed LogoutRequest passes SimpleSAMLphp's validate.logout."""
    sp_initiated_login(page, idp, signed_sp, "bsimon")
    expect(page).to_have_url(f"{signed_sp.url}/profile")

    slo = re.compile(re.escape(f"{idp.base_url}/saml2/idp/SingleLogoutService.php") + r"\?.*")
    with page.expect_request(slo) as logout_request:
        sign_out(page)
    assert "Signature=" in logout_request.value.url
    expect(page).to_have_url(f"{signed_sp.url}/")
    expect_signed_out(page, idp, signed_sp)


def test_requested_name_id_format_is_honoured(
    browser: Any, idp: SimpleSAMLphp, persistent_sp: SP
) -> None:
    """Two logins of the same user, in two browsers, give the same persistent user_id."""
    seen, requests = [], []
    sso = sso_url(idp)
    for _ in range(2):
        context = browser.new_context()
        context.set_default_timeout(STEP_MS)
        try:
            page = context.new_page()
            with page.expect_request(sso) as authn_request:
                sp_initiated_login(page, idp, persistent_sp, "bsimon")
            requests.append(inflated_authn_request(authn_request.value.url))
            expect_profile(page, persistent_sp, *B_SIMON)
            seen.append((user_field(page, "NameID format"), user_field(page, "User ID")))
        finally:
            context.close()
    assert seen[0] == seen[1], f"two logins, two users: {seen}"
    assert seen[0][0] == PERSISTENT
    policy = re.compile(r"<(\w+:)?NameIDPolicy [^>]*Format=\"" + re.escape(PERSISTENT) + '"')
    assert all(policy.search(request) for request in requests), requests[0]
