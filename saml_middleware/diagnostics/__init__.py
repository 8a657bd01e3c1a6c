"""The "Test SSO" diagnostics page: every check of one IdP answer, and what to fix.

An admin presses Test SSO, signs in at the IdP, and the IdP's Response comes
back to the ACS. The engine runs its ordinary pipeline on it but, instead of
starting a session, hands the outcome here:

- `observe_response` reads what the (unverified) Response *says*, with the
  hardened parser, so that every comparison an admin can fix (Reply URL,
  Identifier, issuer, clocks, signing options) is shown at once, not only the
  first one the pipeline tripped on;
- `build_report` turns that, the expectations (`Expected`), the pipeline's first
  refusal and the mapped user into one row per check;
- `render_report` makes the HTML page.

Two rules shape the page. It is no oracle: every refusal in
`saml.sp.UNVERIFIABLE` (signature, key, algorithm, decryption) reads the same,
whatever the real code was; what the page says about signing comes from the
message itself (which the sender knows) or from the configuration (public in
the IdP metadata). And it shows nothing secret: no XML dump, no settings
secrets; the attributes received are the tester's own and are shown (escaped,
truncated) only when the answer verified.

No framework and no pysaml2 here: lxml (through `saml.sp.parse_xml`) and the
`cryptography` package for certificate names and thumbprints.
"""

from ..saml.rules import Confirmation
from .observe import Observed, SignatureSeen, observe_response
from .page import render_report
from .report import (
    CHECK_TITLES,
    CODE_TO_CHECK,
    EXPIRY_WARNING_DAYS,
    UNVERIFIABLE_TEXT,
    Check,
    Expected,
    Fix,
    TestReport,
    build_report,
    check_for_code,
    expected_from,
)

__all__ = [
    "CHECK_TITLES",
    "CODE_TO_CHECK",
    "EXPIRY_WARNING_DAYS",
    "UNVERIFIABLE_TEXT",
    "Check",
    "Confirmation",
    "Expected",
    "Fix",
    "Observed",
    "SignatureSeen",
    "TestReport",
    "build_report",
    "check_for_code",
    "expected_from",
    "observe_response",
    "render_report",
]
