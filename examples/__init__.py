"""Example apps for saml_middleware (importable so the tests and the demo can use them)."""
