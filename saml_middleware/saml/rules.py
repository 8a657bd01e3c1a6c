"""What a verified Response says, and the one set of checks run on it.

Both verification paths of `sp.ServiceProvider` end here:

* the pysaml2 path (`xmlsec1` backend) reads a `Facts` from the objects
  pysaml2 built and verified (`sp.facts_from_pysaml2`);
* the native path (in-process backend) reads it from the very lxml elements
  whose signatures `crypto.XmlSecBackend` verified (`facts_from_tree`).

`check_facts` then applies every semantic rule once: Destination, IssueInstant,
the signatures the settings require, Issuer (Response and Assertion),
InResponseTo, Conditions (time window, audiences, unknown conditions), the
subject (NameID, SPNameQualifier), the bearer SubjectConfirmation (Recipient,
times, InResponseTo), the AuthnStatement (exactly one, SessionNotOnOrAfter),
and returns the `VerifiedLogin`. It includes the rules pysaml2 enforced
implicitly (inside its object model and its `AuthnResponse` methods), so the
native path, which skips pysaml2, loses none of them.

Text is read as pysaml2 reads it: the element's character data with comments
dropped (so `a<!--x-->b` is `ab`, never lxml's `.text`, which stops at the
comment), stripped; an AttributeValue with an `xsi:type` of a number, boolean
or date is normalised as pysaml2's `AttributeValueBase.set_text` does. Nothing
here imports pysaml2; lxml only reads trees that were already parsed hardened.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from ..errors import SAMLError
from ..routing import url_in
from .times import saml_instant
from .xml import DS, SAML, XSI, text

BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
SENDER_VOUCHES = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"

# A Response older than this (by its IssueInstant) is refused whatever its
# other times say: an IdP's answer is posted by the browser within seconds.
MAX_RESPONSE_AGE_SECONDS = 3600


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


_ASSERTION = _q(SAML, "Assertion")
_ISSUER = _q(SAML, "Issuer")
_SIGNATURE = _q(DS, "Signature")
_SUBJECT = _q(SAML, "Subject")
_NAME_ID = _q(SAML, "NameID")
_ENCRYPTED_ID = _q(SAML, "EncryptedID")
_BASE_ID = _q(SAML, "BaseID")
_SUBJECT_CONFIRMATION = _q(SAML, "SubjectConfirmation")
_SUBJECT_CONFIRMATION_DATA = _q(SAML, "SubjectConfirmationData")
_CONDITIONS = _q(SAML, "Conditions")
_AUDIENCE_RESTRICTION = _q(SAML, "AudienceRestriction")
_AUDIENCE = _q(SAML, "Audience")
_CONDITION = _q(SAML, "Condition")
_AUTHN_STATEMENT = _q(SAML, "AuthnStatement")
_ATTRIBUTE_STATEMENT = _q(SAML, "AttributeStatement")
_ATTRIBUTE = _q(SAML, "Attribute")
_ENCRYPTED_ATTRIBUTE = _q(SAML, "EncryptedAttribute")
_ATTRIBUTE_VALUE = _q(SAML, "AttributeValue")
_XSI_TYPE = _q(XSI, "type")


@dataclass(frozen=True)
class VerifiedLogin:
    """What a Response proved, read from the verified assertion."""

    issuer: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    attributes: dict[str, list[str]]
    assertion_id: str
    response_id: str
    in_response_to: str | None
    expires_at: float  # epoch seconds: the latest NotOnOrAfter in the assertion
    # The NameID's qualifiers as received: a LogoutRequest names the user by all of them.
    name_id_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    sp_provided_id: str | None = None


@dataclass(frozen=True)
class EntityName:
    """An Issuer or a NameID: its text (comments dropped, stripped) and qualifiers."""

    text: str | None
    format: str | None = None
    sp_name_qualifier: str | None = None
    name_qualifier: str | None = None
    sp_provided_id: str | None = None


@dataclass(frozen=True)
class Confirmation:
    """One SubjectConfirmation; the data fields are None when absent."""

    method: str | None
    has_data: bool
    recipient: str | None = None
    not_before: str | None = None
    not_on_or_after: str | None = None
    in_response_to: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the checks read, from either path. `signed` means verified."""

    response_id: str | None
    response_version: str | None
    destination: str | None
    response_issue_instant: str | None
    response_in_response_to: str | None
    response_issuer: EntityName | None
    response_signed: bool
    assertion_id: str | None
    assertion_issue_instant: str | None
    assertion_issuer: EntityName | None
    assertion_signed: bool
    has_subject: bool
    name_id: EntityName | None
    encrypted_id: bool  # the subject names its user by an EncryptedID
    confirmations: tuple[Confirmation, ...]
    has_conditions: bool
    not_before: str | None
    not_on_or_after: str | None
    audience_restrictions: tuple[tuple[str, ...], ...]
    other_conditions: int  # saml:Condition elements (pysaml2 refuses any it does not know)
    authn_statements: tuple[tuple[str | None, str | None], ...]  # SessionIndex, SessionNotOnOrAfter
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # in document order, repeats kept


