"""Django settings for the saml_middleware example project (see the package docstring).

Environment: DJANGO_EXAMPLE_DB (the SQLite file), DJANGO_SECRET_KEY,
DJANGO_ALLOWED_HOSTS (comma-separated), and for a real IdP SAML_BASE_URL,
SAML_SECRET_KEY and SAML_IDP_METADATA_URL (read into SAML_MIDDLEWARE below).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.utils import get_random_secret_key

HERE = Path(__file__).resolve().parent

# A fresh key per process unless given: example sessions need not survive restarts.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware: REMOTE_USER (set by SAMLWSGIMiddleware) -> request.user.
    "examples.django_project.auth.SAMLRemoteUserMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = ["examples.django_project.auth.SAMLRemoteUserBackend"]

# Django's own login redirects (@login_required) go to the SAML login, which
# takes the same ?next= parameter.
LOGIN_URL = "/saml/login/"

ROOT_URLCONF = "examples.django_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_EXAMPLE_DB")
        or os.path.join(tempfile.gettempdir(), "saml-middleware-django-example.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"}},
}

# The middleware's settings (see docs/configuration.md); `python -m examples.django_project`
# replaces them with the development IdP's. For Microsoft Entra ID:
SAML_MIDDLEWARE = {
    "base_url": os.environ.get("SAML_BASE_URL", "http://127.0.0.1:8000"),
    "secret_key": os.environ.get("SAML_SECRET_KEY", ""),
    "idp": {"metadata_url": os.environ.get("SAML_IDP_METADATA_URL")},
    "paths": {"protect": ["/profile", "/admin"]},
    "roles": {"map": {"admins": ["Admin"], "developers": ["Member"]}},
}
