"""saml_middleware: drop-in SAML 2.0 single sign-on for ASGI and WSGI apps.

from saml_middleware import SAMLMiddleware            # ASGI
app = SAMLMiddleware(app, settings=SETTINGS)

from saml_middleware import SAMLWSGIMiddleware        # WSGI
flask_app.wsgi_app = SAMLWSGIMiddleware(flask_app.wsgi_app, settings=SETTINGS)
"""

from .asgi import SAMLMiddleware
from .errors import AccessDenied, ConfigError
from .identity import SAMLUser
from .wsgi import SAMLWSGIMiddleware

__all__ = ["AccessDenied", "ConfigError", "SAMLMiddleware", "SAMLUser", "SAMLWSGIMiddleware"]
__version__ = "0.1.0"
