"""The console's web plumbing: templates (autoescaped), the session dependency, the
security headers every HTML response carries, and rendering with a refreshed cookie."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attestor.console.session import COOKIE, ConsoleSession, open_session, session_key
from attestor.services.context import Services

HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
HTML_HEADERS = [(b"content-security-policy", CSP.encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"),
                (b"x-frame-options", b"DENY")]


def is_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The response's (first) Content-Type is HTML: it gets :data:`HTML_HEADERS`."""
    kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return kind.startswith(b"text/html")


class SecurityHeaders:
    """Adds the Content-Security-Policy (no inline script or style) and its companions
    to every HTML response, whichever route made it (pure ASGI: the device API's JSON
    responses pass untouched and unslowed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if is_html(headers):
                    message["headers"] = [*headers, *HTML_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19]
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _value(value: object) -> str:
    """An audit detail as text: lists joined, mappings as JSON, nothing as a dash."""
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["when"] = _when
TEMPLATES.filters["value"] = _value


class LoginRequired(Exception):  # noqa: N818 - a control-flow signal, not an error
    """No valid session: the handler sends the browser to the sign-in page."""


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _key(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "console_key", None)
    if key is None:
        key = request.app.state.console_key = session_key(services(request).settings)
    return key


def current(request: Request) -> ConsoleSession:
    svc = services(request)
    console = svc.settings.console
    found = open_session(_key(request), request.cookies.get(COOKIE), svc.clock(),
                         console.idle_seconds, console.max_seconds)
    if found is None:
        raise LoginRequired()
    return found.touched(svc.clock())


User = Annotated[ConsoleSession, Depends(current)]


def set_session(request: Request, response: Response, found: ConsoleSession) -> None:
    svc = services(request)
    response.set_cookie(COOKIE, found.seal(_key(request)), httponly=True,
                        secure=not svc.settings.dev, samesite="strict", path="/ui",
                        max_age=svc.settings.console.max_seconds)


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


def render(request: Request, user: ConsoleSession | None, template: str,
           http_status: int = 200, **context: Any) -> HTMLResponse:
    page = TEMPLATES.get_template(template).render(user=user, path=request.url.path,
                                                   **context)
    response = HTMLResponse(page, status_code=http_status, headers={"Cache-Control": "no-store"})
    if user is not None:
        set_session(request, response, user)
    return response


def to_login(request: Request, exc: Exception) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    if request.cookies.get(COOKIE):
        clear_session(response)
    return response
