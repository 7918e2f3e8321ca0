"""The audit log's unanchored tail, on SQLite and PostgreSQL: checkpoints come often
enough that it stays bounded by count and age; verification reports it as unanchored,
never as verified; every checkpoint goes to sinks a database writer cannot reach (an
append-only file, syslog, the webhook channel), and a tail rewritten with its hashes
recomputed, its checkpoints deleted, is caught against the sink's copies."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from sqlmodel import select
from typer.testing import CliRunner

from agent.sim.swtpm import Manufacturer
from attestor import audit
from attestor.cli import app
from attestor.db.models import AuditCheckpoint, WebhookDelivery
from attestor.services import checkpoints, webhooks
from attestor.services.context import Services
from tests.attestor.test_audit import _rechain
from tests.harness import LiveAttestor

SECRET = "whsec-test-0123456789"
HOOK = "https://siem.example/hooks/checkpoints"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def prepared(request: pytest.FixtureRequest, tmp_path: Path,
             manufacturer: Manufacturer) -> Iterator[LiveAttestor]:
    """An attestor's services (no server, so no timers of its own) with a file sink, a
    webhook subscribed to checkpoints, and bounds of 5 entries or 60 s."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], database_url=url,
                        audit_checkpoint_entries=5, audit_checkpoint_seconds=60,
                        audit_checkpoint_sink={"file": str(tmp_path / "checkpoints.jsonl")},
                        webhooks=[{"url": HOOK, "secret": SECRET,
                                   "events": ["audit.checkpoint"]}])
    try:
        yield live
    finally:
        live.services.engine.dispose()


def _append(svc: Services, count: int) -> None:
    for _ in range(count):
        with svc.session() as session, session.begin():
            audit.append(session, at=svc.clock(), actor="token:alice", action="device.note",
                         outcome="success", details={"n": 1})


def _anchored(svc: Services) -> int:
    with svc.session() as session:
        return checkpoints.tail(session).anchored


def test_checkpoints_keep_the_tail_within_count_and_age(prepared: LiveAttestor) -> None:
    svc = prepared.services
    _append(svc, 4)
    checkpoints.checkpoint_pass(svc)
    assert _anchored(svc) == 0  # 4 unanchored, fresh: within both bounds
    _append(svc, 1)
    checkpoints.checkpoint_pass(svc)
    assert _anchored(svc) == 5  # the count bound
    _append(svc, 1)
    checkpoints.checkpoint_pass(svc)
    assert _anchored(svc) == 5
    prepared.clock.offset += dt.timedelta(seconds=56)  # age + one look (5 s) reaches 60 s
    checkpoints.checkpoint_pass(svc)
    assert _anchored(svc) == 6  # the age bound
    checkpoints.checkpoint_pass(svc)  # nothing new: no checkpoint, nothing sent again
    lines = (prepared.settings.audit_checkpoint_sink.file or Path()).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 6]


