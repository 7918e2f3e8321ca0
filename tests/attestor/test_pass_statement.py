"""The merged statements of the attestation cycle on PostgreSQL. The one that records a
pass takes its row locks in the order every other writer does (the device's row, then
the audit head), so it cannot deadlock with, say, a quarantine of the same device; and it
writes what the separate statements wrote. The one that opens an attestation runs in
autocommit, so it writes nothing more once it finds a nonce spent: a replayed request
spends no challenge nonce, a spent challenge nonce reserves no serial."""

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


def _open(conn: psycopg.Connection, request: str | None, nonce: str,
          serial: str) -> tuple[bool, bool]:
    later = NOW + dt.timedelta(minutes=5)
    return aq.open_attestation_pg(
        conn, ("dev-1", request, later) if request is not None else None,
        (nonce, "dev-1", later, NOW), (serial, "dev-1", "workload", NOW, later))


def _written(conn: psycopg.Connection) -> tuple[list[str], list[str], list[str]]:
    return ([r[0] for r in conn.execute("SELECT nonce FROM request_nonces ORDER BY 1")],
            [r[0] for r in conn.execute("SELECT value FROM nonces ORDER BY 1")],
            [r[0] for r in conn.execute("SELECT serial FROM certificates ORDER BY 1")])


@pytest.mark.parametrize("signed", [True, False])
def test_the_open_statement_writes_nothing_after_a_spent_nonce(pg: str, signed: bool) -> None:
    with psycopg.connect(pg, autocommit=True) as conn:
        request = "r1" if signed else None
        assert _open(conn, request, "n1", "c1") == (True, True)
        assert _written(conn) == (["r1"] if signed else [], ["n1"], ["ab", "c1"])
        # a fresh request with a spent challenge nonce: the request is spent, no serial
        assert _open(conn, "r2" if signed else None, "n1", "c2") == (True, False)
        assert _written(conn) == (["r1", "r2"] if signed else [], ["n1"], ["ab", "c1"])
        if signed:  # a replayed request: not even a fresh challenge nonce is spent
            assert _open(conn, "r1", "n2", "c3") == (False, False)
            assert _written(conn) == (["r1", "r2"], ["n1"], ["ab", "c1"])


def test_a_failed_statement_leaves_the_connection_as_it_found_it(pg: str, pg_url: str) -> None:
    """The autocommit block hands the pooled connection back in its usual mode."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            with pytest.raises(psycopg.errors.UndefinedTable), aq.each_statement_atomic(conn):
                aq.driver(conn).execute("SELECT 1 FROM no_such_table")
            assert aq.driver(conn).autocommit is False
            with conn.begin():
                assert conn.execute(sa.text("SELECT count(*) FROM devices")).scalar() == 1
    finally:
        engine.dispose()
