"""xs:dateTime, read in one place for the whole middleware.

Every time the middleware reads (a Response's, an Assertion's, its Conditions',
SubjectConfirmationData's and AuthnStatement's, a LogoutRequest's or
LogoutResponse's, a metadata document's validUntil) comes from outside, most of
it before any signature is checked. Values that look right but name no instant
(`T24:00:00`, second 60, 30 February, year 0, a five-digit year, an offset of
25 hours, digits of another script) are refused here as `malformed` (400),
never left to raise from `datetime` as a 500.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ..errors import SAMLError

# Longer than any real instant ("2024-01-01T00:00:00.1234567+00:00" is 33): the
# pattern never runs over an attacker's megabyte.
_MAX_LENGTH = 64
# ASCII digits only: `\d` (and `int`) would take other scripts' digits too.
_XS_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_UTC_ZONES = (None, "Z", "+00:00", "-00:00")
_XML_SPACE = " \t\r\n"


def xs_datetime(value: str, *, utc_only: bool = True) -> datetime:
    """The UTC instant an xs:dateTime names (no zone means UTC), or `malformed`.

    SAML requires UTC (core 1.3.3), so by default an offset other than zero is
    refused; metadata may carry one (`utc_only=False`, within XML Schema's
    +-14:00). Fractions of a second are kept to the microsecond.
    """
    text = value.strip(_XML_SPACE)
    match = _XS_DATETIME.fullmatch(text) if len(text) <= _MAX_LENGTH else None
    if match is None:
        raise _invalid()
    zone = match.group(8)
    if utc_only and zone not in _UTC_ZONES:
        raise _invalid()
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    micro = int((match.group(7) or ".")[1:7].ljust(6, "0"))
    offset = timedelta(0)
    if zone not in (None, "Z"):
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if minutes > 59 or hours * 60 + minutes > 14 * 60:
            raise _invalid()
        offset = (-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes)
    try:
        local = datetime(year, month, day, hour, minute, second, micro, timezone(offset))
        return local.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # hour 24, second 60, 30 February, year 0, ...
        raise _invalid() from None


def saml_instant(value: str | None) -> float | None:
    """A SAML time (UTC) as epoch seconds; None when absent, `malformed` when impossible."""
    return xs_datetime(value).timestamp() if value else None


def _invalid() -> SAMLError:
    return SAMLError("malformed", "The SAML message has an invalid timestamp.", 400)
