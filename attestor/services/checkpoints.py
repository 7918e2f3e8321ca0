"""Audit checkpoints: signed often enough that the unanchored tail stays bounded, and
each one sent off the database to an append-only sink.

A writer with database access can rewrite the entries after the last signed
checkpoint and recompute their hashes: the chain alone cannot tell. Two defences:
the tail is kept short (a replica signs the head once ``audit_checkpoint_entries``
entries or ``audit_checkpoint_seconds`` have gone unanchored, checked every few
seconds), and every checkpoint is also sent where that writer cannot reach: a
webhook subscribed to ``audit.checkpoint`` (queued in the checkpoint's own
transaction, retried like any delivery), an append-only file, syslog. ``attestor
audit verify --checkpoints FILE`` then checks the chain against those copies, so a
rewritten tail, or checkpoints deleted from the database with it, are named.
A sink that fails is counted (``edgeproof_audit_checkpoint_sink_failures_total``),
logged, and retried with the latest checkpoint at the next pass (a later checkpoint
anchors everything before it, so a missed one loses only granularity).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
import structlog
from sqlmodel import Session, col

from attestor import audit
from attestor.db.models import AuditCheckpoint, AuditEvent, AuditHead
from attestor.services import webhooks
from attestor.settings import CheckpointSinkSettings, Settings

if TYPE_CHECKING:  # Services holds the sinks
    from attestor.services.context import Services

log = logging.getLogger("attestor.checkpoints")
witness = structlog.get_logger("attestor.audit")
SYSLOG_TAG = "edgeproof-audit-checkpoint"


class Sink(Protocol):
    name: str

    def send(self, line: str) -> None: ...


@dataclass
class FileSink:
    """One JSON line per checkpoint, appended (O_APPEND) and fsynced before it counts."""

    path: Path
    name: str = "file"

    def send(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        raise  # noqa: PLE0704 - re-raise what emit() caught: the sink must see it fail


class SyslogSink:
    """RFC 3164 messages through the standard library's handler (local socket, UDP or
    TCP); a refused connection or send counts as a failure."""

    name = "syslog"

    def __init__(self, address: str) -> None:
        self.address = address
        self._lock = threading.Lock()

    def _handler(self) -> logging.handlers.SysLogHandler:
        if self.address.startswith("unix:"):
            return _RaisingSysLogHandler(address=self.address.removeprefix("unix:"))
        scheme, _, rest = self.address.partition("://")
        host, _, port = rest.rpartition(":")
        kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
        handler = _RaisingSysLogHandler(address=(host.strip("[]"), int(port)), socktype=kind)
        handler.append_nul = scheme != "tcp"  # TCP: newline framing (RFC 6587)
        return handler

    def send(self, line: str) -> None:
        with self._lock:
            handler = self._handler()
            try:
                tcp = handler.socktype == socket.SOCK_STREAM and not handler.unixsocket
                message = f"{SYSLOG_TAG}: {line}" + ("\n" if tcp else "")
                handler.emit(logging.LogRecord("attestor.audit", logging.INFO, __file__, 0,
                                               message, None, None))
            finally:
                handler.close()


@dataclass
class CheckpointSinks:
    """This replica's sinks, and the latest checkpoint each one failed to take."""

    sinks: list[Sink] = field(default_factory=list)
    unsent: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (seq, line)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: CheckpointSinkSettings) -> CheckpointSinks:
        sinks: list[Sink] = []
        if settings.file is not None:
            sinks.append(FileSink(settings.file))
        if settings.syslog is not None:
            sinks.append(SyslogSink(settings.syslog))
        return cls(sinks)

    def send(self, svc: Services, seq: int, line: str) -> None:
        with self._lock:
            for sink in self.sinks:
                pending = self.unsent.get(sink.name)
                if pending is None or pending[0] <= seq:  # a later one covers this one
                    self._deliver(svc, sink, seq, line)

    def retry(self, svc: Services) -> None:
        with self._lock:
            for sink in self.sinks:
                pending = self.unsent.get(sink.name)
                if pending is not None:
                    self._deliver(svc, sink, *pending)

    def _deliver(self, svc: Services, sink: Sink, seq: int, line: str) -> None:
        try:
            sink.send(line)
        except OSError as exc:
            svc.metrics.checkpoint_sink_failures.labels(sink=sink.name).inc()
            log.error("audit checkpoint %d not sent to the %s sink: %s", seq, sink.name, exc)
            self.unsent[sink.name] = (seq, line)
        else:
            self.unsent.pop(sink.name, None)


@dataclass(frozen=True)
class Tail:
    head: int
    anchored: int  # the latest checkpoint's sequence number
    since: dt.datetime | None  # when the first unanchored entry was written

    @property
    def entries(self) -> int:
        return self.head - self.anchored


def tail(session: Session) -> Tail:
    head = session.get(AuditHead, 1)
    anchored = session.execute(sa.select(sa.func.max(col(AuditCheckpoint.seq)))).scalar() or 0
    seq = head.seq if head is not None else 0
    since = None
    if seq > anchored:
        since = session.execute(sa.select(col(AuditEvent.at))
                                .where(col(AuditEvent.seq) == anchored + 1)).scalar()
    return Tail(seq, int(anchored), since)


def tick_seconds(settings: Settings) -> float:
    """How often a replica looks at the tail (a fraction of the age bound, at most 5 s)."""
    return max(0.2, min(5.0, settings.audit_checkpoint_seconds / 4))


def is_due(current: Tail, now: dt.datetime, settings: Settings) -> bool:
    """Sign now, or the tail would outgrow a bound before the next look."""
    if current.entries <= 0:
        return False
    if current.entries >= settings.audit_checkpoint_entries:
        return True
    age = (now - current.since).total_seconds() if current.since else 0.0
    return age + tick_seconds(settings) >= settings.audit_checkpoint_seconds


def sign(svc: Services) -> AuditCheckpoint | None:
    """Sign the head if it moved: queued for the webhook channel in the same
    transaction, witnessed in the log, then sent to the file and syslog sinks."""
    now = svc.clock()
    try:
        with svc.session() as session, session.begin():
            row = audit.checkpoint(session, svc.signer.key, svc.signer.kid, now)
            if row is not None:
                webhooks.enqueue(session, svc.settings, webhooks.CHECKPOINT_EVENT,
                                 {"checkpoint": audit.checkpoint_json(row)}, now)
    except sa.exc.IntegrityError:
        return None  # another replica signed the same head at the same moment
    if row is None:
        return None
    witness.info("audit checkpoint", seq=row.seq, hash=row.hash, kid=row.kid)
    line = json.dumps(audit.checkpoint_json(row), separators=(",", ":"))
    svc.sinks.send(svc, row.seq, line)
    return row


def checkpoint_pass(svc: Services) -> None:
    """One look at the tail: sign when a bound is near, and resend what a sink missed."""
    with svc.session() as session:
        current = tail(session)
    if is_due(current, svc.clock(), svc.settings):
        sign(svc)
    svc.sinks.retry(svc)