@dataclass(frozen=True)
class Expectations:
    """What this SP expects of a Response (from the settings and the IdP metadata)."""

    acs_urls: tuple[str, ...]  # every ACS URL accepted (Destination, Recipient)
    sp_entity_id: str
    idp_entity_id: str
    clock_skew: int
    want_assertions_signed: bool
    want_response_signed: bool


# -- reading a tree ---------------------------------------------------------------------

_STRING_VALUE = etree.XPath("string()")


def _has_element_children(node: etree._Element) -> bool:
    return any(isinstance(child.tag, str) for child in node)


def _entity_name(node: etree._Element | None) -> EntityName | None:
    if node is None:
        return None
    return EntityName(
        text(node),
        node.get("Format"),
        node.get("SPNameQualifier"),
        node.get("NameQualifier"),
        node.get("SPProvidedID"),
    )


def facts_from_tree(
    response: etree._Element,
    assertion: etree._Element | None,
    *,
    response_signed: bool,
    assertion_signed: bool,
    read_attributes: bool = True,
) -> Facts:
    """The facts of `response` and its one top-level `assertion` (already schema-valid).

    The one reader of a Response: the native path reads the verified tree with
    it, Test SSO (`diagnostics.observe`) the unverified one, with no
    `assertion` when none is readable and without the attributes (which refuse
    a malformed value; the page shows them from the login's result instead).
    Only direct children are read, by exact namespace and name: nothing inside
    Advice, Extensions or a foreign element is ever looked at.
    """
    if assertion is None:
        assertion = etree.Element(_ASSERTION)  # no assertion: every assertion fact is empty
    subject = assertion.find(_SUBJECT)
    name_id = None if subject is None else subject.find(_NAME_ID)
    confirmations = []
    if subject is not None:
        for node in subject.iterchildren(_SUBJECT_CONFIRMATION):
            data = node.find(_SUBJECT_CONFIRMATION_DATA)
            if data is None:
                confirmations.append(Confirmation(node.get("Method"), False))
                continue
            confirmations.append(
                Confirmation(
                    node.get("Method"),
                    True,
                    data.get("Recipient"),
                    data.get("NotBefore"),
                    data.get("NotOnOrAfter"),
                    data.get("InResponseTo"),
                    data.get("Address"),
                )
            )
    conditions = assertion.find(_CONDITIONS)
    restrictions: list[tuple[str, ...]] = []
    other_conditions = 0
    if conditions is not None:
        for restriction in conditions.iterchildren(_AUDIENCE_RESTRICTION):
            restrictions.append(tuple(text(a) or "" for a in restriction.iterchildren(_AUDIENCE)))
        other_conditions = sum(1 for _ in conditions.iterchildren(_CONDITION))
    statements = tuple(
        (node.get("SessionIndex"), node.get("SessionNotOnOrAfter"))
        for node in assertion.iterchildren(_AUTHN_STATEMENT)
    )
    return Facts(
        response_id=response.get("ID"),
        response_version=response.get("Version"),
        destination=response.get("Destination"),
        response_issue_instant=response.get("IssueInstant"),
        response_in_response_to=response.get("InResponseTo"),
        response_issuer=_entity_name(response.find(_ISSUER)),
        response_signed=response_signed,
        assertion_id=assertion.get("ID"),
        assertion_issue_instant=assertion.get("IssueInstant"),
        assertion_issuer=_entity_name(assertion.find(_ISSUER)),
        assertion_signed=assertion_signed,
        has_subject=subject is not None,
        name_id=_entity_name(name_id),
        encrypted_id=subject is not None and subject.find(_ENCRYPTED_ID) is not None,
        confirmations=tuple(confirmations),
        has_conditions=conditions is not None,
        not_before=None if conditions is None else conditions.get("NotBefore"),
        not_on_or_after=None if conditions is None else conditions.get("NotOnOrAfter"),
        audience_restrictions=tuple(restrictions),
        other_conditions=other_conditions,
        authn_statements=statements,
        attributes=_tree_attributes(assertion) if read_attributes else (),
    )


