"""Verifying the audit chain: recompute every entry's hash (either format of
attestor/db/chain.py), check links, sequence and the signed checkpoints (the
database's, and copies a sink kept), and report what no valid checkpoint covers as
unanchored. :class:`ChainWalk` works on entries as JSON objects, so the database's
verification and the offline one of an export (:mod:`attestor.audit_offline`) are
the same code.

After a prune (:mod:`attestor.services.audit_prune`) the chain starts at an anchor: a
signed checkpoint (``audit_head.base_seq``/``base_hash``, its row kept in
``audit_checkpoints``; the first line of an export). The walk then starts there: the
anchor's signature must verify and match, the first entry must be the anchor's next
with the anchor's hash as its previous one, and an ``audit.pruned`` entry after the
anchor must name it (a forged anchor the chain never recorded is named)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, col, select

from attestor.db.chain import GENESIS, recompute
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead

BATCH = 1000


def checkpoint_message(seq: int, digest: str) -> bytes:
    return f"edgeproof-audit-checkpoint-v1:{seq}:{digest}".encode()


@dataclass
class AuditReport:
    ok: bool = True
    entries: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    anchored_seq: int = 0  # entries up to here are covered by a valid checkpoint
    base_seq: int = 0  # entries up to here were pruned: the chain starts after its anchor
    # After the last valid checkpoint: chain-consistent, but not proven (a writer with
    # database access could have rewritten them and their hashes).
    unanchored_entries: int = 0
    unanchored_since: str | None = None  # when the first of them was written
    external_checkpoints: int = 0  # checkpoints from a sink, checked against the chain
    problems: list[dict[str, object]] = field(default_factory=list)

    def problem(self, code: str, seq: int, detail: str) -> None:
        self.ok = False
        if len(self.problems) < 100:
            self.problems.append({"code": code, "seq": seq, "detail": detail})


@dataclass(frozen=True)
class Mark:
    """A signed checkpoint: from the database, an export, or a copy a sink kept."""

    seq: int
    hash: str
    kid: str
    signature: bytes

    @classmethod
    def of(cls, row: AuditCheckpoint) -> Mark:
        return cls(row.seq, row.hash, row.kid, bytes(row.signature))

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Mark:
        """From its JSON form; ValueError, KeyError or TypeError if it is not one."""
        return cls(int(data["seq"]), str(data["hash"]), str(data["kid"]),
                   base64.b64decode(data["signature"], validate=True))


def read_checkpoints(lines: Iterable[str], tag: str = "edgeproof-audit-checkpoint:"
                     ) -> tuple[list[Mark], list[int]]:
    """Checkpoints from a sink's copy: JSON lines of the file sink, webhook bodies
    (``{"checkpoint": …}``) or syslog lines (JSON after ``tag``); other syslog lines
    are skipped. Returns the checkpoints and the numbers of lines that looked like
    one and were not."""
    marks: list[Mark] = []
    unreadable: list[int] = []
    for number, line in enumerate(lines, 1):
        text = (line.split(tag, 1)[1] if tag in line else line).strip(" \t\r\n\x00")
        if not text.startswith("{"):
            continue
        try:
            data = json.loads(text)
            marks.append(Mark.parse(data.get("checkpoint", data)))
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable.append(number)
    return marks, unreadable


def signed(mark: Mark, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> bool:
    key = keys.get(mark.kid)
    try:
        if key is None:
            raise InvalidSignature
        key.verify(mark.signature, checkpoint_message(mark.seq, mark.hash),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class ChainWalk:
    """Feeds entries in order into ``report``; keeps the hashes at ``wanted`` sequence
    numbers (the checkpoints') and the times of the entries after them."""

    def __init__(self, report: AuditReport, wanted: set[int], linked: bool = True,
                 start: tuple[int, str] = (0, GENESIS)) -> None:
        self.report = report
        self.wanted = wanted
        self.linked = linked  # False for a filtered export: no links or sequence to check
        self.start = start  # (seq, hash) of the anchor the chain starts after (0: genesis)
        self.prev, self.expected = start[1], start[0] + 1
        self.hashes_at: dict[int, str] = {start[0]: start[1]} if start[0] else {}
        self.recorded = start[0] == 0  # an anchor must be named by an audit.pruned entry
        report.base_seq = report.last_seq = start[0]
        self.times_after: dict[int, str] = {}  # checkpoint seq -> time of the next entry
        self.fed: list[tuple[int, str]] = []  # unlinked (filtered) walks: (seq, at) of each

    def feed(self, entry: Mapping[str, Any]) -> None:
        report = self.report
        try:
            seq = int(entry["seq"])
            when = dt.datetime.fromisoformat(str(entry["at"]))
            digest, consistent = recompute({**entry, "at": when})
        except (KeyError, TypeError, ValueError) as exc:
            report.problem("audit.edited", self.expected, f"an entry is unreadable: {exc!r}")
            return
        report.entries += 1
        if self.linked and seq != self.expected:
            report.problem("audit.deleted" if seq > self.expected else "audit.reordered",
                           self.expected, f"entry {seq} where {self.expected} was due")
        if self.linked and entry.get("prev_hash") != self.prev:
            report.problem("audit.reordered", seq, "the entry does not follow the one "
                           "before it")
        if digest != entry.get("hash"):
            report.problem("audit.edited", seq, "the entry's content does not match its "
                           "hash")
        elif not consistent:
            report.problem("audit.edited", seq, "the entry's fields are not those its "
                           "format derives from its hashed content")
        if seq in self.wanted:
            self.hashes_at[seq] = str(entry.get("hash"))
        if seq - 1 in self.wanted or seq == 1:
            self.times_after[seq - 1] = str(entry["at"])
        if not self.linked:
            self.fed.append((seq, str(entry["at"])))
        elif not self.recorded and entry.get("action") == "audit.pruned":
            details = entry.get("details") or {}
            self.recorded = (details.get("through_seq"), details.get("anchor_hash")) == \
                self.start
        self.prev, self.expected = str(entry.get("hash")), seq + 1
        report.last_seq = seq

    def check_marks(self, marks: Iterable[Mark], keys: Mapping[str, ec.EllipticCurvePublicKey],
                    what: str) -> None:
        """A signed mark that matches the chain anchors it up to its seq."""
        report = self.report
        for mark in sorted(set(marks), key=lambda m: m.seq):
            if not signed(mark, keys):
                report.problem("audit.checkpoint_invalid", mark.seq, f"{what}: the "
                               "signature does not verify with the attestor's keys")
            elif mark.seq < self.start[0]:
                continue  # before the anchor: its entries were pruned (in the archive)
            elif mark.seq > report.last_seq:
                report.problem("audit.truncated", mark.seq, f"{what} at {mark.seq} is past "
                               f"the log's end ({report.last_seq})")
            elif self.hashes_at.get(mark.seq) != mark.hash:
                report.problem("audit.edited", mark.seq, f"the chain here differs from the "
                               f"hash {what} signed")
            else:
                report.anchored_seq = max(report.anchored_seq, mark.seq)

    def check_anchor(self, mark: Mark | None, keys: Mapping[str, ec.EllipticCurvePublicKey]
                     ) -> None:
        """The anchor the walk started after: a checkpoint there, signed, that signed
        exactly the anchor's hash."""
        seq, digest = self.start
        if seq == 0:
            return
        if mark is None or mark.seq != seq:
            self.report.problem("audit.anchor_invalid", seq, f"no checkpoint at the anchor "
                                f"{seq} the chain starts after")
        elif not signed(mark, keys):
            self.report.problem("audit.anchor_invalid", seq, "the anchor's checkpoint "
                                "signature does not verify with the attestor's keys")
        elif mark.hash != digest:
            self.report.problem("audit.anchor_invalid", seq, "the anchor's hash is not the "
                                "one its checkpoint signed")

    def finish(self) -> None:
        report = self.report
        if self.linked and not self.recorded:
            report.problem("audit.anchor_unrecorded", self.start[0], "no audit.pruned entry "
                           "after the anchor names it (a prune the chain did not record)")
        if not self.linked:  # a filtered export: count the entries it holds, not the log's
            after = [at for seq, at in self.fed if seq > report.anchored_seq]
            report.unanchored_entries = len(after)
            report.unanchored_since = after[0] if after else None
            return
        report.unanchored_entries = max(0, report.last_seq - report.anchored_seq)
        if report.unanchored_entries:
            report.unanchored_since = self.times_after.get(report.anchored_seq)


def anchor(session: Session) -> tuple[int, str]:
    """(seq, hash) the chain starts after: (0, GENESIS) until a prune."""
    head = session.get(AuditHead, 1)
    return (head.base_seq, head.base_hash) if head is not None else (0, GENESIS)


def _events(session: Session, last: int) -> Iterator[AuditEvent]:
    while True:
        batch = session.exec(select(AuditEvent).where(col(AuditEvent.seq) > last)
                             .order_by(col(AuditEvent.seq)).limit(BATCH)).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


def verify(session: Session, keys: Mapping[str, ec.EllipticCurvePublicKey],
           external: Sequence[Mark] = ()) -> AuditReport:
    """Walk the database's chain, and check it against its checkpoints and (``external``)
    those a sink kept."""
    from attestor.audit import event_json  # the entries as an export carries them

    report = AuditReport()
    checkpoints = {c.seq: Mark.of(c) for c in session.exec(select(AuditCheckpoint)).all()}
    start = anchor(session)
    walk = ChainWalk(report, set(checkpoints) | {m.seq for m in external}, start=start)
    for event in _events(session, start[0]):  # what a prune left behind is not the chain
        walk.feed(event_json(event))
    walk.check_anchor(checkpoints.get(start[0]), keys)
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != report.last_seq or head.hash != walk.prev):
        report.problem("audit.truncated", report.last_seq,
                       f"the head records entry {head.seq}, the log ends at {report.last_seq}")
    report.checkpoints = len(checkpoints)
    walk.check_marks(checkpoints.values(), keys, "the checkpoint")
    report.external_checkpoints = len(set(external))
    walk.check_marks(external, keys, "the checkpoint the sink kept")
    for mark in set(external):
        if mark.seq >= start[0] and signed(mark, keys) and checkpoints.get(mark.seq) != mark:
            report.problem("audit.checkpoint_missing", mark.seq, "a checkpoint the sink kept "
                           "is not in the database (deleted with the entries it covers?)")
    walk.finish()
    return report
