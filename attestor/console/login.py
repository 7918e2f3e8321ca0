"""Signing in to the console: an operator token exchanged once for a session cookie, or
OIDC (authorization code with PKCE, RFC 7636) when ``[console]`` names a client; and
signing out. Each sign-in is audited (``console.login``); a refused one is counted and
audited like any refused credential."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse
from typing import Annotated

import httpx
import jwt
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from attestor import audit
from attestor.api import refusals
from attestor.auth import Principal
from attestor.console import web
from attestor.console.session import (
    CONSOLE_ROLES,
    OIDC_COOKIE,
    ConsoleSession,
    check_csrf,
    seal,
    unseal,
)
from identity.errors import AuthError, AuthForbidden, AuthInvalid

router = APIRouter(prefix="/ui", include_in_schema=False)
OIDC_STATE_SECONDS = 600
OAUTH_ERROR = re.compile(r"[a-z0-9_]{1,64}")


def _expiry(token: str) -> float | None:
    """The ``exp`` of a token the attestor has just verified (so its claims are genuine)."""
    try:
        value = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(value) if isinstance(value, int | float) else None


def _signed_in(request: Request, principal: Principal, via: str,
               until: float | None = None) -> Response:
    svc = web.services(request)
    if principal.role not in CONSOLE_ROLES:
        raise AuthForbidden(f"role {principal.role} has no console access (admin or auditor)")
    found = ConsoleSession.start(principal, via, svc.clock(), until)
    with svc.session() as session, session.begin():
        audit.append(session, at=svc.clock(), actor=principal.actor, action="console.login",
                     outcome="success", subject="console",
                     details={"via": via, "role": principal.role, **refusals.facts(request)})
    # A page, not a redirect: after the identity provider's cross-site redirect, a
    # navigation our own page starts carries the SameSite=Strict cookie.
    page = web.TEMPLATES.get_template("signed_in.html").render(user=None, path="/ui/login")
    response = HTMLResponse(page, headers={"Cache-Control": "no-store"})
    web.set_session(request, response, found)
    response.delete_cookie(OIDC_COOKIE, path="/ui")
    return response


def _refused(request: Request, exc: AuthError, status: int = 401) -> Response:
    failed = refusals.audit_refusal(request, exc)
    message = "the attestor cannot record this now" if failed else exc.detail
    return web.render(request, None, "login.html", http_status=503 if failed else status,
                      error=message, oidc=web.services(request).settings.console.oidc)


def _same_origin(request: Request) -> bool:
    """A browser's form post names its page's origin: it must be this attestor (by host:
    behind a proxy that terminates TLS the scheme seen here is not the browser's)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = web.services(request).settings.console.public_url
    return origin == (public or "").rstrip("/") or \
        urllib.parse.urlsplit(origin).netloc == request.headers.get("host")


@router.get("/login")
def login_page(request: Request) -> Response:
    return web.render(request, None, "login.html", error=None,
                      oidc=web.services(request).settings.console.oidc)


@router.post("/login")
def login_with_token(request: Request, token: Annotated[str, Form(max_length=8192)]) -> Response:
    svc = web.services(request)
    refusals.throttle(request, svc)
    if not _same_origin(request):
        return _refused(request, AuthInvalid("sign-in from another origin"), 403)
    try:
        principal = svc.verify_token(token.strip())
        # A pasted token's lifetime bounds the session it opens: a five-minute token
        # is not an eight-hour session. (An OIDC sign-in lasts max_seconds: access
        # tokens live minutes and the console holds no refresh token.)
        return _signed_in(request, principal, "token", _expiry(token.strip()))
    except AuthError as exc:
        return _refused(request, exc, 403 if isinstance(exc, AuthForbidden) else 401)


def _redirect_uri(request: Request) -> str:
    base = web.services(request).settings.console.public_url or str(request.base_url)
    return base.rstrip("/") + "/ui/login/callback"


@router.get("/login/oidc")
def oidc_start(request: Request) -> Response:
    console = web.services(request).settings.console
    if not console.oidc:
        return RedirectResponse("/ui/login", status_code=303)
    state, verifier, nonce = (secrets.token_urlsafe(24) for _ in range(3))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": console.oidc_client_id,
        "redirect_uri": _redirect_uri(request), "scope": console.oidc_scope,
        "state": state, "nonce": nonce, "code_challenge_method": "S256",
        "code_challenge": challenge.decode().rstrip("=")})
    response = RedirectResponse(f"{console.oidc_authorization_url}?{query}", status_code=303)
    now = web.services(request).clock().timestamp()
    # Lax, not Strict: it must come back with the identity provider's redirect.
    response.set_cookie(OIDC_COOKIE, seal(web._key(request), {
        "state": state, "verifier": verifier, "at": now}), httponly=True,
        secure=not web.services(request).settings.dev, samesite="lax", path="/ui",
        max_age=OIDC_STATE_SECONDS)
    return response


@router.get("/login/callback")
def oidc_callback(request: Request, code: Annotated[str, Query(max_length=4096)] = "",
                  state: Annotated[str, Query(max_length=256)] = "",
                  error: Annotated[str, Query(max_length=256)] = "") -> Response:
    svc = web.services(request)
    console = svc.settings.console
    refusals.throttle(request, svc)
    pending = unseal(web._key(request), request.cookies.get(OIDC_COOKIE, ""))
    now = svc.clock().timestamp()
    started = pending.get("at") if pending else None
    if error or pending is None or not code or not console.oidc \
            or not secrets.compare_digest(str(pending.get("state", "")).encode(),
                                          state.encode()) \
            or not isinstance(started, int | float) or now - started > OIDC_STATE_SECONDS:
        # An OAuth error code (RFC 6749 §4.1.2.1: access_denied, …); anything else a
        # link could carry is not echoed, so the page cannot be made to say it.
        said = f": {error}" if OAUTH_ERROR.fullmatch(error) else ""
        return _refused(request, AuthInvalid(
            f"the identity provider's answer is not for this sign-in{said}"))
    try:
        answer = httpx.post(str(console.oidc_token_url), timeout=10.0, data={
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": _redirect_uri(request), "client_id": console.oidc_client_id,
            "code_verifier": str(pending["verifier"])})
        answer.raise_for_status()
        token = str(answer.json().get("access_token", ""))
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return _refused(request, AuthInvalid(f"the token endpoint refused the code: {exc}"))
    try:
        return _signed_in(request, svc.verify_token(token), "oidc")
    except AuthError as exc:
        return _refused(request, exc, 403 if isinstance(exc, AuthForbidden) else 401)


@router.post("/logout")
def logout(request: Request, user: web.User,
           csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    if not check_csrf(user, csrf):
        return RedirectResponse("/ui", status_code=303)
    response = RedirectResponse("/ui/login", status_code=303)
    web.clear_session(response)
    return response
