"""`store=` and `sessions=`: an app's own store and session backend, passed to either adapter.

Each is used for what it is for: the replay cache and the used-request marks
go to the app's store, the session the sign-in opens lives in (and ends in)
the app's session backend.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from saml_middleware import SAMLMiddleware, SAMLWSGIMiddleware
from saml_middleware.config import SessionSettings, load_settings
from saml_middleware.devidp import DevIdP
from saml_middleware.identity import SAMLUser
from saml_middleware.sessions import Session, StoreSessions
from saml_middleware.stores import MemoryStore
from tests.adapter_apps import client_for, login
from tests.helpers import settings_for
from tests.test_adapters import _me, _plain_wsgi, json_get


class RecordingStore(MemoryStore):
    """The app's store: a memory store that remembers the keys it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []
        self.written: list[str] = []

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        self.written.append(key)
        await super().put(key, value, ttl)

    async def add_if_absent(self, key: str, ttl: float) -> bool:
        self.marked.append(key)
        return await super().add_if_absent(key, ttl)


class DictSessions:
    """The app's session backend: sessions in a dict, the cookie names one."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, SAMLUser] = {}

    async def load(self, cookie: str | None) -> Session | None:
        user = self.sessions.get(cookie or "")
        return None if user is None else Session(user, cookie or "", 0.0, False)

    async def start(self, user: SAMLUser) -> str:
        session_id = secrets.token_urlsafe(16)
        self.sessions[session_id] = user
        return f"{self.settings.cookie_name}={session_id}; Path=/; HttpOnly"

    async def refresh(self, session: Session) -> str | None:
        return None

    async def end(self, session: Session) -> None:
        self.sessions.pop(session.session_id, None)

    async def revoke(
        self,
        issuer: str,
        name_id: str,
        session_indexes: Collection[str],
        *,
        matches: Callable[[SAMLUser], bool] | None = None,
    ) -> int:
        return 0

    def clear_header(self) -> str:
        return f"{self.settings.cookie_name}=; Path=/; Max-Age=0"


def _app(kind: str, settings: Any, **backends: Any) -> Any:
    if kind == "asgi":
        return SAMLMiddleware(Starlette(routes=[Route("/me", _me)]), settings=settings, **backends)
    return SAMLWSGIMiddleware(_plain_wsgi, settings=settings, **backends)


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_apps_store_keeps_the_replay_cache_and_request_marks(kind: str, devidp: DevIdP):
    store = RecordingStore()
    app = _app(kind, settings_for(devidp), store=store)
    devidp.add_service_provider(app.engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        assert login(client, devidp).status_code == 303
        assert json_get(client, "/me").json()["name_id"] == "B.Simon@contoso.com"
    assert [key.split(":")[0] for key in store.marked] == ["assertion", "request-used"]


def test_the_apps_session_backend_holds_the_session(kind: str, devidp: DevIdP):
    settings = load_settings(settings_for(devidp))
    sessions = DictSessions(settings.session)
    app = _app(kind, settings, sessions=sessions)
    devidp.add_service_provider(app.engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        assert login(client, devidp).status_code == 303
        (user,) = sessions.sessions.values()
        assert user.name_id == "B.Simon@contoso.com"
        assert json_get(client, "/me").json()["name_id"] == user.name_id
        sessions.sessions.clear()  # revoked by the app: the cookie means nothing now
        assert json_get(client, "/me").status_code == 401


def test_the_documented_store_sessions_example_uses_the_given_store(kind: str, devidp: DevIdP):
    settings = load_settings(settings_for(devidp))
    own = RecordingStore()
    sessions = StoreSessions(settings.session, settings.secret_key, own)
    app = _app(kind, settings, sessions=sessions)
    devidp.add_service_provider(app.engine.sp_metadata_xml())
    with client_for(app, kind) as client:
        assert login(client, devidp).status_code == 303
        assert [key.split(":")[0] for key in own.written] == ["session"]
        assert json_get(client, "/me").json()["name_id"] == "B.Simon@contoso.com"
    assert own.marked == []  # the replay cache stays in the settings' store
