"""Reading untrusted XML: the namespaces, the one hardened parser, the one `text()`.

Every SAML message, signed document and metadata file is parsed here, so the
rules hold everywhere at once: UTF-8 only (lxml here, expat in pysaml2 and
libxml2 in xmlsec1 must read the same characters), no DTD and no entities
(docs/security.md row S23), no network, no huge trees, and a depth limit.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
DS_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
# Prefixes for XPath expressions over SAML messages.
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}

# Deepest element accepted in a SAML message (a real one is about 10 levels deep).
MAX_XML_DEPTH = 64


class UnsafeXML(ValueError):
    """Refused before or while parsing; `code` is a refusal code, `reason` safe to show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_local = threading.local()


def hardened_parser(remove_comments: bool = False) -> etree.XMLParser:
    """The hardened parser, one per thread and option (lxml serialises threads sharing one)."""
    parsers = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(remove_comments)
    if parser is None:
        parser = parsers[remove_comments] = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=remove_comments,  # kept by default: they take part in c14n
            remove_pis=remove_comments,
            remove_blank_text=False,
        )
    return parser


_XML_DECLARATION = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([^\"']*)[\"']")


def parse(data: bytes, *, remove_comments: bool = False) -> etree._Element:
    """Parse untrusted XML; raises `UnsafeXML` ("malformed" or "dtd_forbidden").

    `remove_comments` (and processing instructions) is for documents read but
    never verified (metadata): a signed message keeps its comments for c14n.
    """
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if body.lstrip()[:1] != b"<":
        raise UnsafeXML("malformed", "The SAML message is not XML.")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeXML("malformed", "The SAML message is not UTF-8.") from None
    declared = _XML_DECLARATION.match(body)
    if declared and declared.group(1).lower() != b"utf-8":
        raise UnsafeXML("malformed", "The SAML message is not UTF-8.")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeXML("dtd_forbidden", "The SAML message contains a DTD.")
    try:
        root = etree.fromstring(data, hardened_parser(remove_comments))
    except (etree.XMLSyntaxError, ValueError):
        raise UnsafeXML("malformed", "The SAML message is not well-formed XML.") from None
    if root is None:
        raise UnsafeXML("malformed", "The SAML message is not well-formed XML.")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXML("dtd_forbidden", "The SAML message contains a DTD.")
    if depth_exceeds(root, MAX_XML_DEPTH):
        raise UnsafeXML("malformed", "The SAML message is nested too deeply.")
    return root


def depth_exceeds(root: etree._Element, limit: int) -> bool:
    """True when some node lies deeper than `limit` (the root is at depth 1): real SAML
    messages are shallow (about 10 levels), while deep trees only serve to exhaust a
    recursive parser. Elements, comments and processing instructions count, as
    lxml's iteration over children sees them."""
    if limit < 1:
        return True
    check = _DEPTH_CHECKS.get(limit)
    if check is None:
        # One XPath step per level: each step only visits the nodes of its level,
        # so a shallow document stops after a few steps.
        path = "/*" * limit + "/node()[not(self::text())]"
        check = _DEPTH_CHECKS[limit] = etree.XPath(f"boolean({path})")
    return bool(check(root))


_DEPTH_CHECKS: dict[int, etree.XPath] = {}

_STRING_VALUE = etree.XPath("string()")


def text(node: etree._Element | None) -> str | None:
    """All the character data of an element, comments dropped, stripped; None for no element.

    Never lxml's `.text`: it stops at a comment (the NameID `evil<!---->.victim`
    attack, docs/security.md row S19).
    """
    return None if node is None else str(_STRING_VALUE(node)).strip()
