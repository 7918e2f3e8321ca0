"""Crash-safe issuance: a crash between signing and recording, and an audit log that
cannot be written, each leave every signed certificate accounted for and none handed out."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from agent.attest import attest_once, collect_evidence
from agent.client import AttestorError
from attestor import audit
from attestor.db.models import AuditEvent, Certificate
from attestor.services import attestation, background, issuance
from attestor.services.context import build_services
from identity.messages import AttestationRequest, decode
from tests.attestor.test_audit import _block_audit_writes
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


class Crash(BaseException):  # noqa: N818 - it stands for the process dying
    """The process dies here: nothing after this line runs, no handler sees it."""


def _workload_rows(attestor: LiveAttestor, device_id: str) -> list[Certificate]:
    with attestor.services.session() as session:
        return list(session.exec(select(Certificate).where(
            Certificate.device_id == device_id, Certificate.kind == "workload")).all())


def test_crash_between_signing_and_recording_is_reconciled_at_start_up(
    attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
    request = evidence.request
    signed: list[int] = []

    def crash_after_signing(*args: object) -> None:  # before the pass is recorded
        issued = args[8]
        signed.append(issued.cert.serial_number)  # type: ignore[attr-defined]
        raise Crash

    monkeypatch.setattr(attestation, "_record_pass", crash_after_signing)
    with pytest.raises(Crash):
        attestation.attest(attestor.services, device_id, request)
    monkeypatch.undo()

    rows = _workload_rows(attestor, device_id)
    assert [(r.serial, r.status) for r in rows] == [(f"{signed[0]:x}", "pending")]

    # A restart a few minutes later: start-up reconciliation voids the reservation.
    later = attestor.clock() + dt.timedelta(minutes=5)
    restarted = build_services(attestor.settings, clock=lambda: later)
    try:
        jobs = background.start(restarted)
        background.stop(jobs)
        with restarted.session() as session:
            row = session.get(Certificate, f"{signed[0]:x}")
            assert row is not None and row.status == "void"
            assert row.revoked_reason == issuance.VOID_REASON
            entries = session.exec(select(AuditEvent).where(
                AuditEvent.action == "certificate.reconcile")).all()
            assert [e.subject for e in entries] == [f"certificate:{signed[0]:x}"]
            assert audit.verify(session, {restarted.signer.kid: restarted.signer.public}).ok
    finally:
        restarted.engine.dispose()


def test_reservations_in_flight_are_left_alone(attestor: LiveAttestor) -> None:
    """Another replica's issuance in progress (a fresh pending row) is not voided."""
    svc = attestor.services
    fresh = issuance.reserve(svc, "d-fresh", "workload", svc.clock(), dt.timedelta(hours=1))
    assert issuance.reconcile(svc, svc.clock()) == []
    with svc.session() as session:
        row = session.get(Certificate, f"{fresh:x}")
        assert row is not None and row.status == "pending"


def test_audit_write_failure_fails_the_request_and_issues_nothing(
    attestor: LiveAttestor, device: Device
) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    with attestor.client(config, device.tpm) as client:
        good = attest_once(config, device.tpm, client, now())
        before = (config.state_dir / "cert.pem").read_bytes()
        _block_audit_writes(attestor.services.engine)
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
    assert refused.value.status == 503 and refused.value.codes == ["audit.unavailable"]
    assert (config.state_dir / "cert.pem").read_bytes() == before
    statuses = {r.serial: r.status for r in _workload_rows(attestor, device_id)}
    assert statuses.pop(good.serial) == "issued"
    assert list(statuses.values()) == ["void"]  # signed, never recorded, never handed out
    with attestor.services.engine.begin() as conn:
        on = "" if conn.dialect.name == "sqlite" else " ON audit_events"
        conn.execute(sa.text(f"DROP TRIGGER no_audit{on}"))
    listing = httpx.get(f"{attestor.url}/v1/certificates", params={"device_id": device_id},
                        headers=attestor.headers("auditor")).json()["items"]
    assert sorted(c["status"] for c in listing) == ["issued", "issued", "void"]


def test_a_refused_attestation_leaves_no_reservation(attestor: LiveAttestor,
                                                     device: Device) -> None:
    """The serial is reserved with the nonce, before verification; a refusal drops it."""
    from identity.errors import VerificationFailed

    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    before = {r.serial for r in _workload_rows(attestor, device_id)}
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
    body = dict(evidence.body)
    pcrs = {bank: dict(values) for bank, values in body["pcrs"].items()}
    pcrs["sha256"]["0"] = "00" * 32  # a PCR the quote does not vouch for
    body["pcrs"] = pcrs
    with pytest.raises(VerificationFailed):
        attestation.attest(attestor.services, device_id,
                           decode(AttestationRequest, json.dumps(body)))
    assert {r.serial for r in _workload_rows(attestor, device_id)} == before


def test_interrupted_issuances_are_voided_once_by_replicas_reconciling_at_once(
        attestor: LiveAttestor) -> None:
    """Four reconcilers at the same moment (as four replicas' timers): every stale
    reservation is voided exactly once, with exactly one audit entry; a fresh one is
    left alone, and the gauge reports its age."""
    import threading

    from prometheus_client import generate_latest

    svc = attestor.services
    now = svc.clock()
    # 30 s old: stale for the 10 s grace used here, not yet for the attestor's own timer
    # (60 s by default), which must not take them first.
    hour = dt.timedelta(hours=1)
    stale = {f"{issuance.reserve(svc, f'd{i}', 'workload', now - dt.timedelta(seconds=30), hour):x}"  # noqa: E501
             for i in range(30)}
    fresh = issuance.reserve(svc, "d-fresh", "workload", now - dt.timedelta(seconds=5), hour)
    barrier = threading.Barrier(4)
    voided: list[list[str]] = []

    def run() -> None:
        barrier.wait()
        voided.append(issuance.reconcile(svc, now, dt.timedelta(seconds=10)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(voided) == 4
    flat = [serial for batch in voided for serial in batch]
    assert sorted(flat) == sorted(stale)  # each once, by whichever got it
    with svc.session() as session:
        entries = session.exec(select(AuditEvent).where(
            AuditEvent.action == "certificate.reconcile")).all()
        assert sorted(e.subject or "" for e in entries) == sorted(
            f"certificate:{s}" for s in stale)
        row = session.get(Certificate, f"{fresh:x}")
        assert row is not None and row.status == "pending"

    issuance.reconcile_pass(svc)
    gauge = generate_latest(svc.metrics.registry).decode()
    age = next(float(line.split()[1]) for line in gauge.splitlines()
               if line.startswith("edgeproof_issuance_pending_oldest_age_seconds "))
    assert 5 <= age < 60
