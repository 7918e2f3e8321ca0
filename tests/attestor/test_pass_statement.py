"""The merged statement that records a pass on PostgreSQL takes its row locks in the
order every other writer does (the device's row, then the audit head), so it cannot
deadlock with, say, a quarantine of the same device; and it writes what the separate
statements wrote."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from attestor.db import attestation_queries as aq
from attestor.db.engine import make_engine, upgrade

pytestmark = pytest.mark.pg
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def pg(pg_url: str) -> Iterator[str]:
    engine = make_engine(pg_url, create=True)
    upgrade(engine)
    engine.dispose()
    plain = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (id, device_class, state, ek_public, ak_public,"
                     " ak_name, devid_public, enrolled_at, last_reasons) VALUES"
                     " ('dev-1', 'default', 'active', '\\x00', '\\x00', '00', '\\x00', %s, '')",
                     (NOW,))
        conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s)"
                     " ON CONFLICT DO NOTHING", ("0" * 64,))
        conn.execute(aq._PG_RESERVE, ("ab", "dev-1", "workload", NOW, NOW))
    yield plain


def _attestation() -> dict[str, object]:
    return {"device_id": "dev-1", "at": NOW, "verdict": "pass", "reasons": [],
            "checks": [{"name": "quote.signature", "passed": True}], "warnings": [],
            "policy_id": None, "policy_version": None, "quote_verified": True,
            "pcr_values": {}, "evidence_sha256": "00" * 32, "certificate_serial": "ab",
            "event_log": None}


def test_the_device_row_is_locked_before_the_audit_head(pg: str) -> None:
    with psycopg.connect(pg) as other, psycopg.connect(pg) as ours, \
            psycopg.connect(pg, autocommit=True) as probe:
        ours.execute("SET lock_timeout = '20s'")  # a failure here must not hang the suite
        other.execute("SELECT 1 FROM devices WHERE id = 'dev-1' FOR UPDATE")  # a writer
        outcome: list[object] = []

        def record() -> None:
            try:
                outcome.append(aq.record_pass_pg(ours, "dev-1", NOW, (1, 2, 3), None,
                                                 _attestation(), ("ab", "pem", NOW, NOW)))
            except psycopg.Error as exc:
                outcome.append(exc)

        worker = threading.Thread(target=record)
        worker.start()
        try:
            # Wait until our statement is blocked on the device row.
            waiting = False
            for _ in range(200):
                row = probe.execute("SELECT count(*) FROM pg_stat_activity WHERE"
                                    " wait_event_type = 'Lock' AND query LIKE 'WITH d AS%'"
                                    ).fetchone()
                if row is not None and row[0]:
                    waiting = True
                    break
                threading.Event().wait(0.05)
            assert waiting
            # While it waits, the audit head is not locked: another writer can take it.
            with probe.transaction():
                head = probe.execute("SELECT seq FROM audit_head WHERE id = 1"
                                     " FOR UPDATE NOWAIT").fetchone()
            assert head == (0,)
        finally:
            other.rollback()
            worker.join(timeout=30)
        ours.commit()
    assert outcome == [(1, (1, "0" * 64))]
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT last_verdict, clock_value FROM devices").fetchone() \
            == ("pass", 3)
        assert conn.execute("SELECT status, pem FROM certificates").fetchone() \
            == ("issued", "pem")
        assert conn.execute("SELECT count(*) FROM attestations").fetchone() == (1,)
        assert conn.execute("SELECT seq FROM audit_head").fetchone() == (1,)