def _tree_attributes(assertion: etree._Element) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found = []
    for statement in assertion.iterchildren(_ATTRIBUTE_STATEMENT):
        if statement.find(_ENCRYPTED_ATTRIBUTE) is not None:
            # pysaml2 would decrypt it; the native path does not read encrypted attributes.
            raise SAMLError("invalid_response", "The SAML assertion has encrypted attributes.")
        for attribute in statement.iterchildren(_ATTRIBUTE):
            name = attribute.get("Name")
            if not name:  # pysaml2: "Required value on property 'name' missing"
                raise SAMLError("invalid_response", "The SAML assertion has an unnamed attribute.")
            values = tuple(
                attribute_value_text(value) for value in attribute.iterchildren(_ATTRIBUTE_VALUE)
            )
            found.append((name, values))
    return tuple(found)


def name_id_value(text: str, name_qualifier: str | None, sp_name_qualifier: str | None) -> str:
    """A NameID inside an AttributeValue (eduPersonTargetedID) as one string.

    Shibboleth SP's classic form, `NameQualifier!SPNameQualifier!value`, with an
    absent qualifier left empty (`!!value`): the qualifiers say whose
    identifier it is (a pairwise ID is only unique per IdP and SP).
    """
    return f"{name_qualifier or ''}!{sp_name_qualifier or ''}!{text}"


def joined_text(pieces: Iterable[str | None]) -> str:
    """Element content read as text: each element's own text, stripped, joined by spaces."""
    return " ".join(piece.strip() for piece in pieces if piece and piece.strip())


def _structured_value_text(value: etree._Element) -> str:
    """An AttributeValue with element content, read as both paths read it.

    One saml:NameID: `name_id_value`. Other elements: their text (`joined_text`,
    each element's own text; pysaml2 keeps no text that follows a child
    element, so neither does this). Text beside the elements (mixed content) is
    refused: pysaml2 types such a value as a string, which its schema check of
    the signed assertion then refuses.
    """
    if joined_text([_own_text(value)]):
        raise SAMLError(
            "invalid_response",
            "The SAML assertion has an attribute value mixing text and elements.",
        )
    children = [child for child in value if isinstance(child.tag, str)]
    if len(children) == 1 and children[0].tag == _NAME_ID:
        node = children[0]
        return name_id_value(
            text(node) or "", node.get("NameQualifier"), node.get("SPNameQualifier")
        )
    return joined_text(
        _own_text(node) for node in value.iterdescendants() if isinstance(node.tag, str)
    )


def _own_text(node: etree._Element) -> str:
    """An element's character data before and between its comments (not after a child element)."""
    parts = [node.text or ""]
    parts.extend(child.tail or "" for child in node if not isinstance(child.tag, str))
    return "".join(parts)


def attribute_value_text(value: etree._Element) -> str:
    """An AttributeValue as pysaml2 reports it: typed values normalised, then stripped.

    Element content (a NameID in eduPersonTargetedID, say) is read as text
    (`_structured_value_text`), never refused: one odd attribute must not stop
    a sign-in.
    """
    if any(not name.startswith(f"{{{XSI}}}") for name in value.attrib):
        # pysaml2 re-serialises the value as a typed simple value, which the
        # schema check of the signed assertion then refuses: never accepted here.
        raise SAMLError(
            "invalid_response", "The SAML assertion has an attribute value with attributes."
        )
    if _has_element_children(value):
        return _structured_value_text(value)
    text = str(_STRING_VALUE(value))
    declared = value.get(_XSI_TYPE)
    if declared and text:
        kind = declared.split(":", 1)[-1] if ":" in declared else declared
        text = _typed_text(kind, text)
    return text.strip()


