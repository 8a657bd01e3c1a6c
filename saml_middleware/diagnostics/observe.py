"""What an IdP's Response says, read with the hardened parser and not trusted:
the values Test SSO compares with what this SP expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from ..saml.sp import parse_xml
from ..saml.xml import NS, text

if TYPE_CHECKING:
    pass


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
class Confirmation:
    """One SubjectConfirmation (method and its data)."""

    method: str | None
    recipient: str | None
    not_on_or_after: str | None
    in_response_to: str | None


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
    issuer = root.find("saml:Issuer", NS)
    status = root.xpath("samlp:Status/samlp:StatusCode", namespaces=NS)
    codes = (
        tuple(str(n.get("Value") or "") for n in status[0].iter(f"{{{NS['samlp']}}}StatusCode"))
        if status
        else ()
    )
    message = root.find("samlp:Status/samlp:StatusMessage", NS)
    assertions = root.xpath("saml:Assertion | saml:EncryptedAssertion", namespaces=NS)
    signatures = [_signature(s, "Response") for s in root.xpath("ds:Signature", namespaces=NS)]
    fields: dict[str, object] = {}
    if assertions and assertions[0].tag == _ASSERTION:
        fields = _observe_assertion(assertions[0])
        signatures += [
            _signature(s, "Assertion") for s in assertions[0].xpath("ds:Signature", namespaces=NS)
        ]
    return Observed(
        is_response=True,
        destination=root.get("Destination"),
        issuer=text(issuer),
        issuer_format=issuer.get("Format") if issuer is not None else None,
        in_response_to=root.get("InResponseTo"),
        issue_instant=root.get("IssueInstant"),
        status_codes=codes,
        status_message=text(message),
        assertion_count=len(assertions),
        encrypted=bool(assertions) and assertions[0].tag != _ASSERTION,
        response_signed=any(s.element == "Response" for s in signatures),
        assertion_signed=any(s.element == "Assertion" for s in signatures),
        signatures=tuple(signatures),
        **fields,  # type: ignore[arg-type]
    )


def _observe_assertion(assertion: etree._Element) -> dict[str, object]:
    issuer = assertion.find("saml:Issuer", NS)
    conditions = assertion.find("saml:Conditions", NS)
    name_id = assertion.find("saml:Subject/saml:NameID", NS)
    encrypted_id = assertion.find("saml:Subject/saml:EncryptedID", NS)
    confirmations = []
    for node in assertion.xpath("saml:Subject/saml:SubjectConfirmation", namespaces=NS):
        data = node.find("saml:SubjectConfirmationData", NS)
        get = data.get if data is not None else (lambda _name: None)
        confirmations.append(
            Confirmation(
                node.get("Method"), get("Recipient"), get("NotOnOrAfter"), get("InResponseTo")
            )
        )
    audiences: tuple[tuple[str, ...], ...] = ()
    if conditions is not None:
        audiences = tuple(
            tuple(text(a) or "" for a in r.xpath("saml:Audience", namespaces=NS))
            for r in conditions.xpath("saml:AudienceRestriction", namespaces=NS)
        )
    return {
        "assertion_issuer": text(issuer),
        "assertion_issuer_format": issuer.get("Format") if issuer is not None else None,
        "assertion_issue_instant": assertion.get("IssueInstant"),
        "audiences": audiences,
        "has_conditions": conditions is not None,
        "not_before": conditions.get("NotBefore") if conditions is not None else None,
        "not_on_or_after": conditions.get("NotOnOrAfter") if conditions is not None else None,
        "confirmations": tuple(confirmations),
        "name_id_present": bool(
            (name_id is not None and text(name_id)) or encrypted_id is not None
        ),
        "name_id_format": (
            name_id.get("Format")
            if name_id is not None
            else ("encrypted" if encrypted_id is not None else None)
        ),
    }
