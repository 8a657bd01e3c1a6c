"""Who signed in: the `SAMLUser` the app receives, built from a verified login.

Attributes are kept whole (claim name -> list of values); the preset and
`attributes.map` pick the well-known fields, and `roles.map` turns IdP role
values into app roles. Roles are recomputed at every login.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.authentication import BaseUser

from .claims import ENTRA_GROUPS_LINK, ENTRA_UPN
from .config import AttributeSettings, RoleSettings

log = logging.getLogger("saml_middleware.identity")

_EMPTY: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True)
class SAMLUser(BaseUser):
    """The signed-in user (or the anonymous one); frozen: hooks return a `replace`d copy."""

    name_id: str = ""
    name_id_format: str | None = None
    session_index: str | None = None
    issuer: str | None = None
    tenant: str | None = None
    user_id: str = ""
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str = ""  # type: ignore[assignment]  # a field, where BaseUser has a property
    roles: tuple[str, ...] = ()
    groups_overage: bool = False
    attributes: Mapping[str, Sequence[str]] = field(default_factory=lambda: _EMPTY, compare=False)
    is_authenticated: bool = True  # type: ignore[assignment]

    @property
    def identity(self) -> str:
        return self.user_id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, e.g. for a session or an API answer."""
        return {
            "name_id": self.name_id,
            "name_id_format": self.name_id_format,
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
        """Inverse of `to_dict`; raises KeyError/TypeError/ValueError on a bad shape."""
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise TypeError("attributes")
        return cls(
            name_id=str(data["name_id"]),
            name_id_format=data.get("name_id_format"),
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


def _first(attributes: Mapping[str, Sequence[str]], names: Sequence[str]) -> str | None:
    for name in names:
        for value in attributes.get(name, ()):
            if value.strip():
                return value.strip()
    return None


def _looks_like_email(value: str | None) -> bool:
    return bool(value) and "@" in value and " " not in value  # type: ignore[operator]


def map_roles(attributes: Mapping[str, Sequence[str]], settings: RoleSettings) -> tuple[str, ...]:
    """IdP role values (from every `roles.attribute`) -> app roles, in a stable order."""
    values: list[str] = []
    for name in settings.attributes:
        for raw in attributes.get(name, ()):
            parts = raw.split(settings.delimiter) if settings.delimiter else [raw]
            values.extend(p.strip() for p in parts if p.strip())
    roles: dict[str, None] = {}
    for value in values:
        for role in settings.map.get(value, ()):
            roles[role] = None
    if not roles:
        for role in settings.default:
            roles[role] = None
    return tuple(roles)


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
) -> SAMLUser:
    """Map a verified login to the `SAMLUser` the app sees."""
    attrs = {name: tuple(values) for name, values in attributes.items()}
    fields: dict[str, str | None] = {
        name: _first(attrs, claims) for name, claims in attribute_settings.fields.items()
    }
    email = fields.get("email")
    if not email:
        for candidate, source in (
            (_first(attrs, (ENTRA_UPN,)), "the UPN claim"),
            (name_id, "the NameID"),
        ):
            if _looks_like_email(candidate):
                email = candidate
                log.info("no email claim in the assertion; using %s as the email", source)
                break
    overage = ENTRA_GROUPS_LINK in attrs
    if overage:
        log.warning(
            "Entra sent groups.link instead of groups (group overage): the user is in too many "
            "groups; in Entra, emit app roles or 'Groups assigned to the application' instead"
        )
    return SAMLUser(
        name_id=name_id,
        name_id_format=name_id_format,
        session_index=session_index,
        issuer=issuer,
        tenant=tenant,
        user_id=fields.get("user_id") or name_id,
        email=email,
        first_name=fields.get("first_name"),
        last_name=fields.get("last_name"),
        display_name=fields.get("display_name") or email or name_id,
        roles=map_roles(attrs, role_settings),
        groups_overage=overage,
        attributes=MappingProxyType(attrs),
    )
