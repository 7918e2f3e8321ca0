"""The audit log: append-only, hash-chained, anchored by signed checkpoints.

Every append locks the chain's head row (``audit_head``) for the rest of its
transaction, so entries get contiguous sequence numbers and each carries the
previous entry's hash, whichever replica writes it. The append is part of the
operation's own transaction: if it fails, the operation fails (no certificate
without its audit record). Checkpoints sign the head with the attestor's key;
`verify` walks the chain and names every edited, deleted, reordered or
truncated entry. Nothing secret is ever written: details are screened. Every
value is made storable first (:mod:`attestor.untrusted`): a NUL, invalid UTF-8 or an
over-long value from a request is escaped and bounded, its raw bytes kept as hex
under ``details["raw"]``, so no caller can make its own entry fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from attestor import untrusted
from attestor.db.chain import GENESIS, entry_hash
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from attestor.observability import current_request_id
from identity.errors import AuditUnavailable

FORBIDDEN_KEYS = frozenset({"value", "secret", "token", "nonce", "password", "passphrase",
                            "private_key", "api_key", "signature"})
BATCH = 1000
# Column bounds of audit_events (attestor/db/models.py) and of what details may hold.
LIMITS = {"actor": 128, "action": 64, "outcome": 16, "device_id": 64, "subject": 128,
          "request_id": 64}
REASONS, MAX_RAW = 64, 8


def _screen(details: Mapping[str, Any], path: str = "") -> None:
    for key, value in details.items():
        if key.lower() in FORBIDDEN_KEYS:
            raise ValueError(f"audit details must not carry {path}{key}")
        if isinstance(value, Mapping):
            _screen(value, f"{path}{key}.")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    _screen(item, f"{path}{key}[].")


def _storable(actor: str, action: str, outcome: str, device_id: str | None,
              subject: str | None, reasons: Sequence[str], request_id: str | None,
              details: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's fields as they will be stored (and hashed)."""
    cleaner = untrusted.Cleaner(MAX_RAW)
    fields: dict[str, Any] = {
        "actor": cleaner.text("actor", actor, LIMITS["actor"]),
        "action": cleaner.text("action", action, LIMITS["action"]),
        "outcome": cleaner.text("outcome", outcome, LIMITS["outcome"]),
        "device_id": cleaner.optional("device_id", device_id, LIMITS["device_id"]),
        "subject": cleaner.optional("subject", subject, LIMITS["subject"]),
        "request_id": cleaner.optional("request_id", request_id, LIMITS["request_id"]),
        "reasons": [cleaner.text(f"reasons[{i}]", r, LIMITS["action"])
                    for i, r in enumerate(list(reasons)[:REASONS])],
    }
    fields["details"] = cleaner.details(details, "details")
    return fields


def database_error(exc: BaseException) -> str:
    """The database's own message, first line (never the SQL or its parameters, which
    could hold anything)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:300]}" if lines else type(cause).__name__


_INSERT = sa.insert(AuditEvent)
_SET_HASH = sa.update(AuditHead).where(col(AuditHead.id) == 1).values(hash=sa.bindparam("h"))
_ADVANCE = (sa.update(AuditHead).where(col(AuditHead.id) == 1)
            .values(seq=AuditHead.seq + 1).returning(col(AuditHead.seq), col(AuditHead.hash)))


def append(session: Session, *, at: dt.datetime, actor: str, action: str, outcome: str,
           device_id: str | None = None, subject: str | None = None,
           reasons: Sequence[str] = (), details: Mapping[str, Any] | None = None,
           request_id: str | None = None) -> AuditEvent:
    """Chain one entry onto the log inside the caller's transaction."""
    _screen(details or {})
    stored = _storable(actor, action, outcome, device_id, subject, reasons,
                       request_id or current_request_id(), details or {})
    try:
        # One UPDATE takes the head's row lock (PostgreSQL) or the write lock (SQLite)
        # until commit, so appends from every replica are serialised here; it also
        # advances the sequence and returns the previous hash. Core statements on the
        # session's connection: no unit-of-work overhead on every request's path.
        conn = session.connection()
        head = conn.execute(_ADVANCE).first()
        if head is None:  # a database from before the head row: create it, once
            session.add(AuditHead(id=1, seq=0, hash=GENESIS))
            session.flush()
            head = conn.execute(_ADVANCE).first()
        if head is None:
            raise AuditUnavailable("the audit head cannot be created")
        seq, prev_hash = int(head[0]), str(head[1])
        fields: dict[str, Any] = dict(seq=seq, at=at, **stored)
        digest = entry_hash(**fields, prev_hash=prev_hash)
        conn.execute(_INSERT, [{**fields, "prev_hash": prev_hash, "hash": digest}])
        conn.execute(_SET_HASH, {"h": digest})
    except (SQLAlchemyError, UnicodeError) as exc:
        raise AuditUnavailable(f"the audit log cannot be written: {database_error(exc)}") \
            from exc
    return AuditEvent(**fields, prev_hash=prev_hash, hash=digest)


def checkpoint(session: Session, key: ec.EllipticCurvePrivateKey, kid: str,
               now: dt.datetime) -> AuditCheckpoint | None:
    """Sign the current head (if it moved since the last checkpoint)."""
    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        return None
    if session.get(AuditCheckpoint, head.seq) is not None:
        return None
    signature = key.sign(_checkpoint_message(head.seq, head.hash), ec.ECDSA(hashes.SHA256()))
    row = AuditCheckpoint(seq=head.seq, hash=head.hash, at=now, kid=kid, signature=signature)
    session.add(row)
    return row