def test_a_rewritten_tail_is_caught_against_the_sinks_copies(
        prepared: LiveAttestor, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = prepared.services
    _append(svc, 5)
    checkpoints.sign(svc)  # 5: in the database and in the sink
    _append(svc, 4)
    checkpoints.sign(svc)  # 9
    sink = prepared.settings.audit_checkpoint_sink.file
    assert sink is not None
    keys = svc.keys.all_public()
    with svc.session() as session:
        assert audit.verify(session, keys).anchored_seq == 9

    # A writer with database access edits entry 7, recomputes every hash after it and
    # the head, and deletes the checkpoint that would expose it.
    _rechain(svc.engine, 7)
    with svc.engine.begin() as conn:
        conn.execute(sa.delete(AuditCheckpoint).where(AuditCheckpoint.seq > 5))
    with svc.session() as session:
        alone = audit.verify(session, keys)
    assert alone.ok  # the database alone cannot tell...
    assert alone.anchored_seq == 5 and alone.unanchored_entries == 4  # ...and says so
    assert alone.unanchored_since is not None

    marks, unreadable = audit.read_checkpoints(sink.read_text().splitlines())
    assert unreadable == [] and [m.seq for m in marks] == [5, 9]
    with svc.session() as session:
        caught = audit.verify(session, keys, marks)
    assert not caught.ok
    assert {(p["code"], p["seq"]) for p in caught.problems} == {
        ("audit.edited", 9), ("audit.checkpoint_missing", 9)}

    # The same through the command an operator runs.
    if prepared.settings.database_url:
        monkeypatch.setenv("EDGEPROOF_DATABASE_URL", prepared.settings.database_url)
    args = ["audit", "verify", "--data-dir", str(prepared.settings.data_dir), "--dev"]
    plain = CliRunner().invoke(app, args)
    assert plain.exit_code == 0 and "4 unanchored" in plain.output
    checked = CliRunner().invoke(app, [*args, "--checkpoints", str(sink)])
    assert checked.exit_code == 1, checked.output
    assert "audit.checkpoint_missing" in checked.output and "TAMPERED" in checked.output


def test_the_webhook_channel_carries_checkpoints(prepared: LiveAttestor) -> None:
    svc = prepared.services
    _append(svc, 2)
    mark = checkpoints.sign(svc)
    assert mark is not None
    with svc.session() as session:
        (queued,) = session.exec(select(WebhookDelivery)).all()
    assert queued.event == "audit.checkpoint" and queued.payload["checkpoint"]["seq"] == 2

    failing = webhooks.deliver_due(svc.session, svc.settings, svc.clock,
                                   lambda url, body, headers: 503, metrics=svc.metrics)
    assert failing == 0
    text = generate_latest(svc.metrics.registry).decode()
    assert 'edgeproof_audit_checkpoint_sink_failures_total{sink="webhook"} 1.0' in text
    bodies: list[bytes] = []
    prepared.clock.offset += dt.timedelta(seconds=30)  # past the first backoff

    def receive(url: str, body: bytes, headers: dict[str, str]) -> int:
        bodies.append(body)
        return 204

    assert webhooks.deliver_due(svc.session, svc.settings, svc.clock, receive,
                                metrics=svc.metrics) == 1
    marks, _ = audit.read_checkpoints([b.decode() for b in bodies])
    with svc.session() as session:
        report = audit.verify(session, svc.keys.all_public(), marks)
    assert report.ok and report.external_checkpoints == 1 and report.anchored_seq == 2


def test_a_failing_sink_is_counted_and_retried_with_the_latest(prepared: LiveAttestor,
                                                                tmp_path: Path) -> None:
    svc = prepared.services
    svc.sinks = checkpoints.CheckpointSinks([checkpoints.FileSink(tmp_path / "no" / "f")])
    _append(svc, 1)
    checkpoints.sign(svc)
    _append(svc, 1)
    checkpoints.sign(svc)
    text = generate_latest(svc.metrics.registry).decode()
    assert 'edgeproof_audit_checkpoint_sink_failures_total{sink="file"} 2.0' in text
    (tmp_path / "no").mkdir()
    checkpoints.checkpoint_pass(svc)  # the retry sends the latest, which covers both
    lines = (tmp_path / "no" / "f").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2]
    checkpoints.checkpoint_pass(svc)
    assert len((tmp_path / "no" / "f").read_text().splitlines()) == 1


def test_syslog_sinks_send_over_udp_and_tcp_and_a_refused_connection_fails() -> None:
    line = json.dumps({"seq": 1, "hash": "ab" * 32, "kid": "k", "signature": "AA=="})
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    checkpoints.SyslogSink(f"udp://127.0.0.1:{udp.getsockname()[1]}").send(line)
    datagram = udp.recv(4096).decode()
    udp.close()
    assert datagram.startswith("<") and f"edgeproof-audit-checkpoint: {line}" in datagram
    assert audit.read_checkpoints([datagram])[0][0].seq == 1

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = tcp.accept()
        with conn:
            received.append(conn.recv(4096))

    server = threading.Thread(target=accept)
    server.start()
    port = tcp.getsockname()[1]
    checkpoints.SyslogSink(f"tcp://127.0.0.1:{port}").send(line)
    server.join(timeout=5)
    tcp.close()
    assert received and received[0].endswith(b"\n") and line.encode() in received[0]
    with pytest.raises(OSError):
        checkpoints.SyslogSink(f"tcp://127.0.0.1:{port}").send(line)  # nobody listens now


@pytest.mark.e2e
def test_the_api_reports_the_unanchored_tail(prepared: LiveAttestor) -> None:
    prepared.start()
    try:
        _append(prepared.services, 2)
        report = httpx.get(f"{prepared.url}/v1/audit/verify",
                           headers=prepared.headers("auditor")).json()
        assert report["ok"] and report["anchored_seq"] == 0
        assert report["unanchored_entries"] == 2 and report["unanchored_since"]
        checkpoints.sign(prepared.services)
        report = httpx.get(f"{prepared.url}/v1/audit/verify",
                           headers=prepared.headers("auditor")).json()
        assert report["anchored_seq"] == 2 and report["unanchored_entries"] == 0
    finally:
        prepared.stop()
