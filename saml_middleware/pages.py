"""The few HTML pages the middleware itself answers with.

Everything interpolated is escaped. The auto-post form is the HTTP-POST
binding: the browser carries a SAML message to the other party's endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}h1{font-size:1.4rem}code{background:#f3f3f3;padding:0 .2rem}"
)


def page(title: str, body_html: str) -> bytes:
    """A minimal standalone HTML page; `body_html` must already be escaped."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body_html}</body></html>"
    ).encode()


def error_page(status: int, reason: str, code: str) -> bytes:
    """The page a refused request gets: a short reason, and the code for the operator."""
    title = "Sign-in failed" if status in (400, 403, 409, 413) else "Sign-in unavailable"
    return page(
        title,
        f"<h1>{escape(title)}</h1><p>{escape(reason)}</p>"
        f"<p><small>Error code: <code>{escape(code)}</code></small></p>",
    )


def auto_post_form(action: str, fields: Mapping[str, str]) -> bytes:
    """An HTML form that posts `fields` to `action` by itself (JavaScript) or by a click."""
    inputs = "".join(
        f"<input type=hidden name='{escape(name)}' value='{escape(value)}'>"
        for name, value in fields.items()
        if value is not None
    )
    return page(
        "Continue sign-in",
        f"<form method=post action='{escape(action)}'>{inputs}"
        "<noscript><p>JavaScript is off: press the button to continue.</p>"
        "<button type=submit>Continue</button></noscript></form>"
        "<script>document.forms[0].submit()</script>",
    )


def logout_page(action: str) -> bytes:
    """The page `GET /logout/` answers: a button that POSTs the sign-out.

    Signing out changes state, so it takes a POST: a link, an image or a
    prefetch cannot sign anyone out. Never auto-submitted (a framing page could
    otherwise do it); the engine forbids framing it.
    """
    return page(
        "Sign out",
        "<h1>Sign out</h1><p>Sign out of this site?</p>"
        f"<form method=post action='{escape(action)}'><button type=submit>Sign out</button></form>",
    )
