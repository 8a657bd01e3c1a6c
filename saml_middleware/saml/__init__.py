"""The SAML protocol layer, the only package besides devidp/ that imports saml2: XML reading
(xml), algorithms, the service provider and its bindings (sp), the ACS rules (rules), the
xmlsec backend (crypto), Single Logout messages (logout_messages), xs:dateTime (times)."""