def _typed_text(kind: str, text: str) -> str:
    """pysaml2 7.5 `AttributeValueBase.set_text`: the xs types it converts, converted alike."""
    try:
        if kind in ("integer", "short", "int", "long"):
            return str(int(text))
        if kind in ("float", "double"):
            return str(float(text))
        if kind == "boolean":
            return str({"true": True, "false": False}[text.lower()]).lower()
        if kind == "date":
            return str(datetime.strptime(text, "%Y-%m-%d").date())
    except (ValueError, KeyError):
        raise SAMLError(
            "invalid_response", "The SAML assertion has an attribute value of the wrong type."
        ) from None
    return text


# -- times ------------------------------------------------------------------------------


# The time rules, each a yes/no on an instant (epoch seconds) against the server's
# `now` with the allowed clock `skew`: the ACS raises on them, Test SSO's time row
# explains them.


def issued_in_future(instant: float, now: float, skew: int) -> bool:
    return instant > now + skew


def issued_too_long_ago(instant: float, now: float, skew: int) -> bool:
    return instant < now - skew - MAX_RESPONSE_AGE_SECONDS


def not_yet_valid(not_before: float, now: float, skew: int) -> bool:
    return now + skew < not_before


def has_expired(not_on_or_after: float, now: float, skew: int) -> bool:
    return now - skew >= not_on_or_after


def check_issue_instant(value: str | None, now: float, skew: int, what: str) -> None:
    """IssueInstant neither in the future nor older than MAX_RESPONSE_AGE_SECONDS (with skew)."""
    instant = saml_instant(value)
    if instant is None:
        raise SAMLError("malformed", f"The SAML {what} has no IssueInstant.", 400)
    if issued_in_future(instant, now, skew):
        raise SAMLError("not_yet_valid", f"The SAML {what} was issued in the future.")
    if issued_too_long_ago(instant, now, skew):
        raise SAMLError("expired", f"The SAML {what} is too old.")


# -- the checks -------------------------------------------------------------------------


