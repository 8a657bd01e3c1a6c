"""Just-in-time (JIT) user provisioning into a real SQLite database (stdlib sqlite3).

The middleware calls the `provision` hook once per successful sign-in, with the
mapped `SAMLUser`. This example's hook keeps a `users` table:

* first sign-in: the row is created (Contentstack and Sentry do the same: no
  invitation needed, the IdP assignment is the invitation);
* every later sign-in: email, names and roles are overwritten from the IdP, so a
  user removed from an Entra group or app role loses the app role at their next
  sign-in, and a renamed user shows the new name;
* the hook returns the user with `user_id` set to the row's id, so the app's own
  key is in the session (`request.user.user_id`); the IdP's stable id (Entra's
  objectidentifier) stays the row's lookup key;
* it refuses (`AccessDenied`, a 403 page with the reason) a user without an email
  address, and a user the app has blocked (`blocked = 1`).

A sync hook like this one runs in a worker thread, so it may block on the
database; each call opens its own connection (sqlite3 connections belong to the
thread that made them). If the hook raises anything else, the user gets a 503
"try again" page and the traceback goes to the log.

Run it with the development IdP beside it (NOT FOR PRODUCTION):

    python -m examples.provision_sqlite --db users.sqlite3 --port 8000

then open http://127.0.0.1:8000/me and sign in as B.Simon; `sqlite3 users.sqlite3
'select * from users'` shows the row. With Microsoft Entra ID, pass
`settings(...)` an `idp` section with your App Federation Metadata URL instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from os import PathLike
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from saml_middleware import AccessDenied, SAMLMiddleware, SAMLUser

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    issuer        TEXT    NOT NULL,           -- the IdP (Entra: https://sts.windows.net/<tenant>/)
    idp_user_id   TEXT    NOT NULL,           -- the IdP's stable id (Entra: objectidentifier)
    email         TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    display_name  TEXT    NOT NULL,
    roles         TEXT    NOT NULL,           -- JSON list of app roles, from the last sign-in
    blocked       INTEGER NOT NULL DEFAULT 0, -- set by the app: refuses the next sign-in
    created_at    REAL    NOT NULL,
    last_login_at REAL    NOT NULL,
    login_count   INTEGER NOT NULL DEFAULT 1,
    UNIQUE (issuer, idp_user_id)
)
"""


class UserDirectory:
    """The app's users, in SQLite; `provision` is the middleware's JIT hook."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = str(path)
        with self._connect() as db:
            db.execute(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per use, committed on success and always closed."""
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            with db:  # a transaction: commit, or roll back on error
                yield db
        finally:
            db.close()

    def provision(self, user: SAMLUser) -> SAMLUser:
        """Create or update the user's row; return the user with the row id as `user_id`."""
        if not user.email:
            raise AccessDenied(
                "Your account has no email address: ask your administrator to add one."
            )
        now = time.time()
        with self._connect() as db:
            db.execute(
                """
                INSERT INTO users (issuer, idp_user_id, email, first_name, last_name,
                                   display_name, roles, created_at, last_login_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (issuer, idp_user_id) DO UPDATE SET
                    email = excluded.email,
                    first_name = excluded.first_name,
                    last_name = excluded.last_name,
                    display_name = excluded.display_name,
                    roles = excluded.roles,
                    last_login_at = excluded.last_login_at,
                    login_count = login_count + 1
                """,
                (
                    user.issuer or "",
                    user.user_id,
                    user.email,
                    user.first_name,
                    user.last_name,
                    user.display_name,
                    json.dumps(list(user.roles)),
                    now,
                    now,
                ),
            )
            row = db.execute(
                "SELECT id, blocked FROM users WHERE issuer = ? AND idp_user_id = ?",
                (user.issuer or "", user.user_id),
            ).fetchone()
        if row["blocked"]:
            raise AccessDenied("Your account is blocked in this application.")
        return dataclasses.replace(user, user_id=str(row["id"]))

    def get(self, row_id: str | int) -> dict[str, Any] | None:
        """The row with this id, as a dict (roles decoded), or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM users WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["roles"] = json.loads(data["roles"])
        return data


def create_app(directory: UserDirectory) -> Starlette:
    """The plain app: `/` is public, `/me` shows the signed-in user's database row."""

    async def home(request: Request) -> Response:
        return PlainTextResponse("Public page. Sign in at /me.")

    def me(request: Request) -> Response:  # sync: Starlette runs it in a thread (sqlite)
        user = request.user  # the middleware protects /me: a signed-in SAMLUser
        row = directory.get(user.user_id)
        if row is None:  # e.g. the row was deleted since this session started
            return JSONResponse({"error": "no such user"}, status_code=404)
        return JSONResponse(row)

    return Starlette(routes=[Route("/", home), Route("/me", me)])


def settings(
    base_url: str,
    secret_key: str,
    idp: Mapping[str, Any],
    directory: UserDirectory,
    **extra: Any,
) -> dict[str, Any]:
    """Middleware settings for this app: Entra claims, role mapping, the JIT hook."""
    return {
        "base_url": base_url,
        "secret_key": secret_key,
        "idp": dict(idp),
        "paths": {"protect": ["/me"]},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
        "provision": directory.provision,
        **extra,
    }


def build(
    base_url: str,
    secret_key: str,
    idp: Mapping[str, Any],
    db_path: str | PathLike[str],
    **extra: Any,
) -> tuple[SAMLMiddleware, UserDirectory]:
    """The app behind the middleware, and its user directory."""
    directory = UserDirectory(db_path)
    app = SAMLMiddleware(
        create_app(directory), settings=settings(base_url, secret_key, idp, directory, **extra)
    )
    return app, directory


def _main() -> None:  # pragma: no cover - a manual demo
    import argparse
    import secrets

    import uvicorn
    from starlette.routing import Mount, Router
    from starlette.types import Receive, Scope, Send

    from saml_middleware.devidp import DevIdP
    from saml_middleware.devidp import create_app as create_idp_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="users.sqlite3")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    base_url = f"http://127.0.0.1:{args.port}"
    idp = DevIdP(f"{base_url}/idp")
    sp, _ = build(
        base_url,
        secrets.token_urlsafe(32),
        {"metadata_xml": idp.metadata_xml()},
        args.db,
        session={"https_only": False},  # plain http on 127.0.0.1 only
    )
    idp.add_service_provider(sp.engine.sp_metadata_xml())
    idp_router = Router(routes=[Mount("/idp", app=create_idp_app(idp))])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        target = idp_router if path == "/idp" or path.startswith("/idp/") else sp
        await target(scope, receive, send)

    print(f"open {base_url}/me and sign in; users are stored in {args.db}")
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":  # pragma: no cover
    _main()
