"""Pruning the audit log on SQLite and PostgreSQL (attestor/services/audit_prune.py):
entries leave the database only against a complete, verifying archive that holds them;
the signed checkpoint becomes the chain's anchor, and verification (online and of an
export) starts there, still naming every deletion, edit or reordering after it and any
forged anchor. A refusal names its reason and deletes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, select

from attestor import audit
from attestor.audit_offline import verify_export
from attestor.db import queries
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from attestor.services import audit_prune
from attestor.services.audit_export import export_lines

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "k1"
KEYS = {KID: KEY.public_key()}
OTHER = ec.generate_private_key(ec.SECP256R1())


def _fill(engine: sa.Engine, first: int, last: int, checkpoints: tuple[int, ...] = ()) -> None:
    for i in range(first, last + 1):
        with Session(engine) as session, session.begin():
            audit.append(session, at=T0 + dt.timedelta(seconds=i), actor="token:alice",
                         action="device.quarantine", outcome="success", device_id=f"d{i}",
                         details={"n": i})
            if i in checkpoints:
                audit.checkpoint(session, KEY, KID, T0 + dt.timedelta(seconds=i))


def _svc(engine: sa.Engine, key: ec.EllipticCurvePrivateKey = KEY,
         kid: str = KID) -> SimpleNamespace:
    return SimpleNamespace(session=lambda: Session(engine), clock=lambda: T0,
                           signer=SimpleNamespace(key=key, kid=kid))


def _export(engine: sa.Engine, f: queries.AuditFilter | None = None, **kw: object) -> bytes:
    return b"".join(export_lines(_svc(engine, **kw), f or queries.AuditFilter()))  # type: ignore[arg-type]


def _sessions(engine: sa.Engine) -> Callable[[], Session]:
    return lambda: Session(engine)


def _prune(engine: sa.Engine, archive: bytes, through: int,
           batch: int = 3) -> audit_prune.Pruned:
    return audit_prune.prune(_sessions(engine), KEYS, archive, through, now=T0,
                             actor="cli:ops@host", batch=batch)


def _verify(engine: sa.Engine) -> audit.AuditReport:
    with Session(engine) as session:
        return audit.verify(session, KEYS)


def _codes(report: audit.AuditReport) -> set[str]:
    return {str(p["code"]) for p in report.problems}


def _seqs(engine: sa.Engine) -> list[int]:
    with Session(engine) as session:
        return [e.seq for e in session.exec(select(AuditEvent).order_by(AuditEvent.seq))]


def _sql(engine: sa.Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


@pytest.fixture
def pruned(engine: sa.Engine) -> Iterator[sa.Engine]:
    """Entries 1..12 with checkpoints at 4 and 8, pruned through 8 against a full export;
    then entries 14..16 and a checkpoint at 15 (13 is the audit.pruned entry)."""
    _fill(engine, 1, 12, checkpoints=(4, 8))
    result = _prune(engine, _export(engine), 8)
    assert (result.from_seq, result.through_seq, result.deleted) == (1, 8, 8)
    _fill(engine, 14, 16, checkpoints=(15,))
    yield engine


def test_prune_then_verify(pruned: sa.Engine) -> None:
    assert _seqs(pruned) == list(range(9, 17))
    report = _verify(pruned)
    assert report.ok, report.problems
    assert (report.base_seq, report.entries, report.last_seq, report.anchored_seq) == \
        (8, 8, 16, 15)
    with Session(pruned) as session:
        head = session.get(AuditHead, 1)
        marks = [c.seq for c in session.exec(select(AuditCheckpoint))]
        record = session.get(AuditEvent, 13)
    assert head is not None and head.base_seq == 8
    assert sorted(marks) == [8, 15]  # the checkpoint before the anchor went with its entries
    assert record is not None and record.action == "audit.pruned"
    assert record.details["from_seq"] == 1 and record.details["through_seq"] == 8
    assert record.details["anchor_hash"] == head.base_hash
    assert len(record.details["archive_sha256"]) == 64


def test_a_second_prune_takes_an_archive_from_the_anchor_or_from_genesis(
        engine: sa.Engine) -> None:
    _fill(engine, 1, 6, checkpoints=(3,))
    old = _export(engine)
    _prune(engine, old, 3)
    _fill(engine, 8, 10, checkpoints=(9,))
    with pytest.raises(audit_prune.ArchiveIncomplete):  # old ends before checkpoint 9
        _prune(engine, old, 9)
    _prune(engine, _export(engine), 9)  # an export starting at the anchor
    assert _seqs(engine)[0] == 10 and _verify(engine).ok


def test_an_export_after_the_prune_verifies_offline(pruned: sa.Engine) -> None:
    data = _export(pruned)
    first = json.loads(data.splitlines()[0])
    assert first["checkpoint"]["seq"] == 8  # the anchor comes first
    report = verify_export(data.splitlines(keepends=True), KEYS)
    assert report.ok and report.export_signed, report.problems
    assert (report.base_seq, report.entries, report.last_seq) == (8, 8, 16)
    # without its anchor line the export no longer verifies
    lines = data.splitlines(keepends=True)
    assert not verify_export(lines[1:], KEYS).ok


def test_an_export_from_before_the_prune_still_verifies(engine: sa.Engine) -> None:
    _fill(engine, 1, 6, checkpoints=(4,))
    before = _export(engine)
    _prune(engine, before, 4)
    report = verify_export(before.splitlines(keepends=True), KEYS)
    assert report.ok and report.base_seq == 0 and report.last_seq == 6


def _refused(engine: sa.Engine, archive: bytes, through: int,
             error: type[audit_prune.PruneRefused]) -> None:
    before = _seqs(engine)
    with pytest.raises(error) as caught:
        _prune(engine, archive, through)
    assert caught.value.code.startswith("audit.prune_")
    assert _seqs(engine)[:len(before)] == before  # nothing deleted
    with Session(engine) as session:
        head = session.get(AuditHead, 1)
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]
    assert head is not None and head.base_seq == 0
    assert last is not None and last.action == "audit.prune" and last.outcome == "refused"
    assert last.reasons == [error.code]
    assert _verify(engine).ok


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def test_a_truncated_archive_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(4, 6))
    archive = _lines(_export(engine))
    cut = next(i for i, line in enumerate(archive) if b'"seq":3,' in line)
    _refused(engine, b"".join(archive[:cut]), 6, audit_prune.ArchiveInvalid)  # cut off
    # an honest export taken before checkpoint 6 existed: intact, but does not hold it
    _sql(engine, "DELETE FROM audit_checkpoints WHERE seq = 6")
    early = _export(engine)
    with Session(engine) as session, session.begin():
        audit.checkpoint(session, KEY, KID, T0)  # signs the head (now past 6)
    head = _seqs(engine)[-1]
    _refused(engine, early, head, audit_prune.ArchiveIncomplete)


def test_an_archive_missing_entries_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _lines(_export(engine))
    drop = next(i for i, line in enumerate(archive) if b'"seq":2,' in line)
    _refused(engine, b"".join(archive[:drop] + archive[drop + 1:]), 6,
             audit_prune.ArchiveInvalid)


def test_a_filtered_export_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine, queries.AuditFilter(action="device.quarantine"))
    _refused(engine, archive, 6, audit_prune.ArchiveFiltered)


def test_a_flipped_byte_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    data = _export(engine)
    at = data.index(b'"d3"') + 2
    _refused(engine, data[:at] + b"X" + data[at + 1:], 6, audit_prune.ArchiveInvalid)


def test_an_archive_signed_with_another_key_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    _refused(engine, _export(engine, key=OTHER, kid=KID), 6, audit_prune.ArchiveInvalid)


def test_an_archive_whose_hashes_differ_is_refused(engine: sa.Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: both chains verify against the same checkpoint, so their hashes
    agree; the entry-by-entry comparison still refuses if the database's differ."""
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine)
    real = audit_prune._db_hashes

    def rewritten(session: Session, base: int, through: int) -> Iterator[tuple[int, str]]:
        for seq, digest in real(session, base, through):
            yield seq, ("f" * 64 if seq == 3 else digest)

    monkeypatch.setattr(audit_prune, "_db_hashes", rewritten)
    _refused(engine, archive, 6, audit_prune.ArchiveMismatch)


