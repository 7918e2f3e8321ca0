"""Attacks on the console over plain HTTP (review of issue 16): injection-like filter
input on every page, markup in request-controlled audit fields and query parameters,
the gate page's decision filter, sessions outliving their token, and the OIDC pending
cookie used as a session (and the reverse)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from agent.sim.swtpm import Manufacturer
from attestor import audit
from attestor.console import session as sessions
from attestor.console import web
from tests.harness import LiveAttestor
from tests.oidc_issuer import OidcIssuer

pytestmark = [pytest.mark.e2e]
BOTH_DATABASES = True  # a NUL byte is an error on PostgreSQL, a pattern end on SQLite
MARK = '"><script>window.pwned=1</script><img src=x onerror=alert(1)>'
PAGES = ("/ui", "/ui/devices", "/ui/audit", "/ui/gate", "/ui/certificates")


def signed_in(attestor: LiveAttestor, role: str, **token: dt.timedelta) -> httpx.Client:
    client = httpx.Client(base_url=attestor.url)
    response = client.post("/ui/login", data={"token": attestor.token(role, **token)})
    assert response.status_code == 200 and "edgeproof_console" in client.cookies
    return client


@pytest.mark.parametrize("path, name", [
    ("/ui/audit", "actor"), ("/ui/audit", "device_id"), ("/ui/audit", "action"),
    ("/ui/audit", "outcome"), ("/ui/audit", "reason"), ("/ui/devices", "q"),
    ("/ui/devices", "reason"), ("/ui/devices", "class"), ("/ui/devices", "after"),
    ("/ui/gate", "device_id"), ("/ui/certificates", "device_id"),
    ("/ui/certificates", "after")])
def test_control_characters_in_a_filter_are_refused_not_a_server_error(
        attestor: LiveAttestor, path: str, name: str) -> None:
    client = signed_in(attestor, "auditor")
    for value in ("\x00", "a\x00%", "\x1b[2J", "x\ny"):
        response = client.get(path, params={name: value})
        assert response.status_code == 422, (path, name, value, response.status_code)
        assert response.json()["code"] == "request.invalid"


def test_like_wildcards_and_sql_metacharacters_are_literal(attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "auditor")  # writes console.login by token:test-auditor
    found = client.get("/ui/audit", params={"actor": "token:test-"}).text
    assert "console.login" in found
    for value in ("%", "_", "token:%", "token:test_auditor", "' OR '1'='1", "\\",
                  "token:test-auditor'--", "TOKEN:test-"):
        response = client.get("/ui/audit", params={"actor": value})
        assert response.status_code == 200, value
        assert "console.login" not in response.text, value
        api = httpx.get(attestor.url + "/v1/audit", params={"actor": value},
                        headers=attestor.headers("auditor"))
        assert api.status_code == 200 and api.json()["items"] == [], value
    devices = client.get("/ui/devices", params={"q": "%"})
    assert devices.status_code == 200 and "No device matches" in devices.text


def test_markup_from_requests_and_query_parameters_stays_text(
        attestor: LiveAttestor) -> None:
    # An anonymous caller controls the path, the user agent and the device it claims:
    # all of them land in the audit log (subject, user_agent, details, device_id).
    refused = httpx.get(attestor.url + "/v1/devices/" + "%3Cscript%3E",
                        headers={"User-Agent": MARK, "X-Edgeproof-Device": "dev<script>"})
    assert refused.status_code == 401
    client = signed_in(attestor, "auditor")
    for path in PAGES:
        for params in ({}, {"device_id": MARK, "actor": MARK, "q": MARK, "reason": MARK,
                            "action": MARK, "outcome": MARK, "after": "1"}):
            response = client.get(path, params=params)
            kind = response.headers["content-type"]
            if kind.startswith("application/problem+json"):  # a filter out of its range
                assert response.status_code == 422, (path, params)
                continue
            assert kind.startswith("text/html"), (path, params)
            body = response.text
            assert "<script>" not in body and "<img src=x" not in body, (path, params)
            assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    shown = client.get("/ui/audit", params={"action": "auth"}).text
    assert "&lt;script&gt;" in shown  # it is there, as text


def test_the_gate_page_filters_by_decision(attestor: LiveAttestor) -> None:
    # The page offers allow/deny; the audit log records success/refused (gate.decide
    # writes these two shapes; here they are appended directly, with no fleet).
    svc = attestor.services
    with svc.session() as session, session.begin():
        audit.append(session, at=svc.clock(), actor="token:gk", action="gate.decision",
                     outcome="success", device_id="dev-a", subject="update:firmware",
                     details={"decision": "allow"})
        audit.append(session, at=svc.clock(), actor="token:gk", action="gate.decision",
                     outcome="refused", device_id="dev-b", subject="update:firmware",
                     reasons=["gate.no_rule"], details={"decision": "deny"})
    client = signed_in(attestor, "auditor")

    def devices(outcome: str) -> list[str]:
        page = client.get("/ui/gate", params={"outcome": outcome})
        assert page.status_code == 200
        return re.findall(r'href="/ui/devices/(dev-[ab])"', page.text)
    assert (devices(""), devices("deny"), devices("allow")) == (
        ["dev-a", "dev-b"], ["dev-b"], ["dev-a"])
    assert "selected>deny" in client.get("/ui/gate", params={"outcome": "deny"}).text


def test_a_session_ends_when_its_token_does(attestor: LiveAttestor) -> None:
    """A five-minute token is not an eight-hour session."""
    client = signed_in(attestor, "auditor", ttl=dt.timedelta(minutes=5))
    assert client.get("/ui").status_code == 200
    attestor.clock.offset += dt.timedelta(minutes=4)
    try:
        assert client.get("/ui").status_code == 200  # within the token's life
        attestor.clock.offset += dt.timedelta(minutes=2)
        assert client.get("/ui").headers["location"] == "/ui/login"
    finally:
        attestor.clock.offset = dt.timedelta()


def test_the_oidc_pending_cookie_is_not_a_session_nor_the_reverse(
        attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "admin")
    cookie = client.cookies["edgeproof_console"]
    # a session cookie presented as the OIDC pending sign-in: refused before any exchange
    stranger = httpx.Client(base_url=attestor.url)
    stranger.cookies.set("edgeproof_console_oidc", cookie, path="/ui")
    back = stranger.get("/ui/login/callback", params={"code": "x", "state": ""})
    assert back.status_code == 401 and "edgeproof_console" not in stranger.cookies
    # a pending sign-in sealed with the same key, presented as a session
    key = web.session_key(attestor.settings)
    pending = sessions.seal(key, {"state": "s", "verifier": "v",
                                  "at": attestor.clock().timestamp()})
    stranger.cookies.set("edgeproof_console", pending, path="/ui")
    assert stranger.get("/ui").headers["location"] == "/ui/login"


def test_there_is_no_redirect_after_sign_in_to_follow(attestor: LiveAttestor) -> None:
    """No ``next=`` is honoured: sign-in always lands on /ui (no open redirect)."""
    for query in ("?next=https://evil.example/", "?next=//evil.example",
                  "?redirect=https://evil.example/"):
        client = httpx.Client(base_url=attestor.url)
        assert client.get("/ui" + query).headers["location"] == "/ui/login"
        page = client.post("/ui/login" + query, data={"token": attestor.token("auditor")})
        assert page.status_code == 200
        assert "evil.example" not in page.text and "location" not in page.headers
        assert 'content="0; url=/ui"' in page.text


def test_the_sign_in_page_echoes_only_an_oauth_error_code(attestor: LiveAttestor) -> None:
    client = httpx.Client(base_url=attestor.url)
    code = client.get("/ui/login/callback", params={"error": "access_denied"})
    assert code.status_code == 401 and "access_denied" in code.text
    spoof = "Your account is locked: call +1 555 0100 to unlock it"
    for text in (spoof, MARK):
        page = client.get("/ui/login/callback", params={"error": text})
        assert page.status_code == 401
        assert "call +1 555" not in page.text and "<script>" not in page.text
        assert "not for this sign-in" in page.text


def test_a_page_position_past_a_bigint_is_refused(attestor: LiveAttestor) -> None:
    client = signed_in(attestor, "auditor")
    for path in ("/ui/audit", "/ui/gate"):
        assert client.get(path, params={"after": str(2**63)}).status_code == 422
        assert client.get(path, params={"after": str(10**30)}).status_code == 422
        assert client.get(path, params={"after": str(2**63 - 1)}).status_code == 200


def test_a_callback_state_that_is_not_ascii_is_refused(tmp_path: Path,
                                                      manufacturer: Manufacturer) -> None:
    issuer = OidcIssuer(roles=("auditor",))
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], **issuer.settings()).start()
    try:
        client = httpx.Client(base_url=live.url)
        assert client.get("/ui/login/oidc").status_code == 303  # a pending sign-in
        for state in ("\u00e9t\u00e9", "\u0000", "a" * 256):
            back = client.get("/ui/login/callback", params={"code": "c", "state": state})
            assert back.status_code == 401, (state, back.status_code)
            assert "not for this sign-in" in back.text
        assert issuer.redeemed == 0
    finally:
        live.stop()
        issuer.stop()


def _csrf(client: httpx.Client) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui").text)
    assert found is not None
    return found.group(1)


def test_a_csrf_token_works_only_with_its_own_session(attestor: LiveAttestor) -> None:
    alice, bob = signed_in(attestor, "admin"), signed_in(attestor, "admin")
    auditor = signed_in(attestor, "auditor")
    target = "/ui/devices/no-such-device/revoke"
    for client, token in ((alice, _csrf(bob)), (alice, ""), (alice, _csrf(bob) + "x")):
        refused = client.post(target, data={"reason": "x", "csrf": token})
        assert refused.status_code == 403 and "CSRF" in refused.text
    # the auditor's own, valid token does not make the action an auditor's to take
    assert auditor.post(target, data={"reason": "x", "csrf": _csrf(auditor)}
                        ).status_code == 403
    # with its own token the admin's request reaches the device service (unknown: 409)
    assert alice.post(target, data={"reason": "x", "csrf": _csrf(alice)}).status_code == 409
    # a cross-site form post carries no cookie (SameSite=Strict): no session, sign-in
    stranger = httpx.Client(base_url=attestor.url)
    assert stranger.post(target, data={"reason": "x", "csrf": _csrf(alice)},
                         headers={"Origin": "https://evil.example"}
                         ).headers["location"] == "/ui/login"
