"""The hash-chained audit log on SQLite and PostgreSQL: every kind of tampering with the
stored rows is named by `verify`; appends fail closed; nothing secret gets in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session

from attestor import audit
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from identity.errors import AuditUnavailable

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "k1"


def _fill(engine: sa.Engine, count: int = 6, checkpoint_at: int | None = None) -> None:
    for i in range(1, count + 1):
        with Session(engine) as session, session.begin():
            audit.append(session, at=T0 + dt.timedelta(seconds=i), actor="token:alice",
                         action="device.quarantine", outcome="success", device_id=f"d{i}",
                         subject=f"device:d{i}", reasons=["policy.pcr_mismatch"],
                         details={"from": "active", "to": "quarantined", "n": i},
                         request_id=f"req-{i}")
            if i == checkpoint_at:
                audit.checkpoint(session, KEY, KID, T0)


def _verify(engine: sa.Engine) -> audit.AuditReport:
    with Session(engine) as session:
        return audit.verify(session, {KID: KEY.public_key()})


def _codes(report: audit.AuditReport) -> set[str]:
    return {str(p["code"]) for p in report.problems}


def _sql(engine: sa.Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_an_untouched_log_verifies(engine: sa.Engine) -> None:
    _fill(engine, checkpoint_at=4)
    report = _verify(engine)
    assert report.ok and report.entries == 6 and report.last_seq == 6
    assert report.checkpoints == 1 and report.anchored_seq == 4
    with Session(engine) as session:
        events = session.exec(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert events[0].request_id == "req-1"


TAMPERS: dict[str, tuple[Callable[[sa.Engine], None], set[str]]] = {
    # Someone with database access rewrites an outcome.
    "edit": (lambda e: _sql(e, "UPDATE audit_events SET outcome = 'error' WHERE seq = 3"),
             {"audit.edited"}),
    # ... or the actor of an entry covered by a checkpoint, and re-hashes the whole chain.
    "edit-and-rechain": (lambda e: _rechain(e, 2), {"audit.edited"}),
    # ... deletes an embarrassing entry.
    "delete": (lambda e: _sql(e, "DELETE FROM audit_events WHERE seq = 3"),
               {"audit.deleted", "audit.reordered"}),
    # ... swaps two entries' positions.
    "reorder": (lambda e: _swap(e, 3, 4), {"audit.reordered", "audit.edited"}),
    # ... cuts the tail off.
    "truncate": (lambda e: _sql(e, "DELETE FROM audit_events WHERE seq > 4"),
                 {"audit.truncated"}),
    # ... cuts the tail and rewinds the head to match: the signed checkpoint still says 5.
    "truncate-and-rewind": (lambda e: _rewind(e, 4), {"audit.truncated"}),
    # ... forges a checkpoint over a rewritten chain.
    "forged-checkpoint": (lambda e: _sql(e, "UPDATE audit_checkpoints SET hash = :h",
                                         h="ab" * 32), {"audit.checkpoint_invalid"}),
}


def _swap(engine: sa.Engine, a: int, b: int) -> None:
    _sql(engine, "UPDATE audit_events SET seq = -1 WHERE seq = :a", a=a)
    _sql(engine, "UPDATE audit_events SET seq = :a WHERE seq = :b", a=a, b=b)
    _sql(engine, "UPDATE audit_events SET seq = :b WHERE seq = -1", b=b)


def _rechain(engine: sa.Engine, seq: int) -> None:
    """Edit entry ``seq`` and recompute every hash after it, head included: only the
    signed checkpoint can tell."""
    from attestor.db.chain import GENESIS, entry_hash_v2

    _sql(engine, "UPDATE audit_events SET actor = 'token:mallory' WHERE seq = :s", s=seq)
    with Session(engine) as session, session.begin():
        prev = GENESIS
        for event in session.exec(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars():
            event.prev_hash = prev
            event.hash = entry_hash_v2(
                seq=event.seq, at=event.at, actor=event.actor, action=event.action,
                outcome=event.outcome, device_id=event.device_id, subject=event.subject,
                reasons=list(event.reasons), request_id=event.request_id,
                client_address=event.client_address, user_agent=event.user_agent,
                details=dict(event.details), prev_hash=prev)
            prev = event.hash
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash = prev


def _rewind(engine: sa.Engine, keep: int) -> None:
    with Session(engine) as session, session.begin():
        kept = session.get(AuditEvent, keep) or session.exec(
            sa.select(AuditEvent).where(AuditEvent.seq == keep)).scalar_one()
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = keep, kept.hash
    _sql(engine, "DELETE FROM audit_events WHERE seq > :k", k=keep)


@pytest.mark.adversarial
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampering_is_detected(engine: sa.Engine, tamper: str) -> None:
    action, expected = TAMPERS[tamper]
    _fill(engine, checkpoint_at=5)
    assert _verify(engine).ok
    action(engine)
    report = _verify(engine)
    assert not report.ok
    assert expected <= _codes(report), report.problems


def test_checkpoints_are_only_written_when_the_head_moved(engine: sa.Engine) -> None:
    _fill(engine, count=2)
    with Session(engine) as session, session.begin():
        assert audit.checkpoint(session, KEY, KID, T0) is not None
        assert audit.checkpoint(session, KEY, KID, T0) is None
    with Session(engine) as session:
        assert len(session.exec(sa.select(AuditCheckpoint)).all()) == 1


def test_a_checkpoint_under_an_unknown_key_does_not_verify(engine: sa.Engine) -> None:
    _fill(engine, count=2)
    with Session(engine) as session, session.begin():
        audit.checkpoint(session, ec.generate_private_key(ec.SECP256R1()), "other", T0)
    assert _codes(_verify(engine)) == {"audit.checkpoint_invalid"}


@pytest.mark.parametrize("details", [
    {"value": "s3cret"}, {"nested": {"token": "eyJ..."}}, {"items": [{"nonce": "ab"}]},
    {"api_key": "ep_x_y"}, {"Private_Key": "-----BEGIN"},
])
def test_secret_shaped_details_are_refused(engine: sa.Engine, details: dict[str, object]) -> None:
    with Session(engine) as session, session.begin(), pytest.raises(ValueError):
        audit.append(session, at=T0, actor="a", action="b", outcome="success",
                     details=details)


def test_a_failing_audit_write_fails_the_operation(engine: sa.Engine) -> None:
    """The database refuses audit rows (a full disk, a revoked grant): the append raises
    the typed error and the caller's transaction, with its work, is rolled back."""
    _fill(engine, count=1)
    _block_audit_writes(engine)
    with Session(engine) as session, pytest.raises(AuditUnavailable):
        with session.begin():
            session.add(AuditCheckpoint(seq=99, hash="0" * 64, at=T0, kid="x",
                                        signature=b"x"))  # the operation's own work
            audit.append(session, at=T0, actor="a", action="b", outcome="success")
    with Session(engine) as session:
        assert session.get(AuditCheckpoint, 99) is None
    assert _verify(engine).ok


def _block_audit_writes(engine: sa.Engine) -> None:
    """A real database-side refusal of audit inserts."""
    if engine.dialect.name == "sqlite":
        _sql(engine, "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events "
                     "BEGIN SELECT RAISE(ABORT, 'audit storage refused'); END")
    else:
        _sql(engine, "CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                     "RAISE EXCEPTION 'audit storage refused'; END $$ LANGUAGE plpgsql")
        _sql(engine, "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events "
                     "FOR EACH ROW EXECUTE FUNCTION no_audit()")
