"""A FastAPI app behind saml_middleware: dependencies that return the user or require a role.

Run it, with the development IdP beside it (NOT FOR PRODUCTION), from the
repository root:

    python -m examples.fastapi_app          # the app on :8000, the IdP on :9000
    python -m examples.fastapi_app --port 8001 --idp-port 9001

then open http://127.0.0.1:8000/profile and sign in as B.Simon (an admin) or
A.Jones (a member: /admin answers 403). IdP-initiated sign-in starts from the
IdP's My Apps page, http://127.0.0.1:9000/. `GET /api/me` answers JSON (401
JSON without a session: API clients are never redirected).

The views never touch SAML. `require_roles()` is a dependency that returns
the signed-in `SAMLUser` (401 for an anonymous request); `require_roles("Admin")`
also needs that role (403 without it). Wrapping the app for Microsoft Entra ID:

    from saml_middleware import SAMLMiddleware
    app = SAMLMiddleware(create_app(), settings={
        "base_url": "https://app.example.com",
        "secret_key": os.environ["SAML_SECRET_KEY"],
        "idp": {"metadata_url": "https://login.microsoftonline.com/<tenant>/federationmetadata/"
                                "2007-06/federationmetadata.xml?appid=<app id>"},
        "paths": {"protect": list(PROTECTED_PATHS)},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
    })
    # or: app = create_app(); app.add_middleware(SAMLMiddleware, settings=...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from saml_middleware import SAMLMiddleware, SAMLUser
from saml_middleware.authz import require_roles

# The pages that need a signed-in user; "/" stays public. Paths are prefixes.
PROTECTED_PATHS = ("/profile", "/admin", "/api")

# Dependencies: the signed-in user, and the signed-in user with the Admin role.
CurrentUser = Annotated[SAMLUser, Depends(require_roles())]
AdminUser = Annotated[SAMLUser, Depends(require_roles("Admin"))]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b1f24}nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #d6d9de;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "td code{word-break:break-all}#attributes td:first-child{width:40%}"
)


def _page(request: Request, title: str, body: str) -> HTMLResponse:
    """A page; `body` must already be escaped. Links start at the app's mount path."""
    root = escape(request.scope.get("root_path", ""))
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<nav><a href="{root}/">Home</a><a href="{root}/profile">Profile</a>'
        f'<a href="{root}/admin">Admin</a></nav>{body}</body></html>'
    )
    return HTMLResponse(html, headers={"cache-control": "no-store"})


def _sign_out(root: str) -> str:
    """Signing out takes a POST (the middleware's GET of /saml/logout/ only asks to confirm)."""
    return (
        f'<form method="post" action="{root}/saml/logout/">'
        '<button type="submit">Sign out</button></form>'
    )


def _list(values: Iterable[str]) -> str:
    return ", ".join(escape(v) for v in values) or "<em>none</em>"


def create_app() -> FastAPI:
    """The plain FastAPI app (no SAML): wrap it in `SAMLMiddleware` to serve it."""
    app = FastAPI(title="saml_middleware FastAPI example")

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        user: SAMLUser = request.user  # anonymous (is_authenticated False) when signed out
        root = escape(request.scope.get("root_path", ""))
        if user.is_authenticated:
            body = (
                f"<h1>Hello, {escape(user.display_name)}</h1>"
                f'<p>You are signed in. <a href="{root}/profile">Your profile</a></p>'
                f"{_sign_out(root)}"
            )
        else:
            body = (
                "<h1>saml_middleware FastAPI example</h1>"
                "<p>A public page. The profile and admin pages need single sign-on.</p>"
                f'<p><a href="{root}/saml/login/?next={root}/profile">Sign in</a></p>'
            )
        return _page(request, "Home", body)

    @app.get("/profile", response_class=HTMLResponse)
    async def profile(request: Request, user: CurrentUser) -> HTMLResponse:
        rows = "".join(
            f"<tr><th>{label}</th><td>{value}</td></tr>"
            for label, value in (
                ("Display name", escape(user.display_name)),
                ("Email", escape(user.email or "")),
                ("NameID", escape(user.name_id)),
                ("User ID", escape(user.user_id)),
                ("Issuer", escape(user.issuer or "")),
                ("Roles", _list(user.roles)),
            )
        )
        attributes = (
            "".join(
                f"<tr><td><code>{escape(name)}</code></td><td>{_list(values)}</td></tr>"
                for name, values in sorted(user.attributes.items())
            )
            or '<tr><td colspan="2"><em>no attributes</em></td></tr>'
        )
        root = escape(request.scope.get("root_path", ""))
        body = (
            f'<h1>{escape(user.display_name)}</h1><table id="user">{rows}</table>'
            "<h2>Attributes from the IdP</h2>"
            f'<table id="attributes"><tr><th>Claim</th><th>Values</th></tr>{attributes}</table>'
            f"{_sign_out(root)}"
        )
        return _page(request, "Profile", body)

    @app.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request, user: AdminUser) -> HTMLResponse:
        body = (
            "<h1>Admin</h1>"
            f"<p>Only the Admin role sees this page; you have: {_list(user.roles)}.</p>"
        )
        return _page(request, "Admin", body)

    @app.get("/api/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {
            "name_id": user.name_id,
            "user_id": user.user_id,
            "email": user.email,
            "display_name": user.display_name,
            "roles": list(user.roles),
        }

    return app


def build(settings: Mapping[str, Any]) -> tuple[SAMLMiddleware, Any]:
    """The protected app, and its middleware's engine (for the development IdP)."""
    app = SAMLMiddleware(create_app(), settings=settings)
    return app, app.engine


if __name__ == "__main__":  # python -m examples.fastapi_app (from the repository root)
    from examples.devserver import run

    raise SystemExit(run("fastapi_app", build, "asgi", protect=PROTECTED_PATHS))
