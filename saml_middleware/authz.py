"""Authorization helpers: "this view needs a signed-in user with these roles".

The middleware decides who is signed in; these decide what they may do, from
the mapped `SAMLUser.roles`. A user must have every role named (like
Starlette's `@requires`); with no role named, being signed in is enough.
An anonymous request gets 401, a signed-in user without the roles 403.

FastAPI (or Starlette, calling it with the request):

    from saml_middleware.authz import require_roles

    @app.get("/admin")
    async def admin(user: SAMLUser = Depends(require_roles("Admin"))): ...

Flask (the app wrapped in `SAMLWSGIMiddleware`):

    from saml_middleware.authz import roles_required

    @app.get("/admin")
    @roles_required("Admin")
    def admin(): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from .identity import SAMLUser

_View = TypeVar("_View", bound=Callable[..., Any])

SIGN_IN_REQUIRED = "Sign-in required."
ROLE_REQUIRED = "Your account does not have the role this page needs."


def _check(user: object, roles: tuple[str, ...]) -> tuple[int, str] | None:
    """None when `user` may pass, else the (status, reason) to refuse with."""
    if not isinstance(user, SAMLUser) or not user.is_authenticated:
        return 401, SIGN_IN_REQUIRED
    if not set(roles) <= set(user.roles):
        return 403, ROLE_REQUIRED
    return None


class require_roles:  # noqa: N801 - used like a function: Depends(require_roles("Admin"))
    """A FastAPI dependency returning the signed-in `SAMLUser` that has every role in `roles`.

    Raises Starlette's `HTTPException` (which FastAPI answers as JSON): 401 for
    an anonymous request, 403 for a user without the roles. Outside FastAPI,
    `await require_roles("Admin")(request)` does the same.
    """

    def __init__(self, *roles: str) -> None:
        if not all(isinstance(role, str) and role for role in roles):
            raise TypeError("require_roles() takes role names (non-empty strings)")
        self.roles = roles

    async def __call__(self, request: HTTPConnection) -> SAMLUser:
        if "user" not in request.scope:
            raise RuntimeError("require_roles needs SAMLMiddleware around the app")
        user = request.scope["user"]
        refusal = _check(user, self.roles)
        if refusal is not None:
            raise HTTPException(status_code=refusal[0], detail=refusal[1])
        return user  # type: ignore[no-any-return]  # _check made sure it is a SAMLUser

    def __repr__(self) -> str:
        return f"require_roles({', '.join(map(repr, self.roles))})"


def roles_required(*roles: str) -> Callable[[_View], _View]:
    """A Flask view decorator: the view runs only for a signed-in user with every role.

    Reads `flask.request.environ["saml.user"]` (set by `SAMLWSGIMiddleware`) and
    aborts with 401 (anonymous) or 403 (a role is missing). Async views work too.
    """
    if not all(isinstance(role, str) and role for role in roles):
        raise TypeError("roles_required() takes role names (non-empty strings)")

    def refuse_unless_allowed() -> None:
        from flask import abort, request  # lazy: Flask is only needed by Flask apps

        if "saml.user" not in request.environ:
            raise RuntimeError("roles_required needs SAMLWSGIMiddleware around the app")
        refusal = _check(request.environ["saml.user"], roles)
        if refusal is not None:
            abort(refusal[0], description=refusal[1])

    def decorator(view: _View) -> _View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                refuse_unless_allowed()
                return await view(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            refuse_unless_allowed()
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