def test_a_nonexistent_checkpoint_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine)
    _refused(engine, archive, 5, audit_prune.CheckpointMissing)
    _refused(engine, archive, 99, audit_prune.NoAnchor)


def test_a_checkpoint_whose_signature_fails_is_refused(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine)
    _sql(engine, "UPDATE audit_checkpoints SET kid = 'other' WHERE seq = 6")
    _refused_dirty(engine, archive, 6, audit_prune.CheckpointInvalid)


def _refused_dirty(engine: sa.Engine, archive: bytes, through: int,
                   error: type[audit_prune.PruneRefused]) -> None:
    """As :func:`_refused`, for a database whose chain no longer verifies."""
    before = _seqs(engine)
    with pytest.raises(error):
        _prune(engine, archive, through)
    assert _seqs(engine)[:len(before)] == before


def test_a_tampered_database_is_not_pruned(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine)
    _sql(engine, "UPDATE audit_events SET actor = 'token:mallory' WHERE seq = 2")
    _refused_dirty(engine, archive, 6, audit_prune.ChainInvalid)


def test_pruning_through_the_anchor_again_is_refused(pruned: sa.Engine) -> None:
    with pytest.raises(audit_prune.NoAnchor):
        _prune(pruned, _export(pruned), 8)
    with pytest.raises(audit_prune.NoAnchor):
        _prune(pruned, _export(pruned), 4)


