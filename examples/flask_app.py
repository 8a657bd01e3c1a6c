"""A Flask app behind saml_middleware's WSGI adapter, with a role-protected view.

Run it, with the development IdP beside it (NOT FOR PRODUCTION), from the
repository root:

    python -m examples.flask_app            # the app on :8000, the IdP on :9000
    python -m examples.flask_app --port 8001 --idp-port 9001

then open http://127.0.0.1:8000/profile and sign in as B.Simon (an admin) or
A.Jones (a member: /admin answers 403). IdP-initiated sign-in starts from the
IdP's My Apps page, http://127.0.0.1:9000/.

Pages: `/` (public), `/profile` (the user's fields, roles and attributes) and
`/admin` (`@roles_required("Admin")`). The views read the `SAMLUser` from
`request.environ["saml.user"]`; the middleware puts it there and answers the
SAML endpoints under /saml/. Wrapping the app for Microsoft Entra ID:

    from saml_middleware import SAMLWSGIMiddleware
    app = create_app()
    app.wsgi_app = SAMLWSGIMiddleware(app.wsgi_app, settings={
        "base_url": "https://app.example.com",
        "secret_key": os.environ["SAML_SECRET_KEY"],
        "idp": {"metadata_url": "https://login.microsoftonline.com/<tenant>/federationmetadata/"
                                "2007-06/federationmetadata.xml?appid=<app id>"},
        "paths": {"protect": list(PROTECTED_PATHS)},
        "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
    })

Behind a TLS-terminating proxy, serve it with any WSGI server (gunicorn,
uWSGI, waitress); `base_url` stays the public URL (see docs/deployment.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template, request
from jinja2 import DictLoader

from saml_middleware import SAMLUser, SAMLWSGIMiddleware
from saml_middleware.authz import roles_required

# The pages that need a signed-in user; "/" stays public. Paths are prefixes.
PROTECTED_PATHS = ("/profile", "/admin")

TEMPLATES = {
    "layout.html": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title><style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #d6d9de;padding:.3rem .5rem;text-align:left;vertical-align:top}
td code{word-break:break-all}#attributes td:first-child{width:40%}
</style></head><body>
<nav><a href="{{ url_for('home') }}">Home</a><a href="{{ url_for('profile') }}">Profile</a>
<a href="{{ url_for('admin') }}">Admin</a></nav>
{% block body %}{% endblock %}</body></html>""",
    # Signing out takes a POST (the middleware's GET of /saml/logout/ only asks to confirm).
    "sign_out.html": """<form method="post" action="{{ saml }}/logout/">
<button type="submit">Sign out</button></form>""",
    "home.html": """{% extends "layout.html" %}{% block body %}
{% if user.is_authenticated %}
<h1>Hello, {{ user.display_name }}</h1>
<p>You are signed in. <a href="{{ url_for('profile') }}">Your profile</a></p>
{% include "sign_out.html" %}
{% else %}
<h1>saml_middleware Flask example</h1>
<p>A public page. The profile and admin pages need single sign-on.</p>
<p><a href="{{ saml }}/login/?next={{ url_for('profile') | urlencode }}">Sign in</a></p>
{% endif %}{% endblock %}""",
    "profile.html": """{% extends "layout.html" %}{% block body %}
<h1>{{ user.display_name }}</h1>
<table id="user">
<tr><th>Display name</th><td>{{ user.display_name }}</td></tr>
<tr><th>Email</th><td>{{ user.email or "" }}</td></tr>
<tr><th>NameID</th><td>{{ user.name_id }}</td></tr>
<tr><th>User ID</th><td>{{ user.user_id }}</td></tr>
<tr><th>Issuer</th><td>{{ user.issuer or "" }}</td></tr>
<tr><th>Roles</th><td>{{ user.roles | join(", ") or "none" }}</td></tr>
</table>
<h2>Attributes from the IdP</h2>
<table id="attributes"><tr><th>Claim</th><th>Values</th></tr>
{% for name, values in user.attributes | dictsort %}
<tr><td><code>{{ name }}</code></td><td>{{ values | join(", ") }}</td></tr>
{% else %}<tr><td colspan="2"><em>no attributes</em></td></tr>{% endfor %}
</table>
{% include "sign_out.html" %}{% endblock %}""",
    "admin.html": """{% extends "layout.html" %}{% block body %}
<h1>Admin</h1><p>Only the Admin role sees this page; you have: {{ user.roles | join(", ") }}.</p>
{% endblock %}""",
}


def current_user() -> SAMLUser:
    """The request's user (anonymous when not signed in), as the middleware set it."""
    user: SAMLUser = request.environ["saml.user"]
    return user


def _render(template: str, title: str) -> str:
    # `request.script_root` keeps the links right when the app is mounted under a path.
    return render_template(
        template,
        title=title,
        user=current_user(),
        saml=f"{request.script_root}/saml",
    )


def create_app() -> Flask:
    """The plain Flask app (no SAML): wrap its `wsgi_app` to serve it (see `protect`)."""
    app = Flask(__name__)
    app.jinja_loader = DictLoader(TEMPLATES)  # one-file example: the templates are above

    @app.after_request
    def no_store(response: Any) -> Any:
        response.headers["Cache-Control"] = "no-store"  # pages show who is signed in
        return response

    @app.get("/")
    def home() -> str:
        return _render("home.html", "Home")

    @app.get("/profile")
    @roles_required()  # the middleware protects /profile already; this keeps the view safe
    def profile() -> str:
        return _render("profile.html", "Profile")

    @app.get("/admin")
    @roles_required("Admin")
    def admin() -> str:
        return _render("admin.html", "Admin")

    return app


def protect(app: Flask, settings: Mapping[str, Any]) -> Flask:
    """Put `app` behind `SAMLWSGIMiddleware` (the one line a Flask app adds)."""
    app.wsgi_app = SAMLWSGIMiddleware(app.wsgi_app, settings=settings)  # type: ignore[method-assign]
    return app


def build(settings: Mapping[str, Any]) -> tuple[Flask, Any]:
    """The protected app, and its middleware's engine (for the development IdP)."""
    app = protect(create_app(), settings)
    return app, app.wsgi_app.engine  # type: ignore[attr-defined]


if __name__ == "__main__":  # python -m examples.flask_app (from the repository root)
    from examples.devserver import run

    raise SystemExit(run("flask_app", build, "wsgi", protect=PROTECTED_PATHS))
