"""saml_middleware: drop-in SAML 2.0 single sign-on for ASGI and WSGI apps.

from saml_middleware import SAMLMiddleware
app = SAMLMiddleware(app, settings=SETTINGS)
"""

from .asgi import SAMLMiddleware
from .errors import AccessDenied, ConfigError
from .identity import SAMLUser

__all__ = ["AccessDenied", "ConfigError", "SAMLMiddleware", "SAMLUser"]
__version__ = "0.1.0"
