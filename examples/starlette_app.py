"""A small Starlette app behind saml_middleware: the app `saml-middleware demo` serves.

Run it, with the development IdP beside it, from the repository root:

    python -m examples.starlette_app            # same as: python -m saml_middleware demo
    python examples/starlette_app.py --port 8001

then open http://127.0.0.1:8000/profile and sign in as B.Simon (an admin) or
A.Jones (a member: /admin answers 403).

Pages: `/` (public: a "Sign in" link, or the signed-in user's name), `/profile`
(the user's fields, roles and every attribute the IdP sent) and `/admin`
(`@requires("Admin")`). The app itself knows nothing of SAML: it reads
`request.user` (a `SAMLUser`) and `request.auth.scopes`, which the middleware
fills. Wrapping it for a real IdP (Microsoft Entra ID) looks like this:

    from saml_middleware import SAMLMiddleware
    app = SAMLMiddleware(create_app(), settings={
        "base_url": "https://app.example.com",
        "secret_key": os.environ["SAML_SECRET_KEY"],
        "idp": {"metadata_url": "https://login.microsoftonline.com/<tenant>/federationmetadata/"
                                "2007-06/federationmetadata.xml?appid=<app id>"},
        "paths": {"protect": list(PROTECTED_PATHS)},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
    })
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

# The pages that need a signed-in user. "/" stays public; listing what to protect
# (rather than exempting "/") matters: paths are prefixes, so `exempt: ["/"]`
# would exempt every page.
PROTECTED_PATHS = ("/profile", "/admin")
LOGIN_URL = "/saml/login/?next=/profile"
LOGOUT_URL = "/saml/logout/"
# Signing out takes a POST (a GET of LOGOUT_URL only shows a confirmation button),
# so no link or image on another site can sign a user out.
SIGN_OUT_BUTTON = (
    f'<form method="post" action="{LOGOUT_URL}" style="display:inline">'
    '<button type="submit">Sign out</button></form>'
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b1f24}nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #d6d9de;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "td code{word-break:break-all}#attributes td:first-child{width:40%}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A page; `body` must already be escaped."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<nav><a href="/">Home</a><a href="/profile">Profile</a><a href="/admin">Admin</a></nav>'
        f"{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def _signed_in(request: Request) -> bool:
    user = request.scope.get("user")
    return bool(user is not None and user.is_authenticated)


def _list(values: Iterable[str]) -> str:
    items = [escape(v) for v in values]
    return ", ".join(items) if items else "<em>none</em>"


async def home(request: Request) -> Response:
    if _signed_in(request):
        user = request.user
        body = (
            f"<h1>Hello, {escape(user.display_name)}</h1>"
            f'<p>You are signed in. <a href="/profile">Your profile</a> \u00b7 '
            f"{SIGN_OUT_BUTTON}</p>"
        )
    else:
        body = (
            "<h1>saml_middleware example</h1>"
            "<p>A public page. The profile and admin pages need single sign-on.</p>"
            f'<p><a href="{escape(LOGIN_URL)}">Sign in</a></p>'
        )
    return _page("Home", body)


async def profile(request: Request) -> Response:
    if not _signed_in(request):  # the middleware protects this page; be safe anyway
        return RedirectResponse(LOGIN_URL, status_code=303)
    user = request.user
    fields = [
        ("Display name", user.display_name),
        ("Email", user.email or ""),
        ("NameID", user.name_id),
        ("NameID format", user.name_id_format or ""),
        ("User ID", user.user_id),
        ("Issuer", user.issuer or ""),
        ("Roles", None),
    ]
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{_list(user.roles) if value is None else escape(value)}"
        "</td></tr>"
        for label, value in fields
    )
    attributes = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{_list(values)}</td></tr>"
        for name, values in sorted(user.attributes.items())
    )
    if not attributes:
        attributes = '<tr><td colspan="2"><em>no attributes</em></td></tr>'
    body = (
        f"<h1>{escape(user.display_name)}</h1>"
        f'<table id="user">{rows}</table>'
        "<h2>Attributes from the IdP</h2>"
        f'<table id="attributes"><tr><th>Claim</th><th>Values</th></tr>{attributes}</table>'
        f"<p>{SIGN_OUT_BUTTON}</p>"
    )
    return _page("Profile", body)


@requires("Admin")
async def admin(request: Request) -> Response:
    body = (
        "<h1>Admin</h1>"
        f"<p>Only the Admin role sees this page; you have: {_list(request.auth.scopes)}.</p>"
    )
    return _page("Admin", body)


def create_app() -> Starlette:
    """The plain app (no SAML): wrap it in `SAMLMiddleware` to serve it."""
    return Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/profile", profile, methods=["GET"]),
            Route("/admin", admin, methods=["GET"]),
        ]
    )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if not __package__:  # `python examples/starlette_app.py`: make the repo importable
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from saml_middleware.cli import main

    raise SystemExit(main(["demo", *sys.argv[1:]]))
