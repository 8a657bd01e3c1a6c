"""The session cookie: timeouts, tampering, flags, rotation."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

from saml_middleware.config import SessionSettings
from saml_middleware.identity import SAMLUser
from saml_middleware.sessions import SessionCodec
from tests.helpers import Clock

USER = SAMLUser(
    name_id="b@contoso.com",
    user_id="oid-1",
    email="b@contoso.com",
    roles=("Admin",),
    attributes={"claim": ("v",)},
)


START = 1_800_000_000.0  # a fixed instant: cookie ages are exact


def codec(clock: Clock, **changes) -> SessionCodec:
    settings = SessionSettings(
        cookie_name="saml_session",
        max_age_seconds=3600,
        idle_timeout_seconds=None,
        https_only=True,
        same_site="lax",
        backend="cookie",
    )
    return SessionCodec(dataclasses.replace(settings, **changes), "k" * 32, clock=clock)


def test_round_trip_keeps_the_user():
    clock = Clock(START)
    c = codec(clock)
    session = c.decode(c.encode(USER))
    assert session is not None
    assert session.user == USER and session.user.attributes["claim"] == ("v",)
    assert not session.refresh


def test_absolute_timeout_is_counted_from_login_and_not_extended():
    clock = Clock(START)
    c = codec(clock, idle_timeout_seconds=600)
    value = c.encode(USER)
    login = clock.now
    for _ in range(6):  # active every 9 minutes, re-issued each time
        clock.now += 540
        session = c.decode(value)
        assert session is not None and session.refresh
        value = c.encode(session.user, session_id=session.session_id, login_time=session.login_time)
    clock.now = login + 3601
    assert c.decode(value) is None


def test_idle_timeout_ends_an_inactive_session():
    clock = Clock(START)
    c = codec(clock, idle_timeout_seconds=600)
    value = c.encode(USER)
    clock.now += 599
    assert c.decode(value) is not None
    clock.now += 2
    assert c.decode(value) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v[:-2] + ("A" if v[-2] != "A" else "B") + v[-1],  # signature byte
        lambda v: "x" + v[1:],  # payload byte
        lambda v: v.split(".")[0],  # signature removed
        lambda v: "",
        lambda v: "garbage.with.dots",
        lambda v: v * 3,
    ],
)
def test_tampered_cookie_is_no_session(mutate):
    c = codec(Clock(START))
    assert c.decode(mutate(c.encode(USER))) is None


def test_cookie_signed_with_another_key_is_no_session():
    clock = Clock(START)
    other = SessionCodec(codec(clock).settings, "another-key-0123456789", clock=clock)
    assert codec(clock).decode(other.encode(USER)) is None


def test_each_login_gets_a_new_session_id():
    c = codec(Clock(START))
    assert c.decode(c.encode(USER)).session_id != c.decode(c.encode(USER)).session_id


def test_cookie_flags():
    c = codec(Clock(START))
    header = c.cookie_header("v", 3600)
    assert header.startswith("saml_session=v;")
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=3600"):
        assert flag in header
    plain = codec(Clock(START), https_only=False, same_site="strict").cookie_header("v", 10)
    assert "Secure" not in plain and "SameSite=Strict" in plain


def test_oversized_attributes_are_left_out_of_the_cookie(caplog):
    c = codec(Clock(START))
    big = dataclasses.replace(
        USER, attributes={f"claim{i}": (secrets.token_hex(50),) for i in range(60)}
    )
    value = c.encode(big)
    assert len(value) < 4000
    session = c.decode(value)
    assert session.user.roles == ("Admin",)
    assert 0 < len(session.user.attributes) < 60  # the claims that fit are kept
    assert "too large" in caplog.text
