"""The development IdP's web pages, as a Starlette app.

NOT FOR PRODUCTION: there are no passwords; the sign-in page offers one button
per test user. Mount the app at the path of `DevIdP.base_url`
(`Mount("/idp", app=create_app(idp))`) or serve it alone when `base_url` has no
path; every link and form action is built from `base_url`, so they stay
correct behind either.

Routes: `GET /metadata`; `GET /sso/redirect` and `POST /sso/post` (an
AuthnRequest in, the sign-in page out); `POST /sso/continue` (the chosen user:
an auto-posting form carries the SAMLResponse to the SP's ACS); `GET /` (My
Apps: IdP-initiated sign-in, like Entra's My Apps) with `POST /initiate`;
`GET|POST /slo` (Single Logout: an SP's LogoutRequest is answered with a
signed LogoutResponse sent back to the SP; an SP's LogoutResponse to an
IdP-initiated logout is shown; with neither, a plain "signed out" page);
`POST /logout-everywhere` (the "Sign out everywhere" button of My Apps: a
signed LogoutRequest for the chosen user goes to the SP's Single Logout
Service); `GET /apps/new` with `POST /apps` ("Add an application": trust an SP
from its metadata URL on this machine, or from pasted metadata XML, like
registering an enterprise application in Entra). Bad input gets a 400 page
with a short reason, never a stack trace.

An IdP on a loopback address also trusts an app on this machine at its first
AuthnRequest, without being added (see `DevIdP(trust_local_sps=...)`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .idp import AuthnRequestInfo, DevIdP, DevIdPError, Outbound

# A user has this long between the sign-in page and choosing a user.
PENDING_TTL_SECONDS = 600
MAX_PENDING = 1000
MAX_FORM_BYTES = 256 * 1024
MAX_RELAY_STATE_CHARS = 2048
MAX_URL_CHARS = 2048

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:600;text-align:center}
main{max-width:52em;margin:1.5em auto;padding:0 1em}
.card{background:#fff;border:1px solid #d6d9de;border-radius:8px;padding:1em;margin:.8em 0}
.muted{color:#5b6470;font-size:.9em}
code{word-break:break-all}
button{font-size:1em;padding:.45em 1em;cursor:pointer}
label{display:block;margin:.6em 0 .2em}
input[type=url],textarea{width:100%;box-sizing:border-box;font:inherit}
"""
BANNER = "Development IdP \u2014 not for production"


@dataclass(frozen=True)
class _Pending:
    info: AuthnRequestInfo
    relay_state: str | None
    expires: float


class _PendingRequests:
    """AuthnRequests waiting for the user's choice, by random token, with expiry."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, info: AuthnRequestInfo, relay_state: str | None) -> str:
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, p in self._items.items() if p.expires <= now]:
                del self._items[key]
            while len(self._items) >= MAX_PENDING:
                self._items.popitem(last=False)
            self._items[token] = _Pending(info, relay_state, now + PENDING_TTL_SECONDS)
        return token

    def take(self, token: str) -> _Pending | None:
        with self._lock:
            pending = self._items.pop(token, None)
        if pending is None or pending.expires <= time.monotonic():
            return None
        return pending


def _page(title: str, body: str, *, status: int = 200, script: str = "") -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)} \u2014 {BANNER}</title>'
        f"<style>{_CSS}</style></head><body>"
        f'<div class="banner" role="alert">{BANNER}</div>'
        f"<main>{body}</main>{script}</body></html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=_NO_STORE)


def _error_page(reason: str, status: int = 400) -> HTMLResponse:
    body = (
        "<h1>The development IdP cannot continue</h1>"
        f"<p>{escape(reason)}</p>"
        '<p class="muted">Start again from the application.</p>'
    )
    return _page("Error", body, status=status)


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def _auto_post(acs_url: str, saml_response: str, relay_state: str | None) -> HTMLResponse:
    """The HTTP-POST binding: a form the browser submits to the SP's ACS by itself."""
    fields = _hidden("SAMLResponse", saml_response)
    if relay_state is not None:
        fields += _hidden("RelayState", relay_state)
    body = (
        f'<form method="post" action="{escape(acs_url)}">{fields}'
        f"<p>Signing you in to <code>{escape(acs_url)}</code>\u2026</p>"
        "<noscript><p>JavaScript is off: press Continue.</p>"
        '<button type="submit">Continue</button></noscript></form>'
    )
    return _page("Signing in", body, script="<script>document.forms[0].submit()</script>")


