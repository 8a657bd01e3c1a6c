"""Every ACS check, proved with responses that are validly signed but wrong in one way.

pysaml2 fails open in places (docs/security.md, "How a SAML response is checked"): a bad Destination
gives a response with no assertion and no exception, Recipient is unchecked
without `conv_info`, a missing AudienceRestriction passes, several
AudienceRestrictions are OR-ed, sender-vouches passes, SubjectConfirmationData
NotOnOrAfter is optional. saml/sp.py re-checks these itself; each test here
takes a Response minted by a development IdP whose key we hold, changes exactly
one thing (tests/forge.py), re-signs it with the trusted key, posts it to the
ACS through the engine, and expects a refusal with its code and no session.

The control tests post the same forged-and-re-signed responses unchanged and
expect a login: the forging itself is sound, so every refusal is about the one
thing that was changed.
"""

from __future__ import annotations

import pytest

from saml_middleware.engine import PassThrough
from tests import forge
from tests.helpers import Browser, header
from tests.security.harness import EVIL, IDP_URL, RELAY

pytestmark = pytest.mark.anyio


# -- controls: the forging is sound --------------------------------------------------


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion", "assertion+response"])
async def test_control_resigned_response_logs_in(acs, sign_response):
    reply = await acs.post_resigned(acs.mint(), response=sign_response)
    await acs.assert_logged_in(reply)


async def test_control_solicited_resigned_response_logs_in(acs):
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    reply = await acs.post_resigned(acs.mint(request_id), browser=browser)
    await acs.assert_logged_in(reply)


# -- Destination ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "destination",
    [
        f"{EVIL}/saml/acs/",
        "",
        "https://app.example.test/saml/acs",  # no trailing slash
        "http://app.example.test/saml/acs/",  # another scheme
        "https://app.example.test:8443/saml/acs/",  # another port
    ],
    ids=["other-site", "empty", "no-slash", "http", "port"],
)
async def test_wrong_destination_is_refused(acs, destination):
    root = acs.mint()
    forge.set_destination(root, destination)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_destination")


async def test_missing_destination_is_refused_when_the_response_is_signed(acs):
    root = acs.mint()
    forge.set_destination(root, None)
    await acs.assert_refused(await acs.post_resigned(root, response=True), "wrong_destination")


# -- Recipient -----------------------------------------------------------------------


@pytest.mark.parametrize("recipient", [f"{EVIL}/saml/acs/", None], ids=["other-site", "missing"])
async def test_wrong_or_missing_recipient_is_refused(acs, recipient):
    root = acs.mint()
    forge.set_recipient(root, recipient)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_recipient")


# -- Audience ------------------------------------------------------------------------


async def test_assertion_without_audience_restriction_is_refused(acs):
    root = acs.mint()
    forge.remove_audience_restrictions(root)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_audience")


async def test_assertion_without_conditions_is_refused(acs):
    root = acs.mint()
    forge.remove_conditions(root)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_audience")


async def test_assertion_for_another_audience_is_refused(acs):
    root = acs.mint()
    forge.set_audience(root, "https://other-app.example.test/saml/metadata/")
    await acs.assert_refused(await acs.post_resigned(root), "wrong_audience")


async def test_every_audience_restriction_must_name_us(acs):
    # AND semantics (SAML core 2.5.1.4); pysaml2's for_me() accepts if any one does.
    root = acs.mint()
    forge.add_audience_restriction(root, "https://other-app.example.test/saml/metadata/")
    await acs.assert_refused(await acs.post_resigned(root), "wrong_audience")


async def test_audience_restriction_naming_us_among_others_is_accepted(acs):
    root = acs.mint()
    forge.add_audience_restriction(root, "https://other.test/", acs.engine.settings.sp.entity_id)
    await acs.assert_logged_in(await acs.post_resigned(root))


# -- Issuer --------------------------------------------------------------------------


async def test_wrong_assertion_issuer_is_refused(acs):
    root = acs.mint()
    forge.set_assertion_issuer(root, EVIL)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_issuer")


async def test_assertion_without_issuer_is_refused(acs):
    root = acs.mint()
    forge.remove_assertion_issuer(root)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_issuer")


async def test_wrong_response_issuer_is_refused(acs):
    root = acs.mint()
    forge.set_response_issuer(root, EVIL)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_issuer")


async def test_wrong_response_issuer_is_refused_when_the_response_is_signed(acs):
    root = acs.mint()
    forge.set_response_issuer(root, EVIL)
    await acs.assert_refused(await acs.post_resigned(root, response=True), "wrong_issuer")


async def test_issuer_split_by_a_comment_is_read_whole(acs):
    # lxml's .text would read only the part before the comment (the trusted ID).
    root = acs.mint()
    forge.set_issuer_with_comment(root, IDP_URL + "/metadata", ".evil.test")
    await acs.assert_refused(await acs.post_resigned(root), "wrong_issuer")


