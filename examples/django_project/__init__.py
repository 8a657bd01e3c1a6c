"""A Django project behind saml_middleware's WSGI adapter, signing users in through REMOTE_USER.

Run it, with the development IdP beside it (NOT FOR PRODUCTION), from the
repository root (`pip install django` first):

    python -m examples.django_project       # the app on :8000, the IdP on :9000
    python -m examples.django_project --port 8001 --idp-port 9001

then open http://127.0.0.1:8000/profile and sign in as B.Simon (an admin) or
A.Jones (a member: /admin answers 403). IdP-initiated sign-in starts from the
IdP's My Apps page, http://127.0.0.1:9000/. The demo keeps its SQLite database
in a temporary directory (set DJANGO_EXAMPLE_DB to keep one).

How it fits together:

* `wsgi.make_application` wraps Django's WSGI app in `SAMLWSGIMiddleware`,
  which answers /saml/..., protects the configured paths and sets
  `REMOTE_USER` (the NameID) and `saml.user` (the `SAMLUser`) in the environ.
* `auth.SAMLRemoteUserMiddleware` (Django's `RemoteUserMiddleware`) logs the
  REMOTE_USER in to Django, and out again when the SAML session ends.
* `auth.SAMLRemoteUserBackend` (Django's `RemoteUserBackend`) creates the
  Django user on first sign-in (just in time), fills name and email, and makes
  the user's groups the SAML roles, again at every new SAML sign-in.
* Views use the ordinary Django user: `@login_required`, `user.groups`.

With Microsoft Entra ID, set SAML_MIDDLEWARE in settings.py (see there) and
serve `examples.django_project.wsgi:make_application()` with a WSGI server
(e.g. `gunicorn 'examples.django_project.wsgi:make_application()'`).
"""
