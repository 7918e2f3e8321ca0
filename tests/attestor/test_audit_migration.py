"""Migration 0006 on SQLite and PostgreSQL: entries written in the version-1 vocabulary
are moved to today's without breaking the chain (their hashes, and the checkpoints
signed over them, still verify), and the mapping itself is checked by `verify`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session

from attestor import audit
from attestor.audit_verify import checkpoint_message
from attestor.db import queries
from attestor.db.chain import GENESIS, entry_hash
from attestor.db.engine import make_engine, upgrade

T0 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())

# What version 1 wrote, word for word (from the git history of attestor/).
V1 = [
    dict(actor="device", action="attestation", outcome="fail", device_id="dev-1",
         reasons=[], details={"reasons": ["policy.pcr_mismatch"]}),
    dict(actor="anonymous", action="auth", outcome="refused", device_id=None,
         reasons=["auth.signature_invalid"], subject="POST /v1/devices/dev-2/challenge",
         details={"source": "10.0.0.9", "claimed_device": "dev-2", "in_window": 1}),
    dict(actor="device", action="attestation", outcome="pass", device_id="dev-1",
         reasons=[], details={"certificate_serial": "ab"}),
    dict(actor="device", action="enrollment.activate", outcome="refused", device_id=None,
         reasons=[], details={"enrollment_id": "e1", "reason": "activation.mismatch"}),
    dict(actor="cli", action="apikey.create", outcome="done", device_id=None, reasons=[],
         subject="apikey:1234", details={"name": "s1", "role": "enroller"}),
    dict(actor="token:bob", action="gate.decision", outcome="deny", device_id="dev-1",
         reasons=["gate.not_attested"], details={"rule": "update"}),
    dict(actor="attestor", action="webhook.dropped", outcome="dropped", device_id=None,
         reasons=[], details={}),
]


def _write_v1(engine: sa.Engine) -> None:
    """Rows exactly as version 1 chained them, and a checkpoint over its head."""
    events = sa.table("audit_events", *(sa.column(c) for c in (
        "seq", "at", "actor", "action", "outcome", "device_id", "subject", "request_id",
        "prev_hash", "hash")), sa.column("reasons", sa.JSON), sa.column("details", sa.JSON))
    prev = GENESIS
    with engine.begin() as conn:
        for seq, row in enumerate(V1, 1):
            fields: dict[str, Any] = {"seq": seq, "at": T0 + dt.timedelta(seconds=seq),
                                      "subject": None, "request_id": f"r{seq}", **row}
            digest = entry_hash(**fields, prev_hash=prev)
            conn.execute(sa.insert(events).values(**fields, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(sa.text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
                     {"s": len(V1), "h": prev})
        # signed as audit.checkpoint signs (rows of this schema: the model is today's)
        signature = KEY.sign(checkpoint_message(len(V1), prev), ec.ECDSA(hashes.SHA256()))
        conn.execute(sa.text("INSERT INTO audit_checkpoints (seq, hash, at, kid, signature)"
                             " VALUES (:s, :h, :at, 'k1', :sig)"),
                     {"s": len(V1), "h": prev, "at": T0, "sig": signature})


def _migrated(db_url: str) -> sa.Engine:
    engine = make_engine(db_url, create=True)
    upgrade(engine, "0005")  # its audit head exists: migration 0003 made it
    _write_v1(engine)
    upgrade(engine)
    return engine


def _report(engine: sa.Engine) -> audit.AuditReport:
    with Session(engine) as session:
        return audit.verify(session, {"k1": KEY.public_key()})


def test_v1_entries_read_in_the_new_vocabulary_and_still_verify(db_url: str) -> None:
    engine = _migrated(db_url)
    try:
        with Session(engine) as session:
            rows = [audit.event_json(e) for e in queries.audit_events(session)]
        got = [(r["version"], r["actor"], r["outcome"], r["device_id"], r["reasons"])
               for r in rows]
        assert got == [
            (1, "device:dev-1", "refused", "dev-1", ["policy.pcr_mismatch"]),
            (1, "anonymous", "refused", "dev-2", ["auth.signature_invalid"]),
            (1, "device:dev-1", "success", "dev-1", []),
            (1, "device", "refused", None, ["activation.mismatch"]),
            (1, "cli", "success", None, []),
            (1, "token:bob", "refused", "dev-1", ["gate.not_attested"]),
            (1, "attestor", "alert", None, []),
        ]
        assert rows[0]["legacy"] == {"actor": "device", "outcome": "fail", "reasons": []}
        assert rows[1]["legacy"] == {"device_id": None}
        assert rows[0]["details"] == V1[0]["details"]  # details are never rewritten
        report = _report(engine)
        assert report.ok and report.anchored_seq == len(V1), report.problems
        with Session(engine) as session:  # the filters see the new vocabulary
            by_device = queries.audit_page(session, queries.AuditFilter(device_id="dev-2"),
                                           0, 10)
            by_reason = queries.audit_page(session, queries.AuditFilter(
                reason="policy.pcr_mismatch"), 0, 10)
        assert [e.seq for e in by_device] == [2] and [e.seq for e in by_reason] == [1]
        with Session(engine) as session, session.begin():  # the chain goes on in format 2
            audit.append(session, at=T0, actor="token:alice", action="device.release",
                         outcome="success", device_id="dev-1")
        assert _report(engine).ok
    finally:
        engine.dispose()


def _tampered(db_url: str, statement: str) -> set[str]:
    engine = _migrated(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
        return {str(p["code"]) for p in _report(engine).problems}
    finally:
        engine.dispose()


def test_a_mapped_field_edited_after_the_migration_is_named(db_url: str) -> None:
    """The mapped columns are not covered by the v1 hash: verify derives them again."""
    assert _tampered(db_url, "UPDATE audit_events SET outcome = 'success' WHERE seq = 1") \
        == {"audit.edited"}


def test_a_legacy_value_edited_is_named(db_url: str) -> None:
    assert _tampered(db_url, "UPDATE audit_events SET legacy = NULL WHERE seq = 1") \
        == {"audit.edited"}


def test_a_v1_entry_relabelled_v2_is_named(db_url: str) -> None:
    assert _tampered(db_url, "UPDATE audit_events SET version = 2 WHERE seq = 3") \
        == {"audit.edited"}


def test_the_migration_downgrades_while_every_entry_is_v1(db_url: str) -> None:
    engine = _migrated(db_url)
    try:
        upgrade_engine = engine
        from alembic import command

        from attestor.db.engine import _config

        command.downgrade(_config(upgrade_engine), "0005")
        with engine.connect() as conn:
            outcomes = [r[0] for r in conn.execute(sa.text(
                "SELECT outcome FROM audit_events ORDER BY seq"))]
        assert outcomes == [str(r["outcome"]) for r in V1]
    finally:
        engine.dispose()