def _checkpoint_message(seq: int, digest: str) -> bytes:
    return f"edgeproof-audit-checkpoint-v1:{seq}:{digest}".encode()


@dataclass
class AuditReport:
    ok: bool = True
    entries: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    anchored_seq: int = 0  # entries up to here are covered by a valid checkpoint
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
    """A signed checkpoint: from the database, or a copy a sink kept."""

    seq: int
    hash: str
    kid: str
    signature: bytes

    @classmethod
    def of(cls, row: AuditCheckpoint) -> Mark:
        return cls(row.seq, row.hash, row.kid, bytes(row.signature))


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
            data = data.get("checkpoint", data)
            marks.append(Mark(int(data["seq"]), str(data["hash"]), str(data["kid"]),
                              base64.b64decode(data["signature"], validate=True)))
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable.append(number)
    return marks, unreadable


def _signed(mark: Mark, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> bool:
    key = keys.get(mark.kid)
    try:
        if key is None:
            raise InvalidSignature
        key.verify(mark.signature, _checkpoint_message(mark.seq, mark.hash),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _events(session: Session) -> Iterator[AuditEvent]:
    last = 0
    while True:
        batch = session.exec(select(AuditEvent).where(col(AuditEvent.seq) > last)
                             .order_by(col(AuditEvent.seq)).limit(BATCH)).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].seq


def verify(session: Session, keys: Mapping[str, ec.EllipticCurvePublicKey],
           external: Sequence[Mark] = ()) -> AuditReport:
    """Walk the chain: recompute every hash, check links, sequence and checkpoints,
    the database's and (``external``) those a sink kept; report what no valid
    checkpoint covers as unanchored."""
    report = AuditReport()
    checkpoints = {c.seq: Mark.of(c) for c in session.exec(select(AuditCheckpoint)).all()}
    wanted = set(checkpoints) | {m.seq for m in external}
    hashes_at: dict[int, str] = {}
    prev, expected = GENESIS, 1
    for event in _events(session):
        report.entries += 1
        if event.seq != expected:
            report.problem("audit.deleted", expected,
                           f"entries {expected}..{event.seq - 1} are missing")
        if event.prev_hash != prev:
            report.problem("audit.reordered", event.seq,
                           "the entry does not follow the one before it")
        recomputed = entry_hash(
            seq=event.seq, at=event.at, actor=event.actor, action=event.action,
            outcome=event.outcome, device_id=event.device_id, subject=event.subject,
            reasons=list(event.reasons), request_id=event.request_id,
            details=dict(event.details), prev_hash=event.prev_hash)
        if recomputed != event.hash:
            report.problem("audit.edited", event.seq, "the entry's content does not match "
                           "its hash")
        if event.seq in wanted:
            hashes_at[event.seq] = event.hash
        prev, expected = event.hash, event.seq + 1
        report.last_seq = event.seq
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != report.last_seq or head.hash != prev):
        report.problem("audit.truncated", report.last_seq,
                       f"the head records entry {head.seq}, the log ends at {report.last_seq}")
    for mark in sorted(checkpoints.values(), key=lambda m: m.seq):
        report.checkpoints += 1
        _check_mark(report, mark, _signed(mark, keys), hashes_at, "the checkpoint")
    for mark in sorted(set(external), key=lambda m: m.seq):
        report.external_checkpoints += 1
        signed = _signed(mark, keys)
        _check_mark(report, mark, signed, hashes_at, "the checkpoint the sink kept")
        if signed and checkpoints.get(mark.seq) != mark:
            report.problem("audit.checkpoint_missing", mark.seq, "a checkpoint the sink kept "
                           "is not in the database (deleted with the entries it covers?)")
    _unanchored(session, report)
    return report


def _check_mark(report: AuditReport, mark: Mark, signed: bool, hashes_at: Mapping[int, str],
                what: str) -> None:
    """A signed ``mark`` that matches the chain anchors it up to its seq."""
    if not signed:
        report.problem("audit.checkpoint_invalid", mark.seq, f"{what}: the signature does "
                       "not verify with the attestor's keys")
    elif mark.seq > report.last_seq:
        report.problem("audit.truncated", mark.seq, f"{what} at {mark.seq} is past the "
                       f"log's end ({report.last_seq})")
    elif hashes_at.get(mark.seq) != mark.hash:
        report.problem("audit.edited", mark.seq, f"the chain here differs from the hash "
                       f"{what} signed")
    else:
        report.anchored_seq = max(report.anchored_seq, mark.seq)


def _unanchored(session: Session, report: AuditReport) -> None:
    report.unanchored_entries = max(0, report.last_seq - report.anchored_seq)
    if report.unanchored_entries:
        first = session.exec(select(AuditEvent).where(
            col(AuditEvent.seq) > report.anchored_seq).order_by(col(AuditEvent.seq))
            .limit(1)).first()
        report.unanchored_since = first.at.isoformat() if first is not None else None


def event_json(event: AuditEvent) -> dict[str, object]:
    return {
        "seq": event.seq, "at": event.at.isoformat(), "actor": event.actor,
        "action": event.action, "outcome": event.outcome, "device_id": event.device_id,
        "subject": event.subject, "reasons": list(event.reasons),
        "request_id": event.request_id, "details": dict(event.details),
        "prev_hash": event.prev_hash, "hash": event.hash,
    }


def checkpoint_json(mark: AuditCheckpoint) -> dict[str, object]:
    return {"seq": mark.seq, "hash": mark.hash, "at": mark.at.isoformat(), "kid": mark.kid,
            "signature": base64.b64encode(mark.signature).decode()}
