"""The one error hierarchy of the package.

`ConfigError` is raised at start-up for a bad settings dict. `SAMLError` is a
refusal while handling a request: it carries a stable machine-readable `code`
(logged and sent in the `X-SAML-Error` header), an HTTP `status` (always 4xx or
503) and a short `reason` that is safe to show to the user. The engine is the
one place that turns a `SAMLError` into an HTTP answer.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A settings problem, named by its key path (`idp.metadata_url: ...`)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}" if key else problem)


class SAMLError(Exception):
    """A refused request: `code` for logs and tests, `reason` for the user."""

    def __init__(self, code: str, reason: str, status: int = 403) -> None:
        self.code = code
        self.reason = reason
        self.status = status
        super().__init__(f"{code}: {reason}")


class AccessDenied(SAMLError):
    """Raised by a `provision` hook to refuse a user who signed in correctly."""

    def __init__(
        self, reason: str = "Your account is not allowed to use this application."
    ) -> None:
        super().__init__("access_denied", reason, 403)