def test_an_interrupted_deletion_is_ignored_then_finished(engine: sa.Engine) -> None:
    _fill(engine, 1, 8, checkpoints=(6,))
    archive = _export(engine)
    real = audit_prune._delete
    audit_prune._delete = lambda *a: (0, 0)  # type: ignore[assignment]
    try:
        _prune(engine, archive, 6)
    finally:
        audit_prune._delete = real  # type: ignore[assignment]
    assert _seqs(engine)[0] == 1 and _verify(engine).ok  # before the anchor: not the chain
    assert verify_export(_lines(_export(engine)), KEYS).ok
    result = _prune(engine, archive, 6)  # a re-run finishes the deletion
    assert result.deleted == 6 and _seqs(engine)[0] == 7 and _verify(engine).ok


AFTER: dict[str, tuple[str, set[str]]] = {
    "delete-after-anchor": ("DELETE FROM audit_events WHERE seq = 10", {"audit.deleted"}),
    "delete-first-after-anchor": ("DELETE FROM audit_events WHERE seq = 9",
                                  {"audit.deleted"}),
    "edit-after-anchor": ("UPDATE audit_events SET outcome = 'error' WHERE seq = 11",
                          {"audit.edited"}),
    "reorder-after-anchor": ("UPDATE audit_events SET seq = seq + 100 WHERE seq = 10",
                             {"audit.deleted"}),
    "anchor-hash": ("UPDATE audit_head SET base_hash = '" + "1" * 64 + "'",
                    {"audit.anchor_invalid", "audit.reordered"}),
    "anchor-moved-back": ("UPDATE audit_head SET base_seq = 4", {"audit.anchor_invalid"}),
    "anchor-reset": ("UPDATE audit_head SET base_seq = 0, base_hash = '" + "0" * 64 + "'",
                     {"audit.deleted"}),
    "anchor-checkpoint-deleted": ("DELETE FROM audit_checkpoints WHERE seq = 8",
                                  {"audit.anchor_invalid"}),
    "anchor-checkpoint-unsigned": ("UPDATE audit_checkpoints SET kid = 'x' WHERE seq = 8",
                                   {"audit.anchor_invalid", "audit.checkpoint_invalid"}),
    "anchor-checkpoint-rehashed": ("UPDATE audit_checkpoints SET hash = '" + "2" * 64
                                   + "' WHERE seq = 8",
                                   {"audit.anchor_invalid", "audit.checkpoint_invalid"}),
    "prune-record-deleted": ("DELETE FROM audit_events WHERE seq = 13",
                             {"audit.anchor_unrecorded"}),
}


@pytest.mark.parametrize("name", sorted(AFTER))
def test_tampering_after_a_prune_is_named(pruned: sa.Engine, name: str) -> None:
    statement, expected = AFTER[name]
    _sql(pruned, statement)
    report = _verify(pruned)
    assert not report.ok
    assert expected <= _codes(report), report.problems


def test_an_anchor_moved_by_hand_is_named_and_never_finished(engine: sa.Engine) -> None:
    """Someone with database access moves the anchor to a real checkpoint, leaving the
    entries before it: named, and a prune through it deletes nothing."""
    _fill(engine, 1, 8, checkpoints=(4,))
    archive = _export(engine)
    with Session(engine) as session:
        mark = session.get(AuditCheckpoint, 4)
    assert mark is not None
    _sql(engine, "UPDATE audit_head SET base_seq = 4, base_hash = :h", h=mark.hash)
    assert "audit.anchor_unrecorded" in _codes(_verify(engine))
    with pytest.raises(audit_prune.NoAnchor):
        _prune(engine, archive, 4)
    assert _seqs(engine)[0] == 1


def test_a_forged_prune_with_a_real_checkpoint_is_named(engine: sa.Engine) -> None:
    """Someone with database access deletes entries up to a real checkpoint and moves the
    anchor there: no audit.pruned entry names that anchor."""
    _fill(engine, 1, 8, checkpoints=(4,))
    with Session(engine) as session:
        mark = session.get(AuditCheckpoint, 4)
    assert mark is not None
    _sql(engine, "DELETE FROM audit_events WHERE seq <= 4")
    _sql(engine, "UPDATE audit_head SET base_seq = 4, base_hash = :h", h=mark.hash)
    assert "audit.anchor_unrecorded" in _codes(_verify(engine))
