"""Hostile requests over real HTTP, on SQLite and PostgreSQL: a NUL byte in the path,
bytes that are not UTF-8 and over-long values in every field that reaches the audit
(path, claimed device, actor, user agent, details). Every refusal is answered as
itself and lands in the audit log, escaped and bounded, the chain intact; when the
audit cannot be written, the request fails closed (503), counted and logged with the
database's error. (Raw control characters in headers and raw NUL or non-ASCII bytes in
the request line never reach the app: uvicorn's parser answers 400 first.)"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from attestor.auth.tokens import local_issuer, mint
from attestor.db import queries
from tests.attestor.test_audit import _block_audit_writes
from tests.harness import LiveAttestor
from tests.leaks import LOGS

pytestmark = [pytest.mark.e2e, pytest.mark.adversarial]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def _refusals(attestor: LiveAttestor) -> list[dict[str, Any]]:
    from attestor import audit

    with attestor.services.session() as session:
        return [audit.event_json(e) for e in queries.audit_events(session)
                if e.action == "auth" and e.outcome == "refused"]


def _token(attestor: LiveAttestor, role: str, subject: str) -> str:
    svc = attestor.services
    return mint(svc.signer, local_issuer(attestor.settings.trust_domain), role=role,
                subject=subject, ttl=dt.timedelta(minutes=5), now=attestor.clock())


def test_every_field_of_a_refusal_is_audited_escaped_and_bounded(
        attestor: LiveAttestor) -> None:
    url = attestor.url
    long_path = "/v1/devices/" + "%00" * 1000 + "/challenge"
    # a token whose subject holds a NUL, a lone surrogate and far too many characters
    hostile_subject = "\x00evil\ud800" + "z" * 400
    sent: list[tuple[httpx.Response, str]] = [
        (httpx.post(f"{url}/v1/devices/%00%00/challenge"), "nul-path"),
        (httpx.post(f"{url}/v1/devices/%FF%FE/challenge",
                    headers={"User-Agent": b"agent\xff\xfe"}), "invalid-utf8"),
        (httpx.post(url + long_path, headers={"User-Agent": "A" * 6000}), "over-long"),
        (httpx.post(f"{url}/v1/devices/d1/challenge", headers={
            "X-Edgeproof-Device": b"dev\xff" + b"y" * 300, "X-Edgeproof-Timestamp": "1",
            "X-Edgeproof-Nonce": "ab" * 16, "X-Edgeproof-Signature": "00"}), "claimed-device"),
        (httpx.post(f"{url}/v1/devices/d1/quarantine", json={"reason": "x"}, headers={
            "Authorization": f"Bearer {_token(attestor, 'auditor', hostile_subject)}"}),
         "actor"),
    ]
    statuses = {what: (r.status_code, r.json()["code"]) for r, what in sent}
    assert statuses == {"nul-path": (401, "auth.missing"), "invalid-utf8": (401, "auth.missing"),
                        "over-long": (401, "auth.missing"),
                        "claimed-device": (401, "auth.invalid"),
                        "actor": (403, "auth.forbidden")}, statuses

    entries = _refusals(attestor)
    assert len(entries) == len(sent)  # every refusal, in order
    nul, invalid, long, device, actor = entries
    assert nul["subject"] == "POST /v1/devices/%00%00/challenge"  # as received
    assert invalid["subject"] == "POST /v1/devices/%FF%FE/challenge"
    assert invalid["details"]["user_agent"] == "agent\\xff\\xfe"
    assert invalid["details"]["raw"]["details.user_agent"]["hex"] == b"agent\xff\xfe".hex()
    assert len(long["subject"]) <= 128 and long["details"]["raw"]["subject"]["bytes"] == len(
        "POST " + long_path)
    assert len(long["details"]["user_agent"]) <= 2048
    assert long["details"]["raw"]["details.user_agent"]["bytes"] == 6000
    assert device["details"]["claimed_device"].startswith("dev\\xffyyy")
    assert device["details"]["raw"]["details.claimed_device"]["hex"].startswith(
        b"dev\xff".hex())
    assert actor["actor"].startswith("token:\\x00evil\\ud800")
    assert len(actor["actor"]) <= 128
    assert actor["details"]["raw"]["actor"]["bytes"] > 400
    for entry in entries:
        assert entry["details"]["source"] == "127.0.0.1"

    report = httpx.get(f"{url}/v1/audit/verify", headers=attestor.headers("auditor")).json()
    assert report["ok"], report
    listed = httpx.get(f"{url}/v1/audit", params={"action": "auth"},
                       headers=attestor.headers("auditor"))
    assert listed.status_code == 200 and len(listed.json()["items"]) == len(sent)


def test_public_identifiers_in_the_path_are_checked_before_any_query(
        attestor: LiveAttestor) -> None:
    """A NUL in the enrollment id of the public activation route is refused as input
    (422) on both databases, not a database error on one of them."""
    for enrollment_id in ("%00", "%00abc", "a" * 300, "%FF"):
        response = httpx.post(f"{attestor.url}/v1/enrollments/{enrollment_id}/activation",
                              json={"secret": "AAAA"})
        assert response.status_code == 422, (enrollment_id, response.text)
    unknown = httpx.post(f"{attestor.url}/v1/enrollments/no-such-id/activation",
                         json={"secret": "AAAA"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "activation.unknown"


def test_a_refusal_that_cannot_be_audited_fails_closed(attestor: LiveAttestor) -> None:
    _block_audit_writes(attestor.services.engine)
    logged = len(LOGS.lines)
    response = httpx.post(f"{attestor.url}/v1/devices/%00%00/challenge")
    assert response.status_code == 503 and response.json()["code"] == "audit.unavailable"
    assert "audit storage refused" not in response.text  # the cause goes to the log only
    lines = [json.loads(line) for line in LOGS.lines[logged:] if line.startswith("{")]
    failures = [line for line in lines if "not audited" in str(line.get("event"))]
    assert failures and "audit storage refused" in failures[0]["event"]
    metrics = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("auditor"))
    assert "edgeproof_audit_write_failures_total 1.0" in metrics.text


@pytest.mark.parametrize("query", [
    "/v1/audit?actor=%00", "/v1/audit?device_id=a%00b", "/v1/audit?action=%01",
    "/v1/audit?outcome=%7F", "/v1/devices?class=%00", "/v1/certificates?device_id=%00",
])
def test_control_characters_in_operator_queries_are_refused_as_input(
        attestor: LiveAttestor, query: str) -> None:
    """An operator's filter with a NUL or another control character is bad input (422
    request.invalid) on both databases, never a database error (PostgreSQL refuses NUL in
    text) answered as 503."""
    response = httpx.get(f"{attestor.url}{query}", headers=attestor.headers("auditor"))
    assert response.status_code == 422, (query, response.status_code, response.text)
    assert response.json()["code"] == "request.invalid"