# -- NameID --------------------------------------------------------------------------


async def test_assertion_without_name_id_is_refused(acs):
    root = acs.mint()
    forge.remove_name_id(root)
    await acs.assert_refused(await acs.post_resigned(root), "no_nameid")


@pytest.mark.parametrize("text", ["", "   "], ids=["empty", "blank"])
async def test_empty_name_id_is_refused(acs, text):
    root = acs.mint()
    forge.set_name_id(root, text)
    await acs.assert_refused(await acs.post_resigned(root), "no_nameid")


async def test_comment_in_name_id_never_truncates_the_user(acs):
    # CVE-2017-11427: the signature covers `user@evil.test.victim.test`; a parser that
    # reads only the first text node would log in `user@evil.test`.
    root = acs.mint()
    forge.inject_comment_in_name_id(root, "user@evil.test", ".victim.test")
    reply = await acs.post_resigned(root)
    if reply.status == 303:
        await acs.assert_logged_in(reply, name_id="user@evil.test.victim.test")
    else:
        assert reply.status == 403 and header(reply, "set-cookie") is None


# -- SubjectConfirmation ---------------------------------------------------------------


async def test_sender_vouches_confirmation_is_refused(acs):
    root = acs.mint()
    forge.set_confirmation_method(root, forge.SENDER_VOUCHES)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_confirmation")


async def test_holder_of_key_confirmation_without_key_is_refused(acs):
    root = acs.mint()
    forge.set_confirmation_method(root, forge.HOLDER_OF_KEY)
    await acs.assert_refused(await acs.post_resigned(root), "wrong_confirmation")


async def test_subject_confirmation_without_not_on_or_after_is_refused(acs):
    root = acs.mint()
    forge.set_scd_not_on_or_after(root, None)
    await acs.assert_refused(await acs.post_resigned(root), "expired")


async def test_subject_confirmation_in_the_past_is_refused(acs):
    root = acs.mint()
    forge.set_scd_not_on_or_after(root, forge.from_now(-(acs.skew + 60)))
    await acs.assert_refused(await acs.post_resigned(root), "expired")


async def test_subject_confirmation_with_not_before_is_refused(acs):
    # The Web SSO profile forbids NotBefore on a bearer SubjectConfirmationData.
    root = acs.mint()
    forge.set_scd_not_before(root, forge.from_now(-10))
    await acs.assert_refused(await acs.post_resigned(root), "wrong_confirmation")


# -- Conditions times, with clock_skew_seconds --------------------------------------------


async def test_conditions_expired_beyond_the_skew_is_refused(acs):
    root = acs.mint()
    forge.set_conditions_not_before(root, forge.from_now(-3600))
    forge.set_conditions_not_on_or_after(root, forge.from_now(-(acs.skew + 60)))
    await acs.assert_refused(await acs.post_resigned(root), "expired")


async def test_conditions_expired_within_the_skew_is_accepted(acs):
    root = acs.mint()
    forge.set_conditions_not_before(root, forge.from_now(-3600))
    forge.set_conditions_not_on_or_after(root, forge.from_now(-(acs.skew - 60)))
    await acs.assert_logged_in(await acs.post_resigned(root))


async def test_conditions_not_yet_valid_beyond_the_skew_is_refused(acs):
    root = acs.mint()
    forge.set_conditions_not_before(root, forge.from_now(acs.skew + 60))
    await acs.assert_refused(await acs.post_resigned(root), "not_yet_valid")


async def test_conditions_not_yet_valid_within_the_skew_is_accepted(acs):
    root = acs.mint()
    forge.set_conditions_not_before(root, forge.from_now(acs.skew - 60))
    await acs.assert_logged_in(await acs.post_resigned(root))


async def test_clock_skew_setting_is_honoured(make_acs):
    acs = make_acs(security__clock_skew_seconds=600)
    root = acs.mint()
    forge.set_conditions_not_before(root, forge.from_now(-3600))
    forge.set_conditions_not_on_or_after(root, forge.from_now(-300))  # beyond the default 120
    await acs.assert_logged_in(await acs.post_resigned(root))


# -- Status ----------------------------------------------------------------------------


async def test_status_responder_is_refused_and_named(acs):
    root = acs.mint()
    forge.set_status(root, forge.STATUS_RESPONDER)
    reply = await acs.post_resigned(root)
    await acs.assert_refused(reply, "status_not_success")
    assert b"Responder" in reply.body


async def test_error_response_without_assertion_is_refused_and_named(acs):
    # What an IdP really sends when it refuses: a status and no assertion.
    root = acs.mint()
    forge.remove_assertions(root)
    forge.set_status(root, forge.STATUS_RESPONDER, forge.STATUS_AUTHN_FAILED)
    reply = await acs.post(root)
    await acs.assert_refused(reply, "status_not_success")
    assert b"Responder" in reply.body and b"AuthnFailed" in reply.body


