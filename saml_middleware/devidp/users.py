"""The development IdP's test users, shaped like the claims Microsoft Entra ID sends.

NOT FOR PRODUCTION: these are fixed, well-known identities with no password.
The defaults cover the cases the middleware must handle: an admin, a plain
member, and a user with no role and no email claim (Entra omits `emailaddress`
when the user's `mail` is empty, so the SP must fall back to the UPN).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ..claims import (
    ENTRA_AUTHN_METHODS,
    ENTRA_DISPLAY_NAME,
    ENTRA_EMAIL,
    ENTRA_GIVEN_NAME,
    ENTRA_IDENTITY_PROVIDER,
    ENTRA_OBJECT_ID,
    ENTRA_ROLE,
    ENTRA_SURNAME,
    ENTRA_TENANT_ID,
    ENTRA_UPN,
)

# A fixed, obviously fake tenant, so assertions are stable across runs.
DEV_TENANT_ID = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
PASSWORD_METHOD = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"


@dataclass(frozen=True)
class DevUser:
    """One sign-in choice on the IdP page: a NameID and the claims sent with it."""

    key: str
    name_id: str
    display: str
    claims: dict[str, list[str]] = field(default_factory=dict, hash=False)

    @property
    def email(self) -> str | None:
        values = self.claims.get(ENTRA_EMAIL)
        return values[0] if values else None

    @property
    def roles(self) -> list[str]:
        return list(self.claims.get(ENTRA_ROLE, []))


def _entra_claims(
    upn: str, given: str, surname: str, object_id: str, *, email: bool = True
) -> dict[str, list[str]]:
    claims = {
        ENTRA_TENANT_ID: [DEV_TENANT_ID],
        ENTRA_OBJECT_ID: [object_id],
        ENTRA_DISPLAY_NAME: [f"{given}.{surname}"],
        ENTRA_IDENTITY_PROVIDER: [f"https://sts.windows.net/{DEV_TENANT_ID}/"],
        ENTRA_AUTHN_METHODS: [PASSWORD_METHOD],
        ENTRA_GIVEN_NAME: [given],
        ENTRA_SURNAME: [surname],
        ENTRA_EMAIL: [upn],
        ENTRA_UPN: [upn],
    }
    if not email:
        del claims[ENTRA_EMAIL]
    return claims


DEFAULT_USERS: tuple[DevUser, ...] = (
    DevUser(
        key="bsimon",
        name_id="B.Simon@contoso.com",
        display="B.Simon",
        claims={
            **_entra_claims(
                "B.Simon@contoso.com", "B", "Simon", "2d8b3c5e-7f1a-4e0b-9c2d-000000000001"
            ),
            ENTRA_ROLE: ["admins"],
        },
    ),
    DevUser(
        key="ajones",
        name_id="A.Jones@contoso.com",
        display="A.Jones",
        claims={
            **_entra_claims(
                "A.Jones@contoso.com", "A", "Jones", "2d8b3c5e-7f1a-4e0b-9c2d-000000000002"
            ),
            ENTRA_ROLE: ["developers"],
        },
    ),
    DevUser(
        key="cnoroles",
        name_id="C.Norole@contoso.com",
        display="C.Norole",
        claims=_entra_claims(
            "C.Norole@contoso.com",
            "C",
            "Norole",
            "2d8b3c5e-7f1a-4e0b-9c2d-000000000003",
            email=False,
        ),
    ),
)


def _user_from(item: Any, index: int) -> DevUser:
    where = f"user #{index + 1}"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be an object")
    unknown = set(item) - {"key", "name_id", "display", "claims"}
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    for name in ("key", "name_id"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ValueError(f"{where}: {name!r} must be a non-empty string")
    display = item.get("display", item["name_id"])
    if not isinstance(display, str):
        raise ValueError(f"{where}: 'display' must be a string")
    raw_claims = item.get("claims") or {}
    if not isinstance(raw_claims, Mapping):
        raise ValueError(f"{where}: 'claims' must be an object of claim name -> values")
    claims: dict[str, list[str]] = {}
    for name, values in raw_claims.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}: claim {name!r} must be a string or a list of strings")
        claims[str(name)] = list(values)
    return DevUser(item["key"], item["name_id"], display, claims)


def load_users(path: str | PathLike[str]) -> list[DevUser]:
    """Users from a JSON list of `{"key", "name_id", "display", "claims"}` objects.

    A claim value may be a string or a list of strings. Raises ValueError with
    the user's position on a bad shape, and on duplicate keys.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: must hold a non-empty JSON list of users")
    users = [_user_from(item, i) for i, item in enumerate(data)]
    keys = [u.key for u in users]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate user key {duplicates[0]!r}")
    return users