def _send(outbound: Outbound, what: str) -> Response:
    """A logout message on its way to the SP: a redirect, or an auto-posted form."""
    if outbound.form is None:
        return Response(status_code=303, headers={"Location": outbound.url, **_NO_STORE})
    fields = "".join(_hidden(name, value) for name, value in outbound.form.items())
    body = (
        f'<form method="post" action="{escape(outbound.url)}">{fields}'
        f"<p>{escape(what)} <code>{escape(outbound.url)}</code>\u2026</p>"
        "<noscript><p>JavaScript is off: press Continue.</p>"
        '<button type="submit">Continue</button></noscript></form>'
    )
    return _page(what, body, script="<script>document.forms[0].submit()</script>")


def _user_summary(idp: DevIdP, key: str) -> str:
    user = idp.users[key]
    email = escape(user.email) if user.email else "<em>no email claim</em>"
    roles = escape(", ".join(user.roles)) if user.roles else "<em>no role claim</em>"
    return (
        f'<span class="muted">NameID {escape(user.name_id)} \u00b7 email {email}'
        f" \u00b7 roles {roles}</span>"
    )


async def _form(request: Request) -> FormData:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise DevIdPError("the form is too large")
    return await request.form(max_files=0, max_fields=50, max_part_size=MAX_FORM_BYTES)


