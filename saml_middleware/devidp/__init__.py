"""A development SAML 2.0 IdP for local runs, the demo, the examples and the tests.

NOT FOR PRODUCTION: anyone who can reach it signs in as any of its test users,
with no password. It is a real IdP on pysaml2's server side, shaped like
Microsoft Entra ID: claim URIs without NameFormat, an emailAddress NameID,
assertions signed with RSA-SHA256.

    idp = DevIdP("http://127.0.0.1:8000/idp")
    app = Starlette(routes=[Mount("/idp", app=create_app(idp))])
"""

from __future__ import annotations

from .app import create_app
from .idp import (
    AuthnRequestInfo,
    DevIdP,
    DevIdPError,
    LogoutRequestInfo,
    LogoutResponseInfo,
    Outbound,
)
from .users import DEFAULT_USERS, DevUser, load_users

__all__ = [
    "DEFAULT_USERS",
    "AuthnRequestInfo",
    "DevIdP",
    "DevIdPError",
    "DevUser",
    "LogoutRequestInfo",
    "LogoutResponseInfo",
    "Outbound",
    "create_app",
    "load_users",
]
