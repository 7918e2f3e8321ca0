"""What operators watch, read from a live attestor's scrape: the fleet by state and verdict,
renewal lag, CA and signing-key expiry, the audit chain's anchoring and verification,
the webhook queue, backend health; and a scrape that still answers, within its budget,
when the database refuses or hangs."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from agent.attest import attest_once, device_signer
from agent.client import AttestorClient
from agent.sim.swtpm import Manufacturer
from attestor.db.engine import make_engine
from attestor.db.models import AuditEvent
from attestor.services import background
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(attestor: LiveAttestor) -> Samples:
    attestor.services.settings.metrics.cache_seconds = 0  # every scrape reads anew
    response = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("auditor"),
                         timeout=30)
    assert response.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_fleet_devices_certificates_and_renewal_lag(attestor: LiveAttestor, device: Device,
                                                    other_device: Device) -> None:
    config = enroll_and_learn(attestor, device)  # refused once: no policy yet
    other = enroll_and_learn(attestor, other_device)  # passes: the class has its policy now
    samples = scrape(attestor)
    assert value(samples, "edgeproof_devices", state="active", last_verdict="fail") == 1
    assert value(samples, "edgeproof_devices", state="active", last_verdict="pass") == 1
    assert value(samples, "edgeproof_devices", state="revoked", last_verdict="pass") == 0
    assert value(samples, "edgeproof_certificates_valid") == 1

    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    with attestor.client(other, other_device.tpm) as client:
        attest_once(other, other_device.tpm, client, now())
    httpx.post(f"{attestor.url}/v1/devices/{other.device_id}/quarantine",
               json={"reason": "drill"}, headers=attestor.headers("admin")).raise_for_status()
    samples = scrape(attestor)
    assert value(samples, "edgeproof_devices", state="active", last_verdict="pass") == 1
    assert value(samples, "edgeproof_devices", state="quarantined", last_verdict="pass") == 1
    assert value(samples, "edgeproof_certificates_valid") == 1  # active devices only
    assert value(samples, "edgeproof_certificates_expiring_soon") == 0
    assert value(samples, "edgeproof_certificate_renewal_window_seconds") == 900

    attestor.clock.offset = dt.timedelta(minutes=50)  # past renewal: inside the last 15 min
    samples = scrape(attestor)
    assert value(samples, "edgeproof_certificates_expiring_soon") == 1
    with AttestorClient(attestor.url, signer=device_signer(config, device.tpm),
                        clock=lambda: attestor.clock().timestamp()) as client:
        attest_once(config, device.tpm, client, attestor.clock())  # renewed: out of the window
    samples = scrape(attestor)
    assert value(samples, "edgeproof_certificates_expiring_soon") == 0
    assert value(samples, "edgeproof_certificates_valid") == 1
    attestor.clock.offset = dt.timedelta(hours=3)  # everything expired
    samples = scrape(attestor)
    assert value(samples, "edgeproof_certificates_valid") == 0
    assert value(samples, "edgeproof_certificates_expiring_soon") == 0


def test_expiry_of_the_ca_and_the_signing_key(attestor: LiveAttestor) -> None:
    samples = scrape(attestor)
    ca = attestor.services.ca
    assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds",
                 backend="local", ca="root") == ca.root.not_valid_after_utc.timestamp()
    assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds",
                 backend="local", ca="issuing") == ca.issuing.cert.not_valid_after_utc.timestamp()
    active = attestor.services.keys.active()
    assert active is not None
    due = active.created_at + dt.timedelta(days=365)
    assert value(samples, "edgeproof_signing_key_expiry_timestamp_seconds") == due.timestamp()
    rotated_at = attestor.clock() + dt.timedelta(days=30)
    with attestor.services.session() as session, session.begin():
        attestor.services.keys.rotate(session, rotated_at)
    attestor.services.keys.refresh(force=True)
    later = scrape(attestor)
    assert value(later, "edgeproof_signing_key_expiry_timestamp_seconds") == (
        rotated_at + dt.timedelta(days=365)).timestamp()


def test_audit_anchoring_and_verification(attestor: LiveAttestor, device: Device) -> None:
    enroll_and_learn(attestor, device)
    samples = scrape(attestor)
    assert value(samples, "edgeproof_audit_last_checkpoint_timestamp_seconds") == 0  # none yet
    written = value(samples, "edgeproof_audit_unanchored_entries")
    assert written > 0
    assert value(samples, "edgeproof_audit_checkpoint_interval_seconds") == (
        attestor.settings.audit_checkpoint_seconds)
    assert ("edgeproof_audit_verification_ok", ()) not in samples  # no verification yet

    background.checkpoint(attestor.services)
    samples = scrape(attestor)
    assert value(samples, "edgeproof_audit_unanchored_entries") == 0
    assert abs(value(samples, "edgeproof_audit_last_checkpoint_timestamp_seconds")
               - time.time()) < 60

    report = background.verify_audit(attestor.services)  # what the timer runs
    assert report.ok
    samples = scrape(attestor)
    assert value(samples, "edgeproof_audit_verification_ok") == 1
    with attestor.services.session() as session, session.begin():  # someone edits history
        session.execute(sa.update(AuditEvent).where(AuditEvent.seq == 1)
                        .values(actor="nobody"))
    verdict = httpx.get(f"{attestor.url}/v1/audit/verify",
                        headers=attestor.headers("auditor")).json()
    assert verdict["ok"] is False
    samples = scrape(attestor)
    assert value(samples, "edgeproof_audit_verification_ok") == 0
    assert abs(value(samples, "edgeproof_audit_last_verification_timestamp_seconds")
               - time.time()) < 60


def test_webhook_queue_and_failures(tmp_path: Path, manufacturer: Manufacturer,
                                    device: Device) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: every delivery is refused
    url = f"http://127.0.0.1:{dead.getsockname()[1]}/hooks"
    live = LiveAttestor(tmp_path / "hooked", [manufacturer], webhook_poll_seconds=300,
                        webhooks=[{"url": url, "secret": "whsec-metrics-0123456789",
                                   "events": ["device.quarantined"]}]).start()
    try:
        config = enroll_and_learn(live, device)
        assert value(scrape(live), "edgeproof_webhook_queue_depth") == 0
        httpx.post(f"{live.url}/v1/devices/{config.device_id}/quarantine",
                   json={"reason": "drill"}, headers=live.headers("admin")).raise_for_status()
        live.clock.offset = dt.timedelta(seconds=30)
        background.deliver(live.services)
        samples = scrape(live)
        assert value(samples, "edgeproof_webhook_queue_depth") == 1
        assert 25 <= value(samples, "edgeproof_webhook_queue_oldest_age_seconds") < 120
        assert value(samples, "edgeproof_webhook_delivery_failures_total") == 1
        live.clock.offset = dt.timedelta(days=2)  # past a day of retries: given up
        assert value(scrape(live), "edgeproof_webhook_queue_depth") == 0
    finally:
        live.stop()
        dead.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung database host)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_scrape_answers_within_its_budget_when_the_database_refuses_or_hangs(
        attestor: LiveAttestor, silent_server: int) -> None:
    svc = attestor.services
    svc.settings.metrics.scrape_budget_seconds = 1.0
    real = svc.engine
    healthy = scrape(attestor)
    assert value(healthy, "edgeproof_backend_up", backend="database") == 1
    assert value(healthy, "edgeproof_backend_up", backend="issuer") == 1
    assert value(healthy, "edgeproof_backend_up", backend="secrets") == 1
    assert value(healthy, "edgeproof_backend_up", backend="signing_key") == 1
    assert ("edgeproof_backend_up", (("backend", "vault"),)) not in healthy  # not configured
    for down in (make_engine("postgresql://edgeproof@127.0.0.1:9/gone"),  # refused
                 make_engine(f"postgresql://edgeproof@127.0.0.1:{silent_server}/hung")):
        svc.engine = down
        try:
            started = time.monotonic()
            samples = scrape(attestor)
            assert time.monotonic() - started < 5  # the budget, not the 10 s connect timeout
        finally:
            svc.engine = real
        assert value(samples, "edgeproof_backend_up", backend="database") == 0
        assert value(samples, "edgeproof_backend_up", backend="issuer") == 1
        assert not [name for name, _ in samples if name == "edgeproof_devices"]  # not stale
        assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds",
                     backend="local", ca="root") > 0  # what needs no database is still there
        down.dispose()


def test_a_probe_that_breaks_unexpectedly_reports_down_never_its_last_answer(
        attestor: LiveAttestor, monkeypatch: pytest.MonkeyPatch) -> None:
    assert value(scrape(attestor), "edgeproof_backend_up", backend="issuer") == 1

    def broken(now: dt.datetime) -> None:
        raise RuntimeError("a bug in a backend client")

    monkeypatch.setattr(attestor.services.issuer, "health", broken)
    samples = scrape(attestor)
    assert value(samples, "edgeproof_backend_up", backend="issuer") == 0
    assert value(samples, "edgeproof_backend_up", backend="database") == 1
