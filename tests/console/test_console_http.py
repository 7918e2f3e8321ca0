"""The console's security properties over plain HTTP (no browser): headers on every HTML
page, /docs without another host, sign-in refusals, the OIDC callback's state and PKCE,
sealed session cookies, CSRF."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.responses import HTMLResponse

from agent.sim.swtpm import Manufacturer
from attestor.console import session as sessions
from attestor.console import web
from tests.harness import LiveAttestor
from tests.oidc_issuer import OidcIssuer

pytestmark = [pytest.mark.e2e]
BOTH_DATABASES = True  # the console's queries on SQLite and PostgreSQL


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    found = OidcIssuer(roles=("auditor",))
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def oidc_attestor(tmp_path: Path, manufacturer: Manufacturer,
                  issuer: OidcIssuer) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], **issuer.settings()).start()
    try:
        yield live
    finally:
        live.stop()


def signed_in(attestor: LiveAttestor, role: str) -> httpx.Client:
    client = httpx.Client(base_url=attestor.url)
    response = client.post("/ui/login", data={"token": attestor.token(role)})
    assert response.status_code == 200 and "edgeproof_console" in client.cookies
    return client


def test_every_html_page_carries_the_policy_and_docs_name_no_other_host(
        attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "auditor")
    for path in ("/ui", "/ui/devices", "/ui/audit", "/ui/gate", "/ui/certificates",
                 "/ui/devices/unknown-device", "/ui/login", "/docs"):
        response = client.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, path
        assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/ui/devices/unknown-device").status_code == 404
    assert "content-security-policy" not in client.get("/healthz").headers  # JSON: untouched
    docs = httpx.get(attestor.url + "/docs").text
    assert "<script>" not in docs.replace('<script src="', "")  # nothing inline
    assert not re.search(r"https?://", docs)
    assert all(link.startswith("/") for link in re.findall(r'(?:src|href)="([^"]+)"', docs))
    start = httpx.get(attestor.url + "/docs/start.js")
    assert start.status_code == 200 and not re.search(r"https?://", start.text)
    schemes = httpx.get(attestor.url + "/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearerToken"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "X-Api-Key"
    assert "deviceSignature" in schemes


def test_sign_in_refuses_other_roles_bad_tokens_and_other_origins(
        attestor: LiveAttestor) -> None:
    client = httpx.Client(base_url=attestor.url)
    assert client.get("/ui").headers["location"] == "/ui/login"
    gatekeeper = client.post("/ui/login", data={"token": attestor.token("gatekeeper")})
    assert gatekeeper.status_code == 403 and "no console access" in gatekeeper.text
    assert client.post("/ui/login", data={"token": "not.a.jwt"}).status_code == 401
    foreign = client.post("/ui/login", data={"token": attestor.token("admin")},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "edgeproof_console" not in client.cookies
    logins = httpx.get(attestor.url + "/v1/audit", params={"action": "console.login"},
                       headers=attestor.headers("auditor")).json()["items"]
    assert logins == []


def test_a_sealed_session_cannot_be_edited(attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "auditor")
    body, _, mac = client.cookies["edgeproof_console"].partition(".")
    claims = sessions.unseal(web.session_key(attestor.settings), f"{body}.{mac}")
    assert claims is not None and claims["role"] == "auditor"
    forged = sessions._b64(sessions.json.dumps({**claims, "role": "admin"}).encode())
    client.cookies.set("edgeproof_console", f"{forged}.{mac}", path="/ui")
    assert client.get("/ui").headers["location"] == "/ui/login"


def test_sign_out_needs_the_csrf_token(attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "admin")
    assert client.post("/ui/logout", data={"csrf": "wrong"}).headers["location"] == "/ui"
    assert client.get("/ui").status_code == 200
    page = client.get("/ui").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    out = client.post("/ui/logout", data={"csrf": token.group(1)})
    assert out.headers["location"] == "/ui/login"
    assert client.get("/ui").headers["location"] == "/ui/login"


def test_oidc_sign_in_checks_state_and_pkce(oidc_attestor: LiveAttestor,
                                           issuer: OidcIssuer) -> None:
    client = httpx.Client(base_url=oidc_attestor.url)
    start = client.get("/ui/login/oidc")
    assert start.status_code == 303
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["location"]).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    back = httpx.get(start.headers["location"])  # the issuer signs the user in
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back.headers["location"]).query))
    wrong_state = client.get("/ui/login/callback", params={"code": code["code"],
                                                          "state": "forged"})
    assert wrong_state.status_code == 401 and "edgeproof_console" not in client.cookies
    done = client.get("/ui/login/callback", params=code)
    assert done.status_code == 200 and "edgeproof_console" in client.cookies
    assert "alice@example.test" in client.get("/ui").text
    # the issuer redeemed the code only with the verifier of the challenge (PKCE); the
    # pending sign-in is spent, so a replayed callback is refused before any exchange
    assert issuer.redeemed == 1 and issuer.refused == []
    again = client.get("/ui/login/callback", params=code)
    assert again.status_code == 401 and issuer.redeemed == 1
    logins = httpx.get(oidc_attestor.url + "/v1/audit", params={"action": "console.login"},
                       headers=oidc_attestor.headers("auditor")).json()["items"]
    assert [(e["actor"], e["details"]["via"]) for e in logins] == [
        ("token:alice@example.test", "oidc")]


def test_the_cookie_is_secure_outside_development() -> None:
    for dev, secure in ((False, True), (True, False)):
        settings = SimpleNamespace(dev=dev, console=SimpleNamespace(max_seconds=60))
        app = SimpleNamespace(state=SimpleNamespace(
            services=SimpleNamespace(settings=settings), console_key=b"k" * 32))
        response = HTMLResponse("")
        found = sessions.ConsoleSession("token", "someone", "auditor", "token", "c", 0.0, 0.0)
        web.set_session(SimpleNamespace(app=app), response, found)  # type: ignore[arg-type]
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ("Secure" in cookie) is secure
