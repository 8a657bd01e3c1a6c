"""What an IdP's Response says, read with the hardened parser and not trusted:
the values Test SSO compares with what this SP expects.

The facts are read by the ACS's own reader (`saml.rules.facts_from_tree`), into
its dataclasses; only what just the page shows (the status, the signatures'
algorithms and certificates) is read here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from ..saml.rules import Confirmation, EntityName, facts_from_tree
from ..saml.sp import parse_xml
from ..saml.xml import NS, text

_STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_RESPONSE = f"{{{NS['samlp']}}}Response"
_ASSERTION = f"{{{NS['saml']}}}Assertion"


# -- what the Response says -------------------------------------------------------------


@dataclass(frozen=True)
class SignatureSeen:
    """One ds:Signature: on which element, with which algorithms, naming which certificate."""

    element: str  # "Response" | "Assertion"
    algorithm: str | None
    digest: str | None
    certificate: str | None  # Base64 DER from KeyInfo; only ever compared, never trusted


@dataclass(frozen=True)
class Observed:
    """What an unverified Response says; strings as sent (never trusted, only compared)."""

    is_response: bool
    destination: str | None = None
    issuer: str | None = None
    issuer_format: str | None = None
    in_response_to: str | None = None
    issue_instant: str | None = None
    status_codes: tuple[str, ...] = ()  # top-level first, then nested ones
    status_message: str | None = None
    assertion_count: int = 0
    encrypted: bool = False
    assertion_issuer: str | None = None
    assertion_issuer_format: str | None = None
    assertion_issue_instant: str | None = None
    audiences: tuple[tuple[str, ...], ...] = ()  # one tuple per AudienceRestriction
    has_conditions: bool = False
    not_before: str | None = None
    not_on_or_after: str | None = None
    confirmations: tuple[Confirmation, ...] = ()
    name_id_present: bool = False
    name_id_format: str | None = None
    response_signed: bool = False
    assertion_signed: bool = False
    signatures: tuple[SignatureSeen, ...] = ()

    @property
    def success(self) -> bool:
        return self.status_codes == (_STATUS_SUCCESS,)

    @property
    def assertion_readable(self) -> bool:
        """One plain assertion whose content can be compared (not encrypted, not missing)."""
        return self.assertion_count >= 1 and not self.encrypted


def _signature(node: etree._Element, element: str) -> SignatureSeen:
    algorithm = node.xpath("ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=NS)
    digest = node.xpath("ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm", namespaces=NS)
    certs = node.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    cert = "".join((text(certs[0]) or "").split()) if certs else None
    return SignatureSeen(
        element,
        str(algorithm[0]) if algorithm else None,
        str(digest[0]) if digest else None,
        cert or None,
    )


def observe_response(xml: bytes) -> Observed | None:
    """Read what the Response says, with the hardened parser; None if it does not parse.

    Never raises: the report is built for broken answers too. Only the first
    assertion that is a child of the Response is read (the pipeline refuses
    any other layout; the count is kept).
    """
    try:
        return _observe(parse_xml(xml))
    except Exception:  # noqa: BLE001 - a diagnostics page never fails on bad input
        return None


def _observe(root: etree._Element) -> Observed:
    if root.tag != _RESPONSE:
        return Observed(is_response=False)
    status = root.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    codes = (
        tuple(str(n.get("Value") or "") for n in status[0].iter(f"{{{NS['samlp']}}}StatusCode"))
        if status
        else ()
    )
    message = root.find("samlp:Status/samlp:StatusMessage", NS)
    assertions = root.xpath("saml:Assertion | saml:EncryptedAssertion", namespaces=NS)
    assertion = assertions[0] if assertions and assertions[0].tag == _ASSERTION else None
    signatures = [_signature(s, "Response") for s in root.xpath("ds:Signature", namespaces=NS)]
    if assertion is not None:
        signatures += [
            _signature(s, "Assertion") for s in assertion.xpath("ds:Signature", namespaces=NS)
        ]
    # Signed here means "carries a signature": nothing on this page is verified.
    facts = facts_from_tree(
        root,
        assertion,
        response_signed=any(s.element == "Response" for s in signatures),
        assertion_signed=any(s.element == "Assertion" for s in signatures),
        read_attributes=False,
    )
    issuer = facts.response_issuer or EntityName(None)
    assertion_issuer = facts.assertion_issuer or EntityName(None)
    name_id = facts.name_id
    return Observed(
        is_response=True,
        destination=facts.destination,
        issuer=issuer.text,
        issuer_format=issuer.format,
        in_response_to=facts.response_in_response_to,
        issue_instant=facts.response_issue_instant,
        status_codes=codes,
        status_message=text(message),
        assertion_count=len(assertions),
        encrypted=bool(assertions) and assertion is None,
        assertion_issuer=assertion_issuer.text,
        assertion_issuer_format=assertion_issuer.format,
        assertion_issue_instant=facts.assertion_issue_instant,
        audiences=facts.audience_restrictions,
        has_conditions=facts.has_conditions,
        not_before=facts.not_before,
        not_on_or_after=facts.not_on_or_after,
        confirmations=facts.confirmations,
        name_id_present=bool((name_id is not None and name_id.text) or facts.encrypted_id),
        name_id_format=(
            name_id.format if name_id is not None else ("encrypted" if facts.encrypted_id else None)
        ),
        response_signed=facts.response_signed,
        assertion_signed=facts.assertion_signed,
        signatures=tuple(signatures),
    )
