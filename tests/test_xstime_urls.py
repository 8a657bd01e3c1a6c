"""The one xs:dateTime parser and the one URL splitter: what they accept and refuse.

Every refusal is a `SAMLError("malformed", ..., 400)` (times) or None (URLs),
never the `ValueError` / `OverflowError` that `datetime` and `urlsplit` raise.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from saml_middleware.errors import SAMLError
from saml_middleware.metadata import MetadataError, _xs_datetime
from saml_middleware.saml.times import saml_instant, xs_datetime
from saml_middleware.urls import split_url

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T10:00:00Z", datetime(2026, 12, 3, 10, tzinfo=UTC)),
        ("2026-12-03T10:00:00", datetime(2026, 12, 3, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-12-03T10:00:00+00:00", datetime(2026, 12, 3, 10, tzinfo=UTC)),
        ("2026-12-03T10:00:00-00:00", datetime(2026, 12, 3, 10, tzinfo=UTC)),
        # Entra sends seven digits of fraction; kept to the microsecond.
        ("2026-12-03T10:00:00.1234567Z", datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=UTC)),
        (" \n2024-02-29T23:59:59Z\t", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_valid_saml_times_are_read_as_utc(text: str, expected: datetime) -> None:
    assert xs_datetime(text) == expected
    assert saml_instant(text) == pytest.approx(expected.timestamp())


IMPOSSIBLE = [
    "2026-12-03T24:00:00Z",  # XML Schema 1.0 allows it; no IdP sends it
    "2026-12-03T10:00:60Z",  # a leap second
    "2026-12-03T10:60:00Z",
    "2026-02-30T10:00:00Z",
    "2025-02-29T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-00-01T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "99999-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2026-12-03T10:00:00+25:00",
    "2026-12-03T10:00:00+05:00",  # SAML times are UTC
    "2026-12-03T10:00:00z",
    "2026-12-03 10:00:00Z",
    "\u0662\u0660\u0662\u0666-12-03T10:00:00Z",  # Arabic-Indic digits: `int` reads them
    "2026-12-03T10:00:00." + "1" * 100 + "Z",
    "",
    "yesterday",
]


@pytest.mark.parametrize("text", IMPOSSIBLE)
def test_impossible_saml_times_are_malformed_not_an_exception(text: str) -> None:
    with pytest.raises(SAMLError) as refused:
        xs_datetime(text)
    assert (refused.value.code, refused.value.status) == ("malformed", 400)


def test_an_absent_saml_time_is_none() -> None:
    assert saml_instant(None) is None
    assert saml_instant("") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T01:00:00+01:00", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T00:00:00-14:00", datetime(2030, 1, 1, 14, tzinfo=UTC)),
    ],
)
def test_metadata_valid_until_may_carry_an_offset(text: str, expected: datetime) -> None:
    assert _xs_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2030-02-30T00:00:00Z",
        "2030-01-01T00:00:00+14:01",
        "2030-01-01T00:00:00+10:60",
        # Within the ranges, but UTC falls outside what datetime can hold (OverflowError).
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
    ],
)
def test_impossible_metadata_valid_until_is_a_metadata_error(text: str) -> None:
    with pytest.raises(MetadataError, match="validUntil is not a date"):
        _xs_datetime(text)


# -- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x",  # unclosed IPv6 bracket
        "https://[:::::]/",  # bracketed, but no address
        "https://a\u2100b/x",  # NFKC: "a/c" + "b"
        "https://evil\uff03.test/",  # NFKC: fullwidth "#"
        "https://app.example.test:99999/",
        "https://app.example.test:x/",
    ],
)
def test_urls_urlsplit_cannot_read_are_none(url: str) -> None:
    assert split_url(url) is None


def test_readable_urls_are_split() -> None:
    parts = split_url("https://user@app.example.test:8443/x?y#z")
    assert parts is not None
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "https",
        "app.example.test",
        8443,
        "/x",
    )
    assert split_url("/local/path?q") is not None
