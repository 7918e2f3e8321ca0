"""The audit log: append-only, hash-chained, anchored by signed checkpoints.

Every append locks the chain's head row (``audit_head``) for the rest of its
transaction, so entries get contiguous sequence numbers and each carries the
previous entry's hash, whichever replica writes it. The append is part of the
operation's own transaction: if it fails, the operation fails (no certificate
without its audit record). Checkpoints sign the head with the attestor's key;
:mod:`attestor.audit_verify` walks the chain and names every edited, deleted,
reordered or truncated entry. Nothing secret is ever written: details are screened.
Every value is made storable first (:mod:`attestor.untrusted`): a NUL, invalid UTF-8
or an over-long value from a request is escaped and bounded, its raw bytes kept as
hex under ``details["raw"]``, so no caller can make its own entry fail.

One vocabulary (docs/audit.md): ``outcome`` is one of :data:`OUTCOMES`; a refusal or
an error always names its reason codes in ``reasons``; the client address and user
agent come from the request's :mod:`attestor.origin` unless given.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from psycopg.types.json import Json
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from attestor import origin, untrusted
from attestor.audit_verify import (
    AuditReport,
    Mark,
    checkpoint_message,
    read_checkpoints,
    verify,
)
from attestor.db import attestation_queries
from attestor.db.chain import CURRENT, GENESIS, OUTCOMES, entry_hash_v2
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from attestor.observability import current_request_id
from identity.errors import AuditUnavailable

__all__ = ["OUTCOMES", "AuditReport", "Entry", "Mark", "append", "checkpoint", "checkpoint_json",
           "event_json", "prepare", "read_checkpoints", "verify", "write"]

FORBIDDEN_KEYS = frozenset({"value", "secret", "token", "nonce", "password", "passphrase",
                            "private_key", "api_key", "signature"})
BATCH = 1000
# Column bounds of audit_events (attestor/db/models.py) and of what details may hold.
LIMITS = {"actor": 128, "action": 64, "outcome": 16, "device_id": 64, "subject": 128,
          "request_id": 64, "client_address": 64, "user_agent": 256}
REASONS, MAX_RAW = 64, 8
NEEDS_REASONS = frozenset({"refused", "error"})


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


def _check_vocabulary(outcome: str, reasons: Sequence[str]) -> None:
    """Our own callers' invariants (docs/audit.md), not input checks."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if outcome in NEEDS_REASONS and not reasons:
        raise ValueError(f"an audit entry with outcome {outcome} must name its reasons")


