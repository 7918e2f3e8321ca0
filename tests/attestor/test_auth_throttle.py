"""Failed authentication is limited per source address over real HTTP, on SQLite and
PostgreSQL: past the limit a source's credentials get 429 ``auth.throttled`` with
Retry-After (counted in a metric), unchecked until the window ends; sustained refusals
give one summary audit entry per source and window, not a row per attempt.
(The limit across two replicas: tests/attestor/test_replicas.py.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from attestor import audit
from attestor.db import queries
from attestor.services import refusal_windows
from tests.harness import LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.adversarial]
BOTH_DATABASES = True
ATTESTOR_SETTINGS = {"rate_limits": {"auth_failures_per_source": 5,
                                     "auth_failure_window_seconds": 60,
                                     "auth_failures_audited_individually": 2}}
FORGED = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"  # not a valid JWT


def _entries(attestor: LiveAttestor, action: str) -> list[dict[str, Any]]:
    with attestor.services.session() as session:
        return [audit.event_json(e) for e in queries.audit_events(session)
                if e.action == action]


def test_failed_authentication_is_throttled_and_summarised(attestor: LiveAttestor) -> None:
    url = f"{attestor.url}/v1/audit"
    # Start at a window's beginning so the five failures and the throttling share it.
    now = attestor.clock()
    start = refusal_windows.window_start(now, 60)
    attestor.clock.offset += start + dt.timedelta(seconds=1) - now

    forged = {"Authorization": f"Bearer {FORGED}"}
    bad_key = {"X-Api-Key": "ep_0123456789abcdef_guessed"}
    statuses = [httpx.get(url, headers=forged if i % 2 else bad_key).status_code
                for i in range(5)]
    assert statuses == [401] * 5
    throttled = httpx.get(url, headers=forged)
    assert throttled.status_code == 429 and throttled.json()["code"] == "auth.throttled"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    # Credentials from that address are not even checked until the window ends.
    good = attestor.headers("auditor")
    assert httpx.get(url, headers=good).status_code == 429
    assert httpx.get(f"{attestor.url}/healthz").status_code == 200  # public: not throttled

    # Two refusals have entries of their own; the rest wait for the window's summary.
    individual = _entries(attestor, "auth")
    assert [e["details"]["in_window"] for e in individual] == [1, 2]
    assert _entries(attestor, "auth.refusals") == []

    attestor.clock.offset += dt.timedelta(seconds=120)  # the window closed
    refusal_windows.summarise(attestor.services)  # (unless the replica's own tick did)
    (summary,) = _entries(attestor, "auth.refusals")
    assert summary["subject"] == "source:127.0.0.1"
    details = summary["details"]
    assert details["refusals"] == 7 and details["source"] == "127.0.0.1"
    assert details["codes"] == {"auth.invalid": 5, "auth.throttled": 2}
    assert details["individual_entries"] == 2 and details["window_seconds"] == 60
    assert details["window_start"] == start.isoformat()
    assert refusal_windows.summarise(attestor.services) == 0  # claimed once

    # A new window: the source's credentials are checked again.
    assert httpx.get(url, headers=good).status_code == 200
    text = httpx.get(f"{attestor.url}/metrics", headers=good).text
    assert "edgeproof_auth_failures_throttled_total 2.0" in text
    report = httpx.get(f"{attestor.url}/v1/audit/verify", headers=good).json()
    assert report["ok"]


def test_a_few_refusals_need_no_summary(attestor: LiveAttestor) -> None:
    assert httpx.get(f"{attestor.url}/v1/audit").status_code == 401
    attestor.clock.offset += dt.timedelta(seconds=180)
    assert refusal_windows.summarise(attestor.services) == 0
    assert len(_entries(attestor, "auth")) == 1
    assert _entries(attestor, "auth.refusals") == []