async def test_status_is_not_reflected_as_markup(acs):
    root = acs.mint()
    forge.remove_assertions(root)
    forge.set_status(root, "urn:x:<script>alert(1)</script>")
    reply = await acs.post(root)
    await acs.assert_refused(reply, "status_not_success")
    assert b"<script>" not in reply.body


# -- signatures ------------------------------------------------------------------------


async def test_unsigned_response_is_refused(acs):
    root = acs.mint()
    forge.strip_signatures(root)
    await acs.assert_refused(await acs.post(root), "signature_required")


async def test_signed_response_with_unsigned_assertion_is_refused(acs):
    # want_assertions_signed (the default): a response signature is not enough.
    root = acs.mint()
    forge.strip_signatures(root)
    forge.sign_response(root, acs.keys)
    await acs.assert_refused(await acs.post(root), "signature_required")


async def test_unsigned_response_is_refused_when_response_signing_is_required(make_acs):
    acs = make_acs(security__want_response_signed=True)
    reply = await acs.post_resigned(acs.mint(), response=False)
    await acs.assert_refused(reply, "signature_required")
    await acs.assert_logged_in(await acs.post_resigned(acs.mint(), response=True))


async def test_assertion_resigned_by_attacker_with_cert_in_key_info_is_refused(acs, attacker_keys):
    root = acs.mint()
    forge.set_name_id(root, "admin@contoso.com")
    forge.resign(root, attacker_keys)  # the attacker's certificate goes in KeyInfo
    await acs.assert_refused(await acs.post(root), "invalid_signature")


async def test_edited_assertion_without_resigning_is_refused(acs):
    root = acs.mint()
    forge.set_name_id(root, "admin@contoso.com")
    await acs.assert_refused(await acs.post(root), "invalid_signature")


@pytest.mark.parametrize("sign_response", [False, True], ids=["assertion", "assertion+response"])
async def test_sha1_signature_is_refused_by_default(acs, sign_response):
    reply = await acs.post_resigned(acs.mint(), response=sign_response, algorithm="sha1")
    await acs.assert_refused(reply, "disallowed_algorithm")


async def test_sha1_signature_is_accepted_when_allowed(make_acs):
    acs = make_acs(security__reject_sha1=False)
    await acs.assert_logged_in(await acs.post_resigned(acs.mint(), algorithm="sha1"))


# -- structure -------------------------------------------------------------------------


async def test_two_signed_assertions_are_refused(acs):
    root = acs.mint()
    forge.add_assertion_copy(root, "id-second-assertion", "admin@contoso.com")
    await acs.assert_refused(await acs.post_resigned(root), "wrong_number_of_assertions")


@pytest.mark.parametrize(
    "duplicate",
    [forge.add_element_with_assertion_id, forge.set_response_id_to_assertion_id],
    ids=["extensions-element", "response-id"],
)
async def test_duplicated_id_is_refused(acs, duplicate):
    root = acs.mint()
    duplicate(root)
    await acs.assert_refused(await acs.post_resigned(root), "duplicate_id")


# -- InResponseTo (solicited responses) ---------------------------------------------------


async def test_subject_confirmation_answering_another_request_is_refused(acs):
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    root = acs.mint(request_id)
    forge.set_scd_in_response_to(root, "id-some-other-request")
    await acs.assert_refused(await acs.post_resigned(root, browser=browser), "wrong_in_response_to")
    # The forged answer did not use up the request: the genuine one still logs in.
    reply = await acs.post_resigned(acs.mint(request_id), browser=browser)
    await acs.assert_logged_in(reply)


async def test_solicited_response_without_subject_in_response_to_is_refused(acs):
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    root = acs.mint(request_id)
    forge.set_scd_in_response_to(root, None)
    await acs.assert_refused(await acs.post_resigned(root, browser=browser), "wrong_in_response_to")


async def test_unsolicited_response_whose_subject_answers_a_request_is_refused(acs):
    browser = Browser(acs.engine, acs.idp)
    request_id = await acs.start_login(browser)
    root = acs.mint(request_id)
    forge.set_response_in_response_to(root, None)
    await acs.assert_refused(await acs.post_resigned(root, browser=browser), "wrong_in_response_to")


async def test_refused_login_leaves_an_existing_session_alone(acs):
    browser = Browser(acs.engine, acs.idp)
    await acs.assert_logged_in(await acs.post_resigned(acs.mint(), browser=browser))
    before = dict(browser.cookies)
    root = acs.mint()
    forge.set_recipient(root, f"{EVIL}/saml/acs/")
    reply = await acs.post_resigned(root, browser=browser)
    assert reply.status == 403 and header(reply, "set-cookie") is None
    assert browser.cookies == before
    assert isinstance(await browser.get(RELAY), PassThrough)
