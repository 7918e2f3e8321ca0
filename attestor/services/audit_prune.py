"""Pruning the audit log: the entries up to a signed checkpoint leave the database once
an archive that proves them is in the operator's hands (docs/audit.md, "Pruning").

Nothing is deleted until every check has passed:

- the checkpoint exists in the database and its signature verifies with the
  attestor's keys; it lies after the current anchor and within the chain;
- the database's own chain verifies (tampered entries are evidence: never pruned);
- the archive is a complete (unfiltered) export whose signed last line, chain and
  checkpoints verify with the attestor's keys (:func:`attestor.audit_offline.verify_export`);
  it starts at or before the current anchor, holds that checkpoint, and every entry it
  holds from the anchor to the checkpoint has the database's hash.

Then, in one transaction holding the head's lock, the checkpoint becomes the chain's
anchor (``audit_head.base_seq``/``base_hash``) and an ``audit.pruned`` entry records the
range, the anchor and the archive's SHA-256. The entries up to the anchor (and the
checkpoints before it) are then deleted in batches, each its own short transaction, so
appends wait at most one batch; verification ignores what is left before the anchor,
and the next prune (or a re-run) finishes an interrupted deletion. A refusal deletes
nothing, raises a :class:`PruneRefused` naming its reason code, and is itself audited.

Tree: ``PruneRefused`` (a :class:`identity.errors.Conflict`) > ``ArchiveInvalid``,
``ArchiveFiltered``, ``ArchiveIncomplete``, ``ArchiveMismatch``, ``CheckpointMissing``,
``CheckpointInvalid``, ``NoAnchor``, ``ChainInvalid``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, col, select

from attestor import audit
from attestor.audit_offline import verify_export
from attestor.audit_verify import Mark, anchor, signed
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from identity.errors import Conflict

BATCH = 1000
Keys = Mapping[str, ec.EllipticCurvePublicKey]


class PruneRefused(Conflict):
    code = "audit.prune_refused"


class ArchiveInvalid(PruneRefused):
    code = "audit.prune_archive_invalid"


class ArchiveFiltered(PruneRefused):
    code = "audit.prune_archive_filtered"


class ArchiveIncomplete(PruneRefused):
    code = "audit.prune_archive_incomplete"


class ArchiveMismatch(PruneRefused):
    code = "audit.prune_archive_mismatch"


class CheckpointMissing(PruneRefused):
    code = "audit.prune_checkpoint_missing"


class CheckpointInvalid(PruneRefused):
    code = "audit.prune_checkpoint_invalid"


class NoAnchor(PruneRefused):
    code = "audit.prune_no_anchor"


class ChainInvalid(PruneRefused):
    code = "audit.prune_chain_invalid"


@dataclass(frozen=True)
class Pruned:
    from_seq: int  # the first entry pruned
    through_seq: int  # the anchor: the chain now starts after it
    entries: int  # entries the prune removed from the chain (from_seq..through_seq)
    deleted: int  # rows deleted now (with any an interrupted prune left behind)
    checkpoints_deleted: int
    anchor_hash: str
    archive_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _archive_entries(lines: list[bytes]) -> tuple[int, list[tuple[int, str]], list[Mark]]:
    """The archive's start (the anchor it begins after, 0 at genesis), its entries as
    (seq, hash) and its checkpoints (all already verified)."""
    start, entries, marks = 0, [], []
    for number, raw in enumerate(lines[:-1]):
        value = json.loads(raw)
        if "checkpoint" in value:
            mark = Mark.parse(value["checkpoint"])
            marks.append(mark)
            if number == 0:
                start = mark.seq
        else:
            entries.append((int(value["seq"]), str(value["hash"])))
    return start, entries, marks


def _check_checkpoint(session: Session, keys: Keys, through: int) -> tuple[int, Mark]:
    base, _ = anchor(session)
    head = session.get(AuditHead, 1)
    last = head.seq if head is not None else 0
    if through <= base:
        raise NoAnchor(f"the chain already starts after entry {base}: pruning through "
                       f"{through} would leave no checkpoint-covered anchor")
    if through > last:
        raise NoAnchor(f"checkpoint {through} is past the chain's last entry ({last})")
    row = session.get(AuditCheckpoint, through)
    if row is None:
        raise CheckpointMissing(f"no signed checkpoint at entry {through} "
                                "(`attestor audit checkpoint` signs the head)")
    mark = Mark.of(row)
    if not signed(mark, keys):
        raise CheckpointInvalid(f"checkpoint {through}'s signature does not verify with "
                                "the attestor's keys")
    at = session.get(AuditEvent, through)
    if at is None or at.hash != mark.hash:
        raise CheckpointInvalid(f"checkpoint {through} did not sign the chain's entry "
                                f"{through}")
    return base, mark


def _check_archive(lines: list[bytes], keys: Keys, base: int, mark: Mark
                   ) -> list[tuple[int, str]]:
    report = verify_export(lines, keys)
    if not report.ok or not report.export_signed:
        codes = sorted({str(p["code"]) for p in report.problems}) or ["audit.export_unsigned"]
        raise ArchiveInvalid(f"the archive does not verify with the attestor's keys: "
                             f"{', '.join(codes)}")
    if not report.complete:
        raise ArchiveFiltered("the archive is a filtered export: it does not prove the "
                              "entries it leaves out")
    start, entries, marks = _archive_entries(lines)
    if start > base:
        raise ArchiveIncomplete(f"the archive starts after entry {start}; the chain "
                                f"still holds entries from {base + 1}")
    if report.last_seq < mark.seq or mark not in marks:
        raise ArchiveIncomplete(f"the archive ends at entry {report.last_seq} without "
                                f"checkpoint {mark.seq}")
    return [(seq, digest) for seq, digest in entries if base < seq <= mark.seq]


def _db_hashes(session: Session, base: int, through: int) -> Iterator[tuple[int, str]]:
    last = base
    while True:
        rows = session.execute(sa.select(col(AuditEvent.seq), col(AuditEvent.hash))
                               .where(col(AuditEvent.seq) > last,
                                      col(AuditEvent.seq) <= through)
                               .order_by(col(AuditEvent.seq)).limit(BATCH)).all()
        if not rows:
            return
        yield from ((int(s), str(h)) for s, h in rows)
        last = int(rows[-1][0])


def check(session: Session, keys: Keys, archive: bytes, through: int) -> tuple[int, Mark]:
    """Every check before a prune through checkpoint ``through``; the current anchor's
    seq and the checkpoint that becomes the new one. Raises :class:`PruneRefused`."""
    base, mark = _check_checkpoint(session, keys, through)
    report = audit.verify(session, keys)
    if not report.ok:
        codes = sorted({str(p["code"]) for p in report.problems})
        raise ChainInvalid(f"the database's chain does not verify ({', '.join(codes)}): "
                           "`attestor audit verify` names the entries; nothing pruned")
    archived = _check_archive(archive.splitlines(keepends=True), keys, base, mark)
    stored = list(_db_hashes(session, base, through))
    if len(stored) != through - base:
        raise ChainInvalid(f"the database holds {len(stored)} entries from {base + 1} to "
                           f"{through}, not {through - base}")
    if stored != archived:
        differ = next((s for (s, h), a in zip(stored, archived, strict=False)
                       if (s, h) != a), min(len(stored), len(archived)) + base + 1)
        raise ArchiveMismatch(f"the archive's entry {differ} is not the database's "
                              "(its hash differs or it is missing)")
    return base, mark


def _delete(sessions: Callable[[], Session], through: int, batch: int) -> tuple[int, int]:
    """Delete the entries up to ``through`` in batches, then the checkpoints before it."""
    deleted = 0
    while True:
        with sessions() as session, session.begin():
            upto = session.execute(sa.select(col(AuditEvent.seq))
                                   .where(col(AuditEvent.seq) <= through)
                                   .order_by(col(AuditEvent.seq)).offset(batch - 1)
                                   .limit(1)).scalar()
            result = session.connection().execute(sa.delete(AuditEvent).where(
                col(AuditEvent.seq) <= (through if upto is None else upto))
                .execution_options(synchronize_session=False))
            deleted += result.rowcount
        if upto is None:
            break
    with sessions() as session, session.begin():
        marks = session.connection().execute(sa.delete(AuditCheckpoint)
                                .where(col(AuditCheckpoint.seq) < through)
                                .execution_options(synchronize_session=False)
                                ).rowcount
    return deleted, marks


def prune(sessions: Callable[[], Session], keys: Keys, archive: bytes, through: int, *,
          now: Any, actor: str, batch: int = BATCH) -> Pruned:
    """Prune the entries up to signed checkpoint ``through`` once ``archive`` (an export's
    bytes) is proven to hold them; ``sessions`` opens a session (one per transaction)."""
    digest = hashlib.sha256(archive).hexdigest()
    resumed = _resume(sessions, keys, through, batch)
    if resumed is not None:
        return Pruned(through + 1, through, 0, *resumed, anchor_hash="", archive_sha256=digest)
    try:
        with sessions() as session:
            base, mark = check(session, keys, archive, through)
    except PruneRefused as exc:
        with sessions() as session, session.begin():
            audit.append(session, at=now, actor=actor, action="audit.prune",
                         outcome="refused", reasons=[exc.code], subject=f"audit:{through}",
                         details={"through_seq": through, "archive_sha256": digest,
                                  "detail": exc.detail})
        raise
    with sessions() as session, session.begin():
        moved = session.connection().execute(sa.update(AuditHead).where(
            col(AuditHead.id) == 1, col(AuditHead.base_seq) == base).values(
            base_seq=mark.seq, base_hash=mark.hash)).rowcount
        if moved != 1:
            raise NoAnchor("another prune moved the anchor meanwhile: nothing pruned")
        audit.append(session, at=now, actor=actor, action="audit.pruned", outcome="success",
                     subject=f"audit:{mark.seq}",
                     details={"from_seq": base + 1, "through_seq": mark.seq,
                              "entries": mark.seq - base, "anchor_hash": mark.hash,
                              "anchor_kid": mark.kid, "archive_sha256": digest})
    deleted, marks = _delete(sessions, mark.seq, batch)
    return Pruned(base + 1, mark.seq, mark.seq - base, deleted, marks, mark.hash, digest)


def _resume(sessions: Callable[[], Session], keys: Keys, through: int, batch: int
            ) -> tuple[int, int] | None:
    """A re-run naming the current anchor finishes an interrupted prune's deletion (rows
    and checkpoints before it), once the anchor's signed checkpoint verifies."""
    with sessions() as session:
        base, base_hash = anchor(session)
        row = session.get(AuditCheckpoint, base) if base else None
        left = session.execute(sa.select(sa.func.count()).select_from(AuditEvent)
                               .where(col(AuditEvent.seq) <= base)).scalar() if base else 0
    if through != base or row is None or not left:
        return None
    if row.hash != base_hash or not signed(Mark.of(row), keys):
        return None  # refused by the checks below
    with sessions() as session:
        if not audit.verify(session, keys).ok:  # e.g. an anchor moved by hand
            return None  # refused by the checks below (nothing deleted)
    return _delete(sessions, base, batch)


def last_checkpoints(session: Session, limit: int = 5) -> list[AuditCheckpoint]:
    """The latest checkpoints (what ``--through-checkpoint`` may name)."""
    return list(session.exec(select(AuditCheckpoint).order_by(
        col(AuditCheckpoint.seq).desc()).limit(limit)).all())