def _field(data: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise DevIdPError(f"{name} must be a text field")
    if required and not value:
        raise DevIdPError(f"{name} is missing")
    return value


def _relay_state(data: Mapping[str, Any]) -> str | None:
    relay_state = _field(data, "RelayState", required=False)
    if relay_state is not None and len(relay_state) > MAX_RELAY_STATE_CHARS:
        raise DevIdPError("RelayState is too long")
    return relay_state


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(request: Request, base_url: str) -> bool:
    """A form post from the IdP's own pages (or from a client that sends no Origin)."""
    origin = request.headers.get("origin")
    return origin is None or origin.lower() == _origin_of(base_url)


def _add_app_page(base: str, trusts_local: bool) -> HTMLResponse:
    local = (
        "<p>Apps on this machine need no adding: this IdP reads an app's metadata from"
        " its entity ID URL at the app's first sign-in request.</p>"
        if trusts_local
        else ""
    )
    body = (
        "<h1>Add an application</h1>"
        "<p>Trust a SAML service provider, as an admin registers an enterprise application"
        " in Microsoft Entra ID.</p>"
        f"{local}"
        f'<form class="card" method="post" action="{escape(base)}/apps">'
        '<label for="metadata_url">SP metadata URL (on this machine: 127.0.0.1, ::1 or'
        " localhost)</label>"
        '<input type="url" id="metadata_url" name="metadata_url"'
        ' placeholder="http://127.0.0.1:8000/saml/metadata/acme/">'
        '<label for="metadata_xml">or the SP metadata XML</label>'
        '<textarea id="metadata_xml" name="metadata_xml" rows="6"></textarea>'
        '<p><button type="submit">Add application</button></p></form>'
        f'<p><a href="{escape(base)}/">My Apps</a></p>'
    )
    return _page("Add an application", body)


def create_app(idp: DevIdP) -> Starlette:
    """The IdP's pages for `idp`; mount it at the path of `idp.base_url`."""
    pending = _PendingRequests()
    base = idp.base_url

    async def metadata(request: Request) -> Response:
        xml = await run_in_threadpool(idp.metadata_xml)
        return Response(xml, media_type="application/samlmetadata+xml")

    async def sign_in_page(
        binding: str, data: Mapping[str, Any], relay_state: str | None
    ) -> HTMLResponse:
        saml_request = _field(data, "SAMLRequest") or ""
        info = await run_in_threadpool(
            lambda: idp.parse_authn_request(
                saml_request,
                binding,
                relay_state=relay_state,
                sig_alg=_field(data, "SigAlg", required=False),
                signature=_field(data, "Signature", required=False),
            )
        )
        token = pending.put(info, relay_state)
        buttons = "".join(
            f'<form class="card" method="post" action="{escape(base)}/sso/continue">'
            f"{_hidden('token', token)}{_hidden('user', key)}"
            f'<button type="submit">Sign in as {escape(user.display)}</button><br>'
            f"{_user_summary(idp, key)}</form>"
            for key, user in idp.users.items()
        )
        body = (
            "<h1>Sign in</h1>"
            f"<p>to <code>{escape(info.sp_entity_id)}</code></p>"
            f'<p class="muted">AuthnRequest <code>{escape(info.request_id)}</code>'
            f" ({'signed' if info.signed else 'not signed'}); the answer goes to"
            f" <code>{escape(info.acs_url)}</code>.</p>"
            f"{buttons}"
        )
        return _page("Sign in", body)

    async def sso_redirect(request: Request) -> Response:
        query = request.query_params
        return await sign_in_page("redirect", query, _relay_state(query))

    async def sso_post(request: Request) -> Response:
        data = await _form(request)
        return await sign_in_page("post", data, _relay_state(data))

    async def sso_continue(request: Request) -> Response:
        data = await _form(request)
        token = _field(data, "token") or ""
        user_key = _field(data, "user") or ""
        if user_key not in idp.users:
            raise DevIdPError("unknown user")
        waiting = pending.take(token)
        if waiting is None:
            raise DevIdPError("this sign-in request has expired or was already used")
        info = waiting.info
        saml_response = await run_in_threadpool(
            lambda: idp.create_response(
                user_key,
                sp_entity_id=info.sp_entity_id,
                in_response_to=info.request_id,
                acs_url=info.acs_url,
            )
        )
        return _auto_post(info.acs_url, saml_response, waiting.relay_state)

    async def my_apps(request: Request) -> Response:
        sps = await run_in_threadpool(idp.service_providers)
        options = "".join(
            f'<option value="{escape(key)}">{escape(user.display)}</option>'
            for key, user in idp.users.items()
        )
        tiles = "".join(
            f'<form class="card" method="post" action="{escape(base)}/initiate">'
            f"<h2><code>{escape(entity_id)}</code></h2>"
            f'<p class="muted">ACS <code>{escape(acs_url)}</code></p>'
            f"{_hidden('sp', entity_id)}"
            f'<label>User <select name="user">{options}</select></label> '
            '<label>RelayState <input name="RelayState" placeholder="optional"></label> '
            '<button type="submit">Open</button> '
            f'<button type="submit" formaction="{escape(base)}/logout-everywhere">'
            "Sign out everywhere</button></form>"
            for entity_id, acs_url in sps
        )
        if not tiles:
            tiles = "<p>No service providers are registered with this IdP yet.</p>"
        body = (
            '<h1>My Apps</h1><p class="muted">IdP-initiated sign-in: pick a user and open'
            f' an app. IdP metadata: <a href="{escape(base)}/metadata">'
            f"<code>{escape(idp.entity_id)}</code></a></p>{tiles}"
            f'<p><a href="{escape(base)}/apps/new">Add an application</a></p>'
        )
        return _page("My Apps", body)

    async def add_app_form(request: Request) -> Response:
        return _add_app_page(base, idp.trust_local_sps)

    async def add_app(request: Request) -> Response:
        if not _same_origin(request, base):
            raise DevIdPError("this form must be sent from the IdP's own page")
        data = await _form(request)
        url = (_field(data, "metadata_url", required=False) or "").strip()
        xml = (_field(data, "metadata_xml", required=False) or "").strip()
        if bool(url) == bool(xml):
            raise DevIdPError("give either the SP metadata URL or the SP metadata XML")
        if len(url) > MAX_URL_CHARS:
            raise DevIdPError("the metadata URL is too long")
        if url:
            await run_in_threadpool(idp.add_service_provider_url, url)
        else:
            await run_in_threadpool(idp.add_service_provider, xml)
        return Response(status_code=303, headers={"Location": f"{base}/", **_NO_STORE})

    async def initiate(request: Request) -> Response:
        data = await _form(request)
        sp_entity_id = _field(data, "sp") or ""
        user_key = _field(data, "user") or ""
        relay_state = _relay_state(data) or None
        acs = dict(await run_in_threadpool(idp.service_providers)).get(sp_entity_id)
        if acs is None:
            raise DevIdPError("unknown service provider")
        saml_response = await run_in_threadpool(
            lambda: idp.create_response(
                user_key, sp_entity_id=sp_entity_id, in_response_to=None, acs_url=acs
            )
        )
        return _auto_post(acs, saml_response, relay_state)

    async def slo(request: Request) -> Response:
        if request.method == "GET":
            raw_query = request.scope.get("query_string", b"").decode("latin-1")
            data: Mapping[str, Any] = request.query_params
            binding, saml_request, saml_response = "redirect", None, None
        else:
            data = await _form(request)
            raw_query = None
            binding = "post"
            saml_request = _field(data, "SAMLRequest", required=False)
            saml_response = _field(data, "SAMLResponse", required=False)
        relay_state = _relay_state(data)
        if "SAMLRequest" in data:
            info = await run_in_threadpool(
                lambda: idp.parse_logout_request(
                    binding, raw_query=raw_query, saml_request=saml_request
                )
            )
            outbound = await run_in_threadpool(
                lambda: idp.create_logout_response(info, relay_state=relay_state, binding=binding)
            )
            return _send(outbound, "Signing you out of")
        if "SAMLResponse" in data:
            answer = await run_in_threadpool(
                lambda: idp.parse_logout_response(
                    binding, raw_query=raw_query, saml_response=saml_response
                )
            )
            body = (
                "<h1>Signed out everywhere</h1>"
                f"<p><code>{escape(answer.sp_entity_id)}</code> answered"
                f" <strong>{escape(answer.status)}</strong>"
                f" ({'signed' if answer.signed else 'not signed'}).</p>"
                f'<p><a href="{escape(base)}/">My Apps</a></p>'
            )
            return _page("Signed out everywhere", body)
        body = (
            "<h1>Signed out</h1><p>You are signed out of the development IdP.</p>"
            '<p class="muted">It keeps no sessions. To sign a user out of an application,'
            " use <em>Sign out everywhere</em> on My Apps.</p>"
            f'<p><a href="{escape(base)}/">My Apps</a></p>'
        )
        return _page("Signed out", body)

    async def logout_everywhere(request: Request) -> Response:
        data = await _form(request)
        sp_entity_id = _field(data, "sp") or ""
        user = idp.users.get(_field(data, "user") or "")
        if user is None:
            raise DevIdPError("unknown user")
        relay_state = _relay_state(data) or None
        _, outbound = await run_in_threadpool(
            lambda: idp.create_logout_request(sp_entity_id, user.name_id, relay_state=relay_state)
        )
        return _send(outbound, "Signing you out of")

    async def refused(request: Request, exc: Exception) -> Response:
        return _error_page(str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        reason = exc.detail if isinstance(exc, HTTPException) else "bad request"
        return _error_page(str(reason), status)

    routes = [
        Route("/", my_apps, methods=["GET"]),
        Route("/metadata", metadata, methods=["GET"]),
        Route("/sso/redirect", sso_redirect, methods=["GET"]),
        Route("/sso/post", sso_post, methods=["POST"]),
        Route("/sso/continue", sso_continue, methods=["POST"]),
        Route("/initiate", initiate, methods=["POST"]),
        Route("/slo", slo, methods=["GET", "POST"]),
        Route("/logout-everywhere", logout_everywhere, methods=["POST"]),
        Route("/apps/new", add_app_form, methods=["GET"]),
        Route("/apps", add_app, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={DevIdPError: refused, HTTPException: http_error},
    )
