"""The app's hooks, and the one way a hook is called and may fail.

The hooks (each documented in docs/configuration.md or docs/organizations.md):

* `provision(user) -> SAMLUser`: just-in-time users, once per login that passed
  every check.
* `roles.overage_hook(user) -> list[str] | None`: an Entra user's groups when
  the assertion had too many to carry them.
* `tenants(slug) -> dict | None`: an organization's settings, from the app's
  own database.
* `tenant_options.resolver = {"callable": f}`: which organization a path or
  host belongs to.

The failure policy, the same for all: a hook may be sync or async (a sync one
runs in a worker thread, so its database or HTTP calls do not block the event
loop; the resolver, called on every request, runs inline). `AccessDenied`
(any `SAMLError`) is the refusal it names. Any other exception is the app's
failure, not the user's: its traceback goes to the operator's log and the
browser gets a 503 "try again" (the cause is usually transient: a database or
directory that is down), never a 500 page.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from .errors import SAMLError


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Run a hook: awaited when async; a sync one runs in a worker thread."""
    # type(hook).__call__: an object whose __call__ is async.
    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(type(hook).__call__):
        return await hook(*args)
    result = await asyncio.to_thread(hook, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_hook(
    hook: Callable[..., Any],
    *args: Any,
    failure: SAMLError,
    log: logging.Logger,
    failed: tuple[Any, ...],
) -> Any:
    """`call_hook` under the failure policy: a `SAMLError` is raised as it is; any other
    exception is logged (`log.exception(*failed)`, with its traceback) and `failure`
    raised in its place."""
    try:
        return await call_hook(hook, *args)
    except SAMLError:
        raise
    except Exception:
        log.exception(*failed)
        raise failure from None


def run_sync_hook(
    hook: Callable[..., Any],
    *args: Any,
    failure: SAMLError,
    log: logging.Logger,
    failed: tuple[Any, ...],
) -> Any:
    """`run_hook` for a hook called inline, on every request (the resolver)."""
    try:
        return hook(*args)
    except SAMLError:
        raise
    except Exception:
        log.exception(*failed)
        raise failure from None
