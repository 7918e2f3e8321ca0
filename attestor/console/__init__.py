"""The web console at ``/ui``: server-rendered pages for the security team (docs/console.md)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    """Mount the console (when enabled) and its static files; its pages send a browser
    without a session to the sign-in page."""
    from attestor.console import login, pages, web

    app.add_middleware(web.SecurityHeaders)
    if not app.state.services.settings.console.enabled:
        return
    app.mount("/ui/static", StaticFiles(directory=web.HERE / "static"), name="console-static")
    app.include_router(login.router)
    app.include_router(pages.router)
    app.add_exception_handler(web.LoginRequired, web.to_login)
