"""The console in a real browser (Chromium, Playwright): sign-in with a token and with
OIDC, the fleet overview, drilling from a refusal to the boot events behind it, the
audit log's filters and chain status, roles, revocation, CSP and escaping, session
expiry, and /docs offline. Each page's screenshot goes to docs/ui/ (docs/console.md)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from agent.client import AttestorError
from attestor.services import checkpoints
from tests.console.conftest import Fleet, shoot, sign_in
from tests.oidc_issuer import OidcIssuer

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.browser]
SCRIPT = "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2>"


def test_sign_in_with_a_token_shows_the_fleet(fleet: Fleet, page: Any) -> None:
    url = fleet.attestor.url
    response = page.goto(url + "/ui")
    assert page.url == url + "/ui/login"  # no session: the sign-in page
    assert "script-src 'self'" in response.headers["content-security-policy"]
    shoot(page, "login")
    page.fill("#token", fleet.attestor.token("auditor"))
    page.click("#token-login")
    page.wait_for_url(url + "/ui")
    states = page.locator("#fleet-states").inner_text()
    assert re.search(r"all\s+3", states), states
    refusals = page.locator("#refusals").inner_text()
    assert "policy.pcr_mismatch" in refusals and "policy.no_reference" in refusals
    assert "database" in page.locator("#health").inner_text()
    shoot(page, "overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "edgeproof_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not page.csp_violations


def test_drill_from_a_refusal_to_the_boot_event_behind_it(fleet: Fleet, page: Any) -> None:
    sign_in(page, fleet.attestor, "auditor")
    page.goto(fleet.attestor.url + "/ui/devices?verdict=fail")
    rows = page.locator("#device-table tbody tr")
    assert rows.count() == 1 and "SN-TAMPER-2" in rows.first.inner_text()
    shoot(page, "devices")
    for query in ("q=TAMPER", "reason=policy.pcr_mismatch", "verdict=fail&q=SPARE"):
        page.goto(f"{fleet.attestor.url}/ui/devices?{query}")
        [found] = page.locator("#device-table tbody tr").all_inner_texts()
        assert ("No device matches" if "SPARE" in query else "SN-TAMPER-2") in found, query
    page.goto(fleet.attestor.url + "/ui/devices?verdict=fail")
    rows.first.locator("a").first.click()
    assert fleet.id("tampered") in page.locator("h1").inner_text()
    assert "chains to a trusted TPM vendor root" in page.locator("#ek-chain").inner_text()
    shoot(page, "device")
    page.locator("#attestations tr.refused a.attestation-link").first.click()
    explanation = page.locator("#explanation").inner_text()
    assert "PCR 4 (sha256) differs from the reference" in explanation
    change = page.locator("#explanation tr.change-changed")
    assert change.count() == 1
    assert "EV_EFI_BOOT_SERVICES_APPLICATION" in change.inner_text()
    assert "\\EFI\\debian\\grubx64.efi" in change.inner_text()
    assert "of this device" in page.locator("#reference").inner_text()
    failed = " ".join(page.locator("#checks tr.refused").all_inner_texts())
    assert "policy.pcrs" in failed and "policy.pcr_mismatch" in failed
    shoot(page, "attestation")


def test_audit_filters_and_chain_status(fleet: Fleet, page: Any) -> None:
    mark = checkpoints.sign(fleet.attestor.services)  # what the timer does every minute
    assert mark is not None
    sign_in(page, fleet.attestor, "auditor")
    page.goto(fleet.attestor.url + "/ui/audit")
    assert page.locator("#chain-status").inner_text() == "intact"
    assert page.locator("#checkpoint-seq").inner_text() == str(mark.seq)
    every = page.locator("#audit-table tbody tr").count()
    page.fill("#audit-filters input[name=action]", "attestation")
    page.fill("#audit-filters input[name=device_id]", fleet.id("tampered"))
    with page.expect_navigation():
        page.click("#audit-filters button")
    rows = page.locator("#audit-table tbody tr")
    assert 0 < rows.count() < every
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        assert cells.nth(3).inner_text() == "attestation"
    assert "policy.pcr_mismatch" in page.locator("#audit-table").inner_text()
    shoot(page, "audit")
    # an entry edited behind the attestor's back: the page says the chain is broken
    engine = fleet.attestor.services.engine
    with engine.begin() as conn:
        seq, actor = conn.execute(sa.text("SELECT seq, actor FROM audit_events ORDER BY seq "
                                          "LIMIT 1")).one()
        conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"),
                     {"s": seq})
    try:
        page.reload()
        assert page.locator("#chain-status").inner_text() == "broken"
        assert "mallory" not in page.locator("#verification").inner_text()
        assert str(seq) in page.locator("#verification").inner_text()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_events SET actor = :a WHERE seq = :s"),
                         {"a": actor, "s": seq})


def test_an_auditor_cannot_revoke(fleet: Fleet, page: Any) -> None:
    sign_in(page, fleet.attestor, "auditor")
    target = fleet.id("healthy")
    page.goto(f"{fleet.attestor.url}/ui/devices/{target}")
    assert page.locator("#admin-actions").count() == 0
    response = page.goto(f"{fleet.attestor.url}/ui/devices/{target}/revoke")
    assert response.status == 403 and "admins only" in page.locator("#error-message").inner_text()
    forged = page.request.post(f"{fleet.attestor.url}/ui/devices/{target}/revoke",
                               form={"reason": "x", "csrf": "guess"})
    assert forged.status == 403
    device = httpx.get(f"{fleet.attestor.url}/v1/devices/{target}",
                       headers=fleet.attestor.headers("auditor")).json()
    assert device["state"] == "active"
    audit = httpx.get(f"{fleet.attestor.url}/v1/audit", params={"action": "console.action"},
                      headers=fleet.attestor.headers("auditor")).json()["items"]
    assert [e["outcome"] for e in audit] == ["refused", "refused"]
    assert all(e["actor"] == "token:test-auditor" for e in audit)


def test_admin_signs_in_with_oidc_and_revokes(fleet: Fleet, issuer: OidcIssuer,
                                              page: Any) -> None:
    url = fleet.attestor.url
    page.goto(url + "/ui/login")
    page.click("#oidc-login")
    page.wait_for_url(url + "/ui")
    assert issuer.redeemed == 1 and not issuer.refused
    assert "alice@example.test" in page.locator("header").inner_text()
    target = fleet.id("spare")
    page.goto(f"{url}/ui/devices/{target}")
    page.click("#revoke")
    shoot(page, "confirm")
    # without the session's CSRF token the same form is refused
    stale = page.request.post(f"{url}/ui/devices/{target}/revoke",
                              form={"reason": "forged", "csrf": "not-the-token"})
    assert stale.status == 403
    page.fill("#reason", "lost in transit")
    page.click("#confirm-action")
    page.wait_for_url(f"{url}/ui/devices/{target}")
    assert "revoked" in page.locator("h1").inner_text()
    assert "lost in transit" in page.locator("#state-reason").inner_text()
    shoot(page, "device-revoked")
    with pytest.raises(AttestorError) as refused:
        fleet.attest("spare")
    assert refused.value.code == "device.not_active"
    entries = httpx.get(f"{url}/v1/audit", params={"action": "device.revoke"},
                        headers=fleet.attestor.headers("auditor")).json()["items"]
    assert [(e["actor"], e["device_id"]) for e in entries] == [
        ("token:alice@example.test", target)]
    page.goto(url + "/ui/certificates")
    assert int(page.locator("#crl-count").inner_text()) >= 1
    shoot(page, "certificates")


def test_markup_in_a_device_attribute_is_inert(fleet: Fleet, page: Any) -> None:
    target = fleet.id("healthy")
    response = httpx.post(f"{fleet.attestor.url}/v1/devices/{target}/quarantine",
                          json={"reason": SCRIPT}, headers=fleet.attestor.headers("admin"))
    assert response.status_code == 200
    sign_in(page, fleet.attestor, "auditor")
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    for path in (f"/ui/devices/{target}", f"/ui/audit?device_id={target}"):
        response = page.goto(fleet.attestor.url + path)
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert SCRIPT in page.locator("main").inner_text()  # shown as text
        assert page.evaluate("window.pwned") is None
        assert page.locator("main script, main img[src=x]").count() == 0
    assert not dialogs
    httpx.post(f"{fleet.attestor.url}/v1/devices/{target}/release", json={"reason": "drill"},
               headers=fleet.attestor.headers("admin")).raise_for_status()


def test_gate_decisions_page(fleet: Fleet, page: Any) -> None:
    answer = httpx.post(f"{fleet.attestor.url}/v1/gate/decisions",
                        json={"device_id": fleet.id("healthy"), "action": "update:firmware"},
                        headers=fleet.attestor.headers("gatekeeper"))
    assert answer.status_code == 200, answer.text
    sign_in(page, fleet.attestor, "auditor")
    page.goto(fleet.attestor.url + "/ui/gate")
    table = page.locator("#audit-table").inner_text()
    assert "gate.decision" in table and "gate.no_rule" in table
    shoot(page, "gate")


def test_session_ends_when_idle(fleet: Fleet, page: Any) -> None:
    sign_in(page, fleet.attestor, "auditor", ttl=dt.timedelta(hours=2))  # outlives idle
    idle = fleet.attestor.settings.console.idle_seconds
    fleet.attestor.clock.offset += dt.timedelta(seconds=idle - 5)
    try:
        page.goto(fleet.attestor.url + "/ui/devices")  # in time: the session slides
        assert page.url.endswith("/ui/devices")
        fleet.attestor.clock.offset += dt.timedelta(seconds=idle + 1)
        page.goto(fleet.attestor.url + "/ui/devices")
        assert page.url.endswith("/ui/login")
    finally:
        fleet.attestor.clock.offset = dt.timedelta()


def test_docs_work_offline_with_authorize(fleet: Fleet, page: Any) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    response = page.goto(fleet.attestor.url + "/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title")
    page.click(".swagger-ui .authorize")
    dialog = page.locator(".swagger-ui .modal-ux").inner_text()
    assert "bearerToken" in dialog and "apiKey" in dialog
    shoot(page, "docs", full_page=False)
    assert requested and all(u.startswith(fleet.attestor.url) for u in requested), requested
    assert not page.csp_violations
