"""Storage on SQLite and PostgreSQL: migrations, single-use values under races, policies."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel

from attestor.db import attestation_queries as aq
from attestor.db import queries
from attestor.db.engine import head_revision, is_current
from attestor.db.models import Enrollment, Nonce
from identity.errors import (
    ActivationExpired,
    ActivationUnknown,
    ActivationUsed,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_migrations_reach_head_and_match_the_models(engine: sa.Engine) -> None:
    assert is_current(engine) and head_revision() == "0009"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_times_come_back_timezone_aware(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert aq.spend_nonce(conn, "aa", "d", NOW, NOW)
    with Session(engine) as session:
        row = session.get(Nonce, "aa")
        assert row is not None and row.expires_at == NOW and row.expires_at.tzinfo is not None


def _spend(engine: sa.Engine, value: str = "n1", device: str = "d1") -> bool:
    with engine.begin() as conn:
        return aq.spend_nonce(conn, value, device, NOW + dt.timedelta(seconds=60), NOW)


def test_nonce_is_single_use(engine: sa.Engine) -> None:
    """The challenge nonce's single use: the first insert wins, a replay finds it spent,
    also when the replay names another device."""
    assert _spend(engine)
    assert not _spend(engine)
    assert not _spend(engine, device="d2")
    assert _spend(engine, value="n2")


def test_racing_consumers_spend_a_nonce_once(engine: sa.Engine) -> None:
    """Eight threads (as eight replicas would) race for each of 20 nonces."""
    wins: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(20):
            try:
                if not _spend(engine, value=f"race{i}"):
                    continue
            except sa.exc.OperationalError:  # SQLite busy: a loss, never a double win
                continue
            with lock:
                wins.append(f"race{i}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == len(set(wins))
    assert len(wins) >= 1


def _enrollment(engine: sa.Engine, expires: dt.datetime) -> None:
    with Session(engine) as session, session.begin():
        queries.add_enrollment(session, Enrollment(
            id="e1", device_id="d1", ek_public=b"ek", ak_public=b"ak", devid_public=b"dv",
            secret_digest=b"\x00" * 32, created_at=NOW, expires_at=expires))


def test_enrollment_challenge_is_single_use_and_expires(engine: sa.Engine) -> None:
    _enrollment(engine, NOW + dt.timedelta(minutes=5))
    with Session(engine) as session, session.begin():
        assert queries.consume_enrollment(session, "e1", NOW).device_id == "d1"
    for enrollment_id, error in (("e1", ActivationUsed), ("e2", ActivationUnknown)):
        with Session(engine) as session, session.begin(), pytest.raises(error):
            queries.consume_enrollment(session, enrollment_id, NOW)


def test_expired_enrollment_challenge(engine: sa.Engine) -> None:
    _enrollment(engine, NOW - dt.timedelta(seconds=1))
    with Session(engine) as session, session.begin(), pytest.raises(ActivationExpired):
        queries.consume_enrollment(session, "e1", NOW)


def test_policy_versions_are_immutable_and_increasing(engine: sa.Engine) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        first = queries.add_policy_version(session, "cam", {"pcrs": [0]}, "t", NOW)
        second = queries.add_policy_version(session, "cam", {"pcrs": [1]}, "t", NOW)
        other = queries.add_policy_version(session, "gw", {"pcrs": [2]}, "t", NOW)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    with Session(engine) as session:
        current = queries.current_policy(session, "cam")
        assert current is not None and current.document == {"pcrs": [1]}


def test_a_signed_requests_nonce_is_spent_once(engine: sa.Engine) -> None:
    """Insert-if-absent on both databases: the first use records it, a replay finds it."""
    with engine.begin() as conn:
        assert queries.spend_request_nonce(conn, "dev-1", "n-1", NOW)
        assert not queries.spend_request_nonce(conn, "dev-1", "n-1", NOW)
        assert queries.spend_request_nonce(conn, "dev-2", "n-1", NOW)  # per device
    with engine.begin() as conn:
        assert not queries.spend_request_nonce(conn, "dev-1", "n-1", NOW)


@pytest.mark.parametrize("newer", ["00aa", "ffee"])
def test_the_current_certificate_is_the_newest_when_two_share_a_second(
        engine: sa.Engine, newer: str) -> None:
    """X.509 times have whole seconds: two renewals in one second give two certificates
    with the same notBefore. The current one is the one the later attestation issued,
    whichever way the serials sort."""
    from attestor.db.models import Attestation, Certificate

    older = "ffee" if newer == "00aa" else "00aa"
    second = dt.datetime(2026, 12, 2, 6, 0, 0, tzinfo=dt.UTC)
    with Session(engine) as session, session.begin():
        for serial in (older, newer):  # issued in this order, each by its attestation
            session.add(Certificate(serial=serial, device_id="dev-1", kind="workload",
                                    not_before=second,
                                    not_after=second + dt.timedelta(hours=1), pem="-"))
            session.add(Attestation(device_id="dev-1", at=second, verdict="pass",
                                    evidence_sha256="0" * 64, certificate_serial=serial))
            session.flush()
    with Session(engine) as session:
        current = queries.current_certificate(session, "dev-1")
        assert current is not None and current.serial == newer
