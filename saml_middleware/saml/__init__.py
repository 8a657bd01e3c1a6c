"""The SAML protocol layer: XML reading, algorithms, and (over time) the rest of it."""
