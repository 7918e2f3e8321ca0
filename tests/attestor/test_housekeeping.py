"""Scheduled housekeeping: expired nonces are purged by a running attestor's timer, and
attestation retention keeps what it must; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from attestor.db import housekeeping_queries as q
from attestor.db.models import Attestation, Certificate, Nonce, RequestNonce
from tests.harness import LiveAttestor

ATTESTOR_SETTINGS = {"retention": {"purge_seconds": 0.2, "expired_grace_seconds": 0}}
BOTH = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True)


def _purged(live: LiveAttestor, table: str) -> float:
    value = live.services.metrics.registry.get_sample_value(
        "edgeproof_purged_rows_total", {"table": table})
    return value or 0.0


@BOTH
def test_the_running_attestor_purges_expired_nonces_and_never_a_live_one(
        attestor: LiveAttestor) -> None:
    now = attestor.clock()
    with attestor.services.session() as session, session.begin():
        session.add_all([
            Nonce(value="expired", device_id="D", expires_at=now - dt.timedelta(minutes=11)),
            Nonce(value="spent-expired", device_id="D", expires_at=now - dt.timedelta(
                minutes=11), used_at=now - dt.timedelta(minutes=12)),
            # spent, expired, but within the margin a lagging replica's clock may need
            Nonce(value="spent-recently", device_id="D", expires_at=now - dt.timedelta(
                seconds=5), used_at=now - dt.timedelta(seconds=30)),
            Nonce(value="live", device_id="D", expires_at=now + dt.timedelta(hours=1)),
            RequestNonce(device_id="D", nonce="old", expires_at=now - dt.timedelta(seconds=1)),
            RequestNonce(device_id="D", nonce="new", expires_at=now + dt.timedelta(hours=1))])
    deadline = time.monotonic() + 30  # a wait for the timer, not a timing assertion
    while (_purged(attestor, "nonces") < 2 or _purged(attestor, "request_nonces") < 1) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    with attestor.services.session() as session:
        assert sorted(n.value for n in session.exec(select(Nonce)).all()) == [
            "live", "spent-recently"]
        assert [n.nonce for n in session.exec(select(RequestNonce)).all()] == ["new"]
    assert _purged(attestor, "nonces") == 2 and _purged(attestor, "request_nonces") == 1


def test_a_nonce_within_its_grace_is_kept(engine: sa.Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            session.add(Nonce(value="just-expired", device_id="D",
                              expires_at=now - dt.timedelta(seconds=10)))
        assert q.purge_nonces(session, now - dt.timedelta(hours=1)) == 0
        assert q.purge_nonces(session, now) == 1


def _attestation(device: str, at: dt.datetime, *, verified: bool = False,
                 serial: str | None = None) -> Attestation:
    return Attestation(device_id=device, at=at, verdict="pass" if verified else "fail",
                       quote_verified=verified, evidence_sha256="0" * 64,
                       certificate_serial=serial)


def _certificate(serial: str, not_after: dt.datetime) -> Certificate:
    return Certificate(serial=serial, device_id="A", kind="workload", pem="-",
                       not_before=not_after - dt.timedelta(days=400), not_after=not_after)


def test_retention_keeps_the_latest_the_last_verified_and_those_of_live_certificates(
        engine: sa.Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(days=200)
    rows = [_attestation("A", old + dt.timedelta(minutes=i)) for i in range(10)]
    rows[0] = _attestation("A", old, serial="LIVE")  # its certificate is still valid
    rows[1] = _attestation("A", old + dt.timedelta(minutes=1), serial="EXPIRED")
    rows[2] = _attestation("A", old + dt.timedelta(minutes=2), verified=True)  # superseded
    rows[3] = _attestation("A", old + dt.timedelta(minutes=3), verified=True)  # last verified
    recent = [_attestation("A", now - dt.timedelta(days=1)) for _ in range(2)]
    other = [_attestation("B", old)]  # another device's only attestation
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            session.add_all([*rows, *recent, *other, _certificate("LIVE", now + dt.timedelta(
                hours=1)), _certificate("EXPIRED", now - dt.timedelta(hours=1))])
        ids = {id(r): r.id for r in [*rows, *recent, *other]}
        deleted = q.purge_attestations(session, now - dt.timedelta(days=90), keep=3, now=now)
        left = set(session.exec(select(Attestation.id)).all())
    kept = {ids[id(rows[0])], ids[id(rows[3])], ids[id(rows[9])], *(ids[id(r)] for r in recent),
            ids[id(other[0])]}
    assert left == kept  # A: LIVE, last verified, latest 3 (2 recent + rows[9]); B's one
    assert deleted == len(rows) + len(recent) + len(other) - len(kept)


def test_retention_purges_aged_workload_certificates_only(engine: sa.Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    aged = now - dt.timedelta(days=100)
    identity = _certificate("ID", aged)
    identity.kind = "identity"
    pending = _certificate("PENDING", aged)
    pending.status = "pending"
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            session.add_all([_certificate("OLD", aged), _certificate("NEW", now), identity,
                             pending])
        assert q.purge_workload_certificates(session, now - dt.timedelta(days=90)) == 1
        assert sorted(session.exec(select(Certificate.serial)).all()) == [
            "ID", "NEW", "PENDING"]


@BOTH
def test_replicas_purging_at_once_delete_each_row_once_and_fail_nothing(
        attestor: LiveAttestor) -> None:
    """Four purges at the same moment (as four replicas' timers, with the attestor's own
    running too), over more rows than one batch: every expired nonce is deleted and
    counted exactly once, no pass fails, the live nonce stays."""
    import threading

    from attestor.services import housekeeping

    svc = attestor.services
    now = svc.clock()
    expired = [{"value": f"n{i:05d}", "device_id": "D", "used_at": None,
                "expires_at": now - dt.timedelta(minutes=11)} for i in range(q.BATCH * 2 + 7)]
    with svc.session() as session, session.begin():
        session.connection().execute(sa.insert(Nonce), expired)
        session.add(Nonce(value="live", device_id="D", expires_at=now + dt.timedelta(hours=1)))
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            housekeeping.purge(svc)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    deadline = time.monotonic() + 30  # the attestor's own timer may hold the last batch
    while _purged(attestor, "nonces") < len(expired) and time.monotonic() < deadline:
        time.sleep(0.1)
    with svc.session() as session:
        assert [n.value for n in session.exec(select(Nonce)).all()] == ["live"]
    assert _purged(attestor, "nonces") == len(expired)
