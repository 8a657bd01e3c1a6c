"""REMOTE_USER sign-in for Django, fed by SAMLWSGIMiddleware.

`SAMLWSGIMiddleware` sets `REMOTE_USER` to the NameID of a signed-in user (and
removes it otherwise) and puts the `SAMLUser` in `saml.user`. Django's
`RemoteUserMiddleware` then logs that user in, through the backend below, and
logs them out when REMOTE_USER disappears (the SAML session ended).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib import auth
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest

from saml_middleware import SAMLUser

# The Django session remembers which SAML sign-in it came from.
SAML_LOGIN_KEY = "saml_login"


def saml_user(request: HttpRequest | None) -> SAMLUser | None:
    """The signed-in `SAMLUser` of this request, if any."""
    user = request.META.get("saml.user") if request is not None else None
    return user if isinstance(user, SAMLUser) and user.is_authenticated else None


def _login_marker(user: SAMLUser) -> str:
    """Changes with every SAML sign-in (session index) and with the roles it brought."""
    text = "\n".join([user.issuer or "", user.name_id, user.session_index or "", *user.roles])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SAMLRemoteUserBackend(RemoteUserBackend):
    """Creates the Django user at first sign-in and keeps it in step with the IdP.

    A new user gets an unusable password (it signs in through the IdP only).
    At every SAML sign-in: first and last name and email from the `SAMLUser`,
    and the user's groups become exactly its mapped roles (a role removed at
    the IdP is a group removed here). Groups are created as needed.
    """

    create_unknown_user = True

    def configure_user(self, request: Any, user: Any, created: bool = True) -> Any:
        saml = saml_user(request)
        if saml is None:  # not a SAML request (e.g. a management command)
            return user
        with transaction.atomic():
            fields = ["first_name", "last_name", "email"]
            if created:  # signs in through the IdP only: no password to guess or reset
                user.set_unusable_password()
                fields.append("password")
            user.first_name = (saml.first_name or "")[:150]
            user.last_name = (saml.last_name or "")[:150]
            user.email = saml.email or ""
            user.save(update_fields=fields)
            user.groups.set([Group.objects.get_or_create(name=role)[0] for role in saml.roles])
        return user


class SAMLRemoteUserMiddleware(RemoteUserMiddleware):
    """Django's RemoteUserMiddleware, re-run at each new SAML sign-in.

    RemoteUserMiddleware authenticates only when the user name changes; a user
    who signs in again (perhaps with other roles) keeps the name, so the
    Django session is ended and the backend runs again when the SAML sign-in
    differs from the one the session came from.
    """

    async_capable = False  # the example is served over WSGI

    def process_request(self, request: HttpRequest) -> None:
        saml = saml_user(request)
        marker = _login_marker(saml) if saml is not None else None
        if (
            marker is not None
            and request.user.is_authenticated
            and request.session.get(SAML_LOGIN_KEY) != marker
        ):
            auth.logout(request)
        super().process_request(request)
        signed_in = marker is not None and request.user.is_authenticated
        if signed_in and request.session.get(SAML_LOGIN_KEY) != marker:
            request.session[SAML_LOGIN_KEY] = marker  # written once per sign-in, not per request
