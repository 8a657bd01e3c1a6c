"""Who signed in: the `SAMLUser` the app receives, built from a verified login.

Attributes are kept whole (claim name -> list of values, unknown claims
included); the preset and `attributes.map` pick the well-known fields, and
`roles.map` turns IdP role/group values into app roles. Everything here is a
pure function of the assertion and the settings, so roles are recomputed at
every login: a user removed from an IdP group loses the app role at the next
sign-in. The two settings hooks (`roles.overage_hook`, `provision`) are run by
hooks.py's `run_hook`, awaited when async and in a worker thread when sync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .claims import EMAIL_FALLBACK_CLAIMS, ENTRA_GROUPS, ENTRA_GROUPS_LINK
from .config import AttributeSettings, RoleSettings
from .errors import SAMLError
from .hooks import run_hook

log = logging.getLogger("saml_middleware.identity")

_EMPTY: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True)
class SAMLUser:
    """The signed-in user (or the anonymous one); frozen: hooks return a `replace`d copy.

    It has what Starlette's `BaseUser` has (`is_authenticated`, `display_name`,
    `identity`) without depending on Starlette: the ASGI adapter puts it in
    `scope["user"]` and the matching `AuthCredentials` in `scope["auth"]`.
    """

    name_id: str = ""
    name_id_format: str | None = None
    # The NameID's NameQualifier, SPNameQualifier and SPProvidedID as received:
    # Single Logout names the user by all of them.
    name_id_qualifier: str | None = None
    sp_name_qualifier: str | None = None
    sp_provided_id: str | None = None
    session_index: str | None = None
    issuer: str | None = None
    tenant: str | None = None
    user_id: str = ""
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str = ""
    roles: tuple[str, ...] = ()
    # True when Entra sent groups.link instead of the groups (over 150 of them) and
    # no `roles.overage_hook` resolved them: the user's groups are unknown.
    groups_overage: bool = False
    attributes: Mapping[str, Sequence[str]] = field(default_factory=lambda: _EMPTY, compare=False)
    is_authenticated: bool = True

    @property
    def identity(self) -> str:
        return self.user_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, e.g. for a session or an API answer."""
        return {
            "name_id": self.name_id,
            "name_id_format": self.name_id_format,
            "name_id_qualifier": self.name_id_qualifier,
            "sp_name_qualifier": self.sp_name_qualifier,
            "sp_provided_id": self.sp_provided_id,
            "session_index": self.session_index,
            "issuer": self.issuer,
            "tenant": self.tenant,
            "user_id": self.user_id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "display_name": self.display_name,
            "roles": list(self.roles),
            "groups_overage": self.groups_overage,
            "attributes": {k: list(v) for k, v in self.attributes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SAMLUser:
        """Inverse of `to_dict`; raises KeyError/TypeError/ValueError on a bad shape.

        A session written before the NameID qualifiers were kept has none (None).
        """
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise TypeError("attributes")
        return cls(
            name_id=str(data["name_id"]),
            name_id_format=data.get("name_id_format"),
            name_id_qualifier=data.get("name_id_qualifier"),
            sp_name_qualifier=data.get("sp_name_qualifier"),
            sp_provided_id=data.get("sp_provided_id"),
            session_index=data.get("session_index"),
            issuer=data.get("issuer"),
            tenant=data.get("tenant"),
            user_id=str(data["user_id"]),
            email=data.get("email"),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            display_name=str(data.get("display_name") or ""),
            roles=tuple(str(r) for r in data.get("roles") or ()),
            groups_overage=bool(data.get("groups_overage")),
            attributes=MappingProxyType(
                {str(k): tuple(str(x) for x in v) for k, v in attributes.items()}
            ),
        )


ANONYMOUS = SAMLUser(is_authenticated=False)

UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


def same_name_id(
    user: SAMLUser,
    *,
    name_id_format: str | None,
    name_qualifier: str | None,
    sp_name_qualifier: str | None,
    sp_provided_id: str | None,
    idp_entity_id: str,
    sp_entity_id: str,
) -> bool:
    """Whether a LogoutRequest's NameID qualifiers are those of `user`'s NameID.

    The value and the issuer are compared by the caller. SAML core 8.3: an
    absent NameQualifier means the IdP, an absent SPNameQualifier this SP, an
    absent Format "unspecified"; so a session kept before the qualifiers were
    stored (all None) still matches a request that names the defaults.
    """
    return (
        (user.name_id_format or UNSPECIFIED) == (name_id_format or UNSPECIFIED)
        and (user.name_id_qualifier or idp_entity_id) == (name_qualifier or idp_entity_id)
        and (user.sp_name_qualifier or sp_entity_id) == (sp_name_qualifier or sp_entity_id)
        and user.sp_provided_id == sp_provided_id
    )


NO_MAPPED_ROLE = (
    "Your account has no role in this application: ask your administrator to assign you one."
)
GROUPS_OVERAGE = (
    "Your role in this application could not be determined: Microsoft Entra ID did not "
    "send your groups because you are a member of too many of them (group overage). "
    "Ask your administrator to assign you an app role, or to send only the groups "
    "assigned to the application."
)
PROVISION_FAILED = (
    "Your account could not be set up in this application right now: please try signing "
    "in again in a moment."
)
GROUPS_UNAVAILABLE = (
    "Your group memberships could not be read right now: please try signing in again in a moment."
)


def _first(attributes: Mapping[str, Sequence[str]], names: Sequence[str]) -> str | None:
    for name in names:
        for value in attributes.get(name, ()):
            if value.strip():
                return value.strip()
    return None


def _looks_like_email(value: str | None) -> bool:
    if not value or any(c.isspace() for c in value):
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain)


def role_values(attributes: Mapping[str, Sequence[str]], settings: RoleSettings) -> tuple[str, ...]:
    """The IdP's role/group values, from every `roles.attribute`, split by `roles.delimiter`."""
    values: dict[str, None] = {}
    for name in settings.attributes:
        for raw in attributes.get(name, ()):
            parts = raw.split(settings.delimiter) if settings.delimiter else [raw]
            for part in parts:
                if part.strip():
                    values[part.strip()] = None
    return tuple(values)


def mapped_roles(
    attributes: Mapping[str, Sequence[str]], settings: RoleSettings
) -> tuple[str, ...]:
    """The app roles `roles.map` grants (exact match, or casefolded), without the default."""
    roles: dict[str, None] = {}
    for value in role_values(attributes, settings):
        key = value.casefold() if settings.case_insensitive else value
        for role in settings.map.get(key, ()):
            roles[role] = None
    return tuple(roles)


def map_roles(attributes: Mapping[str, Sequence[str]], settings: RoleSettings) -> tuple[str, ...]:
    """IdP role values -> app roles, in a stable order; `roles.default` when none is mapped."""
    return mapped_roles(attributes, settings) or tuple(dict.fromkeys(settings.default))


def build_user(
    *,
    name_id: str,
    name_id_format: str | None,
    session_index: str | None,
    issuer: str,
    attributes: Mapping[str, Sequence[str]],
    attribute_settings: AttributeSettings,
    role_settings: RoleSettings,
    tenant: str | None = None,
    name_id_qualifier: str | None = None,
    sp_name_qualifier: str | None = None,
    sp_provided_id: str | None = None,
) -> SAMLUser:
    """Map a verified login to the `SAMLUser` the app sees (every claim kept)."""
    attrs = {name: tuple(values) for name, values in attributes.items()}
    fields: dict[str, str | None] = {
        name: _first(attrs, claims) for name, claims in attribute_settings.fields.items()
    }
    user_id = fields.get("user_id")
    if not user_id:
        user_id = name_id
        if attribute_settings.fields.get("user_id"):
            log.info(
                "no %s claim in the assertion; using the NameID as the user_id",
                " / ".join(attribute_settings.fields["user_id"]),
            )
    email = fields.get("email")
    if not email:
        candidates = [
            (_first(attrs, (claim,)), f"the {claim} claim") for claim in EMAIL_FALLBACK_CLAIMS
        ]
        for candidate, source in (*candidates, (name_id, "the NameID")):
            if _looks_like_email(candidate):
                email = candidate
                log.info("no email claim in the assertion; using %s as the email", source)
                break
    overage = ENTRA_GROUPS_LINK in attrs
    if overage and role_settings.overage_hook is None:
        log.warning(
            "Entra sent groups.link instead of groups (group overage): the user is in more "
            "than 150 groups, so no group was sent. In Entra, emit app roles, or limit the "
            "group claim to 'Groups assigned to the application'; or set roles.overage_hook "
            "to read the groups from Microsoft Graph"
        )
    return SAMLUser(
        name_id=name_id,
        name_id_format=name_id_format,
        name_id_qualifier=name_id_qualifier,
        sp_name_qualifier=sp_name_qualifier,
        sp_provided_id=sp_provided_id,
        session_index=session_index,
        issuer=issuer,
        tenant=tenant,
        user_id=user_id,
        email=email,
        first_name=fields.get("first_name"),
        last_name=fields.get("last_name"),
        display_name=fields.get("display_name") or email or name_id,
        roles=map_roles(attrs, role_settings),
        groups_overage=overage,
        attributes=MappingProxyType(attrs),
    )


async def resolve_overage(user: SAMLUser, settings: RoleSettings) -> SAMLUser:
    """Ask `roles.overage_hook` for an overage user's groups and map roles again.

    The hook gets the user (its `attributes` hold the objectidentifier, the
    tenantid and the groups.link URL) and returns the group values, e.g. the
    object IDs from Microsoft Graph, or None when it cannot tell. Resolved
    groups are stored under the Entra groups claim and `groups_overage` becomes
    False. A hook that fails is a 503 (try again), never a login with
    silently missing roles; `AccessDenied` from the hook refuses the user.
    """
    hook = settings.overage_hook
    if not user.groups_overage or hook is None:
        return user
    groups = await run_hook(
        hook,
        user,
        failure=SAMLError("groups_unavailable", GROUPS_UNAVAILABLE, 503),
        log=log,
        failed=("roles.overage_hook failed",),
    )
    if groups is None:
        log.warning("roles.overage_hook could not resolve the groups of an overage user")
        return user
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple, set, frozenset)):
        log.error(
            "roles.overage_hook returned %s, not a list of group values", type(groups).__name__
        )
        raise SAMLError("groups_unavailable", GROUPS_UNAVAILABLE, 503)
    if not all(isinstance(g, str) for g in groups):
        log.error("roles.overage_hook returned a list holding something else than strings")
        raise SAMLError("groups_unavailable", GROUPS_UNAVAILABLE, 503)
    attrs = dict(user.attributes)
    attrs[ENTRA_GROUPS] = tuple(dict.fromkeys((*attrs.get(ENTRA_GROUPS, ()), *groups)))
    log.info("roles.overage_hook resolved %d groups", len(attrs[ENTRA_GROUPS]))
    return replace(
        user,
        attributes=MappingProxyType(attrs),
        roles=map_roles(attrs, settings),
        groups_overage=False,
    )


def check_required_role(user: SAMLUser, settings: RoleSettings) -> None:
    """With `roles.require_mapped_role`, refuse (403) a user whom `roles.map` gives no role.

    `roles.default` does not count: the setting means "only assigned users".
    When the groups are a role source and Entra left them out (overage), the
    refusal says so, rather than blaming a missing assignment.
    """
    if not settings.require_mapped_role or mapped_roles(user.attributes, settings):
        return
    if user.groups_overage and ENTRA_GROUPS in settings.attributes:
        raise SAMLError("groups_overage", GROUPS_OVERAGE, 403)
    raise SAMLError("no_mapped_role", NO_MAPPED_ROLE, 403)