def _storable(fields: Mapping[str, str | None], reasons: Sequence[str],
              details: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's fields as they will be stored (and hashed)."""
    cleaner = untrusted.Cleaner(MAX_RAW)
    stored: dict[str, Any] = {name: cleaner.optional(name, value, LIMITS[name])
                              for name, value in fields.items()}
    stored["reasons"] = [cleaner.text(f"reasons[{i}]", r, LIMITS["action"])
                         for i, r in enumerate(list(reasons)[:REASONS])]
    stored["details"] = cleaner.details(details, "details")
    return stored


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
_FROM_ORIGIN = object()  # "take it from the request's origin"


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry checked, screened and made storable, not yet chained (no sequence number
    or hashes until :func:`write` takes the head's lock)."""

    at: dt.datetime
    stored: dict[str, Any]


def prepare(*, at: dt.datetime, actor: str, action: str, outcome: str,
            device_id: str | None = None, subject: str | None = None,
            reasons: Sequence[str] = (), details: Mapping[str, Any] | None = None,
            request_id: str | None = None, client_address: Any = _FROM_ORIGIN,
            user_agent: Any = _FROM_ORIGIN) -> Entry:
    """The entry :func:`append` would chain (its arguments, checked the same way)."""
    _check_vocabulary(outcome, reasons)
    _screen(details or {})
    source = origin.current()
    return Entry(at, _storable({
        "actor": actor, "action": action, "outcome": outcome, "device_id": device_id,
        "subject": subject, "request_id": request_id or current_request_id(),
        "client_address": source.client_address if client_address is _FROM_ORIGIN
        else client_address,
        "user_agent": source.user_agent if user_agent is _FROM_ORIGIN else user_agent,
    }, reasons, details or {}))


def append(session: Session | sa.Connection, *, at: dt.datetime, actor: str, action: str,
           outcome: str, device_id: str | None = None, subject: str | None = None,
           reasons: Sequence[str] = (), details: Mapping[str, Any] | None = None,
           request_id: str | None = None, client_address: Any = _FROM_ORIGIN,
           user_agent: Any = _FROM_ORIGIN) -> AuditEvent:
    """Chain one entry onto the log inside the caller's transaction. ``actor`` is the
    authenticated principal (``token:<sub>``, ``apikey:<name>(<id>)``,
    ``device:<id>``, ``cli:<user>@<host>``, ``attestor`` for its own jobs,
    ``anonymous``); the client address and user agent default to the request's."""
    entry = prepare(at=at, actor=actor, action=action, outcome=outcome,
                    device_id=device_id, subject=subject, reasons=reasons, details=details,
                    request_id=request_id, client_address=client_address,
                    user_agent=user_agent)
    conn = session.connection() if isinstance(session, Session) else session
    return AuditEvent(**write(conn, entry))


# PostgreSQL, through psycopg directly (attestor/db/attestation_queries.py says why): the
# head's lock and its previous hash in one statement, the entry and the head's new hash
# in a second. The hash needs the previous one, so two statements is the floor.
PG_ADVANCE = "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash"
_PG_COLUMNS = ("seq", "at", "actor", "action", "outcome", "device_id", "subject", "reasons",
               "request_id", "client_address", "user_agent", "details", "version",
               "prev_hash", "hash")
_PG_CHAIN = (f"WITH e AS (INSERT INTO audit_events ({', '.join(_PG_COLUMNS)}) VALUES"  # noqa: S608
             f" ({', '.join(['%s'] * len(_PG_COLUMNS))})) UPDATE audit_head SET hash = %s"
             " WHERE id = 1")
_PG_JSON = frozenset({"reasons", "details"})


def write(conn: sa.Connection, entry: Entry,
          head: tuple[int, str] | None = None) -> dict[str, Any]:
    """Chain a prepared entry in the caller's transaction; ``head`` is (sequence number,
    previous hash) when the caller advanced the head in a statement of its own (with
    :data:`PG_ADVANCE`). Returns the stored row's fields."""
    pg = attestation_queries.driver(conn)
    try:
        # One UPDATE takes the head's row lock (PostgreSQL) or the write lock (SQLite)
        # until commit, so appends from every replica are serialised here; it also
        # advances the sequence and returns the previous hash.
        if head is None:
            head = _advance(conn, pg)
        seq, prev_hash = head
        fields: dict[str, Any] = dict(seq=seq, at=entry.at, **entry.stored)
        digest = entry_hash_v2(**fields, prev_hash=prev_hash)
        row = {**fields, "version": CURRENT, "legacy": None, "prev_hash": prev_hash,
               "hash": digest}
        if pg is not None:
            pg.execute(_PG_CHAIN, tuple(Json(row[c]) if c in _PG_JSON else row[c]
                                        for c in _PG_COLUMNS) + (digest,))
        else:
            conn.execute(_INSERT, [row])
            conn.execute(_SET_HASH, {"h": digest})
    except (SQLAlchemyError, psycopg.Error, UnicodeError) as exc:
        raise AuditUnavailable(f"the audit log cannot be written: {database_error(exc)}") \
            from exc
    return row


def _advance(conn: sa.Connection, pg: Any) -> tuple[int, str]:
    for _ in range(2):
        found = (pg.execute(PG_ADVANCE).fetchone() if pg is not None
                 else conn.execute(_ADVANCE).first())
        if found is not None:
            return int(found[0]), str(found[1])
        # a database from before the head row: create it, once
        conn.execute(sa.insert(AuditHead), [{"id": 1, "seq": 0, "hash": GENESIS}])
    raise AuditUnavailable("the audit head cannot be created")


def checkpoint(session: Session, key: ec.EllipticCurvePrivateKey, kid: str,
               now: dt.datetime) -> AuditCheckpoint | None:
    """Sign the current head (if it moved since the last checkpoint)."""
    head = session.get(AuditHead, 1)
    if head is None or head.seq == 0:
        return None
    if session.get(AuditCheckpoint, head.seq) is not None:
        return None
    signature = key.sign(checkpoint_message(head.seq, head.hash), ec.ECDSA(hashes.SHA256()))
    row = AuditCheckpoint(seq=head.seq, hash=head.hash, at=now, kid=kid, signature=signature)
    session.add(row)
    return row


def event_json(event: AuditEvent) -> dict[str, object]:
    return {
        "seq": event.seq, "at": event.at.isoformat(), "actor": event.actor,
        "action": event.action, "outcome": event.outcome, "device_id": event.device_id,
        "subject": event.subject, "reasons": list(event.reasons),
        "request_id": event.request_id, "client_address": event.client_address,
        "user_agent": event.user_agent, "details": dict(event.details),
        "version": event.version,
        "legacy": dict(event.legacy) if event.legacy is not None else None,
        "prev_hash": event.prev_hash, "hash": event.hash,
    }


def checkpoint_json(mark: AuditCheckpoint) -> dict[str, object]:
    return {"seq": mark.seq, "hash": mark.hash, "at": mark.at.isoformat(), "kid": mark.kid,
            "signature": base64.b64encode(mark.signature).decode()}
