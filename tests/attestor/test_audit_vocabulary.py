"""The audit vocabulary (docs/audit.md) and the query filters, on SQLite and PostgreSQL:
outcomes from one enum, reasons always named, where the request came from hashed into
the entry, filters by device, actor prefix, action, outcome, reason code and time,
paged by a stable cursor."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session

from attestor import audit, origin
from attestor.db import queries
from attestor.db.chain import OUTCOMES

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def _append(engine: sa.Engine, seconds: int, **fields: object) -> None:
    with Session(engine) as session, session.begin():
        audit.append(session, at=T0 + dt.timedelta(seconds=seconds), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome", ["pass", "fail", "done", "ok", "Success", ""])
def test_an_outcome_outside_the_vocabulary_is_refused(engine: sa.Engine, outcome: str) -> None:
    with Session(engine) as session, session.begin(), pytest.raises(ValueError, match="outcome"):
        audit.append(session, at=T0, actor="attestor", action="x", outcome=outcome)


@pytest.mark.parametrize("outcome", ["refused", "error"])
def test_a_refusal_or_error_must_name_its_reasons(engine: sa.Engine, outcome: str) -> None:
    with Session(engine) as session, session.begin(), pytest.raises(ValueError, match="reasons"):
        audit.append(session, at=T0, actor="attestor", action="x", outcome=outcome)


def test_the_origin_is_recorded_and_covered_by_the_hash(engine: sa.Engine) -> None:
    token = origin._ORIGIN.set(origin.Origin("203.0.113.7", "agent/1.0"))
    try:
        _append(engine, 1, actor="token:alice", action="device.revoke", outcome="success",
                device_id="d1")
    finally:
        origin._ORIGIN.reset(token)
    _append(engine, 2, actor="attestor", action="webhook.dropped", outcome="alert")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        first, second = queries.audit_events(session)
        audit.checkpoint(session, KEY, "k", T0)
    assert (first.client_address, first.user_agent, first.version) == (
        "203.0.113.7", "agent/1.0", 2)
    assert (second.client_address, second.user_agent) == (None, None)
    with engine.begin() as conn:  # someone makes the request come from elsewhere
        conn.execute(sa.text("UPDATE audit_events SET client_address = '198.51.100.1' "
                             "WHERE seq = 1"))
    with Session(engine) as session:
        report = audit.verify(session, {"k": KEY.public_key()})
    assert not report.ok and {p["code"] for p in report.problems} == {"audit.edited"}


def test_a_stored_outcome_outside_the_vocabulary_fails_verification(engine: sa.Engine) -> None:
    """Even rehashed: an entry of format 2 must carry an outcome of the enum."""
    from attestor.db.chain import entry_hash_v2
    from attestor.db.models import AuditEvent, AuditHead

    _append(engine, 1, actor="attestor", action="x", outcome="success")
    with Session(engine) as session, session.begin():
        event = session.exec(sa.select(AuditEvent)).scalars().one()
        event.outcome = "done"
        event.hash = entry_hash_v2(
            seq=event.seq, at=event.at, actor=event.actor, action=event.action,
            outcome=event.outcome, device_id=None, subject=None, reasons=[], request_id=None,
            client_address=None, user_agent=None, details={}, prev_hash=event.prev_hash)
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash = event.hash
    with Session(engine) as session:
        report = audit.verify(session, {})
    assert [p["code"] for p in report.problems] == ["audit.edited"]


def _fill(engine: sa.Engine) -> None:
    rows = [
        ("token:alice", "device.quarantine", "success", "d1", []),
        ("token:al_ce", "device.revoke", "success", "d2", []),
        ("device:d1", "attestation", "refused", "d1", ["policy.pcr_mismatch"]),
        ("anonymous", "auth", "refused", "d2", ["auth.signature_invalid"]),
        ("device:d1", "attestation", "refused", "d1", ["policy.pcr_mismatch_extra",
                                                       "ima.unknown_file"]),
        ("apikey:station(1)", "enrollment.start", "success", "d3", []),
        ("cli:root@host", "token.mint", "success", None, []),
        ("attestor", "webhook.dropped", "alert", None, []),
    ]
    for i, (actor, action, outcome, device, reasons) in enumerate(rows, 1):
        _append(engine, i * 60, actor=actor, action=action, outcome=outcome,
                device_id=device, reasons=reasons)


CASES: list[tuple[dict[str, object], list[int]]] = [
    ({}, [1, 2, 3, 4, 5, 6, 7, 8]),
    ({"device_id": "d1"}, [1, 3, 5]),
    ({"actor": "token:"}, [1, 2]),
    ({"actor": "token:al_"}, [2]),  # "_" is a character, not a LIKE wildcard
    ({"actor": "token:al%"}, []),
    ({"actor": "device:d1"}, [3, 5]),
    ({"actor": "cli:"}, [7]),
    ({"action": "attestation"}, [3, 5]),
    ({"outcome": "refused"}, [3, 4, 5]),
    ({"outcome": "alert"}, [8]),
    ({"reason": "policy.pcr_mismatch"}, [3]),  # exact code, not a prefix of another
    ({"reason": "ima.unknown_file"}, [5]),
    ({"reason": "auth.signature_invalid", "device_id": "d2"}, [4]),
    ({"since": T0 + dt.timedelta(minutes=3), "until": T0 + dt.timedelta(minutes=5)}, [3, 4]),
    ({"outcome": "refused", "device_id": "d1", "since": T0 + dt.timedelta(minutes=4)}, [5]),
]


@pytest.mark.parametrize(("filters", "expected"), CASES)
def test_filters(engine: sa.Engine, filters: dict[str, object], expected: list[int]) -> None:
    _fill(engine)
    with Session(engine) as session:
        rows = queries.audit_page(session, queries.AuditFilter(**filters), 0, 100)  # type: ignore[arg-type]
    assert [r.seq for r in rows] == expected


def test_paging_by_sequence_is_stable_while_entries_are_appended(engine: sa.Engine) -> None:
    _fill(engine)
    f = queries.AuditFilter(outcome="success")
    with Session(engine) as session:
        page = queries.audit_page(session, f, 0, 2)
    assert [r.seq for r in page] == [1, 2]
    _append(engine, 10_000, actor="attestor", action="x", outcome="success")
    seen, after = [r.seq for r in page], page[-1].seq
    while True:
        with Session(engine) as session:
            page = queries.audit_page(session, f, after, 2)
        if not page:
            break
        seen += [r.seq for r in page]
        after = page[-1].seq
    assert seen == [1, 2, 6, 7, 9]


def test_the_vocabulary_is_small_and_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    assert OUTCOMES == ("success", "refused", "error", "alert")
    for outcome in OUTCOMES:
        assert f"`{outcome}`" in doc