def check_signed(expect: Expectations, response_signed: bool, assertion_signed: bool) -> None:
    """The signatures the settings require are there (and were verified)."""
    if (expect.want_assertions_signed and not assertion_signed) or (
        expect.want_response_signed and not response_signed
    ):
        raise SAMLError("signature_required", "The SAML response is not signed as required.")


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict: what it expected, what it received, and the refusal if it failed.

    `check_facts` raises the refusal; Test SSO renders the same result as its
    row, so the page and the ACS cannot disagree on the rule.
    """

    expected: tuple[str, ...]
    received: tuple[str | None, ...]
    refusal: SAMLError | None = None

    @property
    def passed(self) -> bool:
        return self.refusal is None

    def enforce(self) -> None:
        if self.refusal is not None:
            raise self.refusal


def destination_rule(
    acs_urls: tuple[str, ...], destination: str | None, response_signed: bool
) -> RuleResult:
    """Destination is one of our ACS URLs (`routing.url_in`: RFC 3986 normalisation only).

    SAML profiles 4.1.4.5: required when the Response is signed. An unsigned
    Response may leave it out: its signed assertion's bearer Recipient, checked
    against the same URLs (`recipient_rule`), then says where it was meant to go.
    """
    refusal = None
    if (destination is not None or response_signed) and not url_in(destination, acs_urls):
        refusal = SAMLError(
            "wrong_destination", "The SAML response was sent to another address than this site's."
        )
    return RuleResult(acs_urls, (destination,), refusal)


def check_destination(expect: Expectations, destination: str | None, response_signed: bool) -> None:
    """`destination_rule`, enforced."""
    destination_rule(expect.acs_urls, destination, response_signed).enforce()


def _recipient_missing(confirmation: Confirmation) -> bool:
    """A bearer confirmation with data but no Recipient: pysaml2 refuses the assertion."""
    return confirmation.method == BEARER and confirmation.has_data and not confirmation.recipient


def _for_this_site(confirmation: Confirmation, acs_urls: tuple[str, ...]) -> bool:
    """A bearer confirmation whose Recipient is one of our ACS URLs."""
    return (
        confirmation.method == BEARER
        and confirmation.has_data
        and url_in(confirmation.recipient, acs_urls)
    )


def recipient_rule(
    acs_urls: tuple[str, ...], confirmations: tuple[Confirmation, ...]
) -> RuleResult:
    """A bearer confirmation names one of our ACS URLs, and none names no one.

    `check_facts` applies both halves where the pysaml2 path does
    (`_check_implicit`, `_check_confirmation`), so the codes stay the ones it gives.
    """
    received = tuple(c.recipient for c in confirmations if c.method == BEARER)
    refusal = None
    if any(_recipient_missing(c) for c in confirmations) or not any(
        _for_this_site(c, acs_urls) for c in confirmations
    ):
        refusal = SAMLError(
            "wrong_recipient", "The SAML assertion has no valid bearer confirmation for this site."
        )
    return RuleResult(acs_urls, received, refusal)


def audience_rule(sp_entity_id: str, restrictions: tuple[tuple[str, ...], ...]) -> RuleResult:
    """Every AudienceRestriction names this SP, and there is at least one."""
    received = tuple(", ".join(r) for r in restrictions)
    refusal = None
    if not restrictions:
        refusal = SAMLError("wrong_audience", "The SAML assertion names no audience.")
    elif any(sp_entity_id not in audiences for audiences in restrictions):
        refusal = SAMLError("wrong_audience", "The SAML assertion is meant for another site.")
    return RuleResult((sp_entity_id,), received, refusal)


def is_idp(expect: Expectations, issuer: EntityName) -> bool:
    """An Issuer naming our IdP, as an entity (no other NameID format)."""
    if issuer.format not in (None, ENTITY_FORMAT):
        return False
    return (issuer.text or "") == expect.idp_entity_id


def check_facts(
    facts: Facts, expect: Expectations, in_response_to: str | None, now: float
) -> VerifiedLogin:
    """Every semantic rule, in the order the pysaml2 path reports them.

    `in_response_to` is the Response's InResponseTo as the structural check read
    it (already matched against the outstanding request, or None).
    """
    check_destination(expect, facts.destination, facts.response_signed)
    skew = expect.clock_skew
    check_issue_instant(facts.response_issue_instant, now, skew, "response")
    if facts.response_version != "2.0":  # pysaml2: RequestVersionTooLow/High
        raise SAMLError("invalid_response", "The SAML response is not SAML 2.0.")
    check_issue_instant(facts.assertion_issue_instant, now, skew, "assertion")
    _check_implicit(facts, expect, now)
    check_signed(expect, facts.response_signed, facts.assertion_signed)
    if facts.response_issuer is not None and not is_idp(expect, facts.response_issuer):
        raise SAMLError("wrong_issuer", "The SAML response comes from an unexpected issuer.")
    if facts.assertion_issuer is None or not is_idp(expect, facts.assertion_issuer):
        raise SAMLError("wrong_issuer", "The SAML assertion comes from an unexpected issuer.")
    if facts.response_in_response_to != in_response_to:
        raise SAMLError("wrong_in_response_to", "The SAML response is inconsistent.")
    audience_rule(expect.sp_entity_id, facts.audience_restrictions).enforce()
    not_before = saml_instant(facts.not_before)
    not_on_or_after = saml_instant(facts.not_on_or_after)
    if not_before is not None and not_yet_valid(not_before, now, skew):
        raise SAMLError("not_yet_valid", "The SAML assertion is not valid yet.")
    if not_on_or_after is not None and has_expired(not_on_or_after, now, skew):
        raise SAMLError("expired", "The SAML assertion has expired.")
    name_id = facts.name_id
    if name_id is None or not name_id.text:
        raise SAMLError("no_nameid", "The SAML assertion does not name a user.")
    if name_id.sp_name_qualifier not in (None, expect.sp_entity_id):
        raise SAMLError("wrong_audience", "The SAML assertion names a user of another site.")
    scd_expiry = _check_confirmation(facts, expect, in_response_to, now)
    if not facts.authn_statements:
        raise SAMLError("invalid_response", "The SAML assertion has no authentication statement.")
    session_index, session_not_on_or_after = facts.authn_statements[0]
    session_end = saml_instant(session_not_on_or_after)
    if session_end is not None and has_expired(session_end, now, skew):
        raise SAMLError("expired", "The IdP session has already ended.")
    if not facts.assertion_id or not facts.response_id:
        raise SAMLError("invalid_response", "The SAML response is not valid.")
    attributes: dict[str, list[str]] = {}
    for name, values in facts.attributes:
        attributes.setdefault(name, []).extend(values)
    expiries = [t for t in (not_on_or_after, scd_expiry) if t is not None]
    return VerifiedLogin(
        issuer=expect.idp_entity_id,
        name_id=name_id.text,
        name_id_format=name_id.format,
        session_index=session_index,
        attributes=attributes,
        assertion_id=facts.assertion_id,
        response_id=facts.response_id,
        in_response_to=in_response_to,
        expires_at=max(expiries) + skew,
        name_id_qualifier=name_id.name_qualifier,
        sp_name_qualifier=name_id.sp_name_qualifier,
        sp_provided_id=name_id.sp_provided_id,
    )


def _check_implicit(facts: Facts, expect: Expectations, now: float) -> None:
    """What pysaml2's `AuthnResponse` enforced on its own (authn_statement_ok,
    condition_ok, get_subject), with the codes the pysaml2 path gives them."""
    if len(facts.authn_statements) != 1:
        raise SAMLError(
            "invalid_response", "The SAML assertion must have one authentication statement."
        )
    skew = expect.clock_skew
    not_before = saml_instant(facts.not_before)
    not_on_or_after = saml_instant(facts.not_on_or_after)
    if not_before is not None and not_on_or_after is not None and not_on_or_after <= not_before:
        raise SAMLError("expired", "The SAML assertion is never valid (empty time window).")
    if facts.other_conditions:
        raise SAMLError("invalid_response", "The SAML assertion has a condition not understood.")
    if not facts.has_subject:
        raise SAMLError("invalid_response", "The SAML assertion has no subject.")
    for confirmation in facts.confirmations:
        if confirmation.method not in (BEARER, HOLDER_OF_KEY, SENDER_VOUCHES):
            raise SAMLError(
                "invalid_response", "The SAML assertion has an unknown confirmation method."
            )
        if confirmation.method != BEARER or not confirmation.has_data:
            continue
        if confirmation.address is not None and not _valid_address(confirmation.address):
            raise SAMLError("invalid_response", "The SAML assertion has an invalid address.")
        expiry = saml_instant(confirmation.not_on_or_after)
        if expiry is not None and has_expired(expiry, now, skew):
            raise SAMLError("expired", "The SAML assertion has expired.")
        if _recipient_missing(confirmation):
            raise SAMLError(
                "wrong_recipient",
                "The SAML assertion has no valid bearer confirmation for this site.",
            )
    if facts.encrypted_id and facts.name_id is None:
        # pysaml2 decrypts an EncryptedID but the login still reads no NameID.
        raise SAMLError("no_nameid", "The SAML assertion does not name a user.")


def _valid_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _check_confirmation(
    facts: Facts, expect: Expectations, in_response_to: str | None, now: float
) -> float:
    """A bearer SubjectConfirmation for this ACS, in its window; returns its expiry."""
    skew = expect.clock_skew
    problem = "The SAML assertion has no valid bearer confirmation for this site."
    code = "wrong_recipient"
    for confirmation in facts.confirmations:
        if confirmation.method != BEARER:
            code = "wrong_confirmation"
            continue
        if not _for_this_site(confirmation, expect.acs_urls):
            continue
        expiry = saml_instant(confirmation.not_on_or_after)
        if expiry is None or has_expired(expiry, now, skew):
            code = "expired"
            problem = "The SAML assertion has expired."
            continue
        if confirmation.not_before is not None:  # forbidden on a bearer confirmation
            code = "wrong_confirmation"
            continue
        if (confirmation.in_response_to or None) != in_response_to:
            code = "wrong_in_response_to"
            problem = "The SAML response is inconsistent."
            continue
        return expiry
    raise SAMLError(code, problem)
