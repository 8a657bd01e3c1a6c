"""The WSGI application: Django inside SAMLWSGIMiddleware.

gunicorn 'examples.django_project.wsgi:make_application()'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from saml_middleware import SAMLWSGIMiddleware


def make_application(saml_settings: Mapping[str, Any] | None = None) -> SAMLWSGIMiddleware:
    """Django's WSGI app behind the middleware (settings: Django's SAML_MIDDLEWARE by default)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    django_app = get_wsgi_application()
    return SAMLWSGIMiddleware(django_app, settings=saml_settings or settings.SAML_MIDDLEWARE)
