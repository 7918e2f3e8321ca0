"""Hostile values in every field of an audit entry, on SQLite and PostgreSQL: a NUL byte
(PostgreSQL refuses it in text), invalid UTF-8 and lone surrogates (neither database can
encode them), over-long values (varchar bounds). Each entry is written, chained and
verifiable; what had to be escaped or cut keeps its raw bytes as hex."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from attestor import audit, untrusted
from attestor.db.models import AuditEvent
from tests.attestor.test_audit import KEY, KID

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
LONG = "x" * 5000
HOSTILE: dict[str, str] = {
    "nul": "dev\x00\x00ice",
    "invalid-utf8": untrusted.from_bytes(b"dev\xff\xfeice"),  # as a raw header arrives
    "lone-surrogate": "dev\ud800ice",  # as a JSON "\ud800" escape arrives
    "control": "dev\x1b[31mice\r\n",
    "over-long": LONG,
    "over-long-nul": "\x00" * 3000,
}
# The outcome is never a request's value: one of a fixed vocabulary (docs/audit.md).
FIELDS = ("actor", "action", "device_id", "subject", "request_id", "client_address",
          "user_agent", "reasons", "details-value", "details-key", "details-nested")


def _entry(field: str, value: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"actor": "token:alice", "action": "auth", "outcome": "refused",
                             "reasons": ["auth.invalid"], "details": {}}
    if field == "reasons":
        entry["reasons"] = [value]
    elif field == "details-value":
        entry["details"] = {"user_agent": value}
    elif field == "details-key":
        entry["details"] = {value: 1}
    elif field == "details-nested":
        entry["details"] = {"claims": [{"sub": value}]}
    else:
        entry[field] = value
    return entry


def _stored_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_stored_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _stored_strings(item)]
    return []


@pytest.mark.adversarial
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_values_are_stored_escaped_bounded_and_chained(engine: sa.Engine,
                                                               kind: str) -> None:
    """One entry per field holding the value; then the chain is checkpointed and verified."""
    value = HOSTILE[kind]
    for field in FIELDS:
        with Session(engine) as session, session.begin():
            audit.append(session, at=T0, **_entry(field, value))
    with Session(engine) as session, session.begin():
        audit.checkpoint(session, KEY, KID, T0)
    with Session(engine) as session:
        stored = session.exec(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        report = audit.verify(session, {KID: KEY.public_key()})
    assert report.ok and report.anchored_seq == len(FIELDS), report.problems

    original = untrusted.original_bytes(value)
    for field, event in zip(FIELDS, stored, strict=True):
        row = audit.event_json(event)
        for text in _stored_strings(row):
            assert "\x00" not in text, field
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text), field
            text.encode("utf-8")  # every stored string is valid UTF-8
        for column, bound in audit.LIMITS.items():
            assert len(str(row[column] or "")) <= bound, field
        raws = row["details"].get("raw", {})
        assert len(raws) == 1, f"{field}: the raw bytes of the changed value are kept"
        (record,) = raws.values()
        assert record["bytes"] == len(original), field
        assert bytes.fromhex(record["hex"]) == original[:untrusted.HEX_BYTES], field
        if len(original) > untrusted.HEX_BYTES:
            assert record["sha256"] == hashlib.sha256(original).hexdigest(), field


def test_ordinary_values_are_stored_unchanged(engine: sa.Engine) -> None:
    details = {"path": "C:\\Windows\\x00", "name": "Zoë 设备", "n": 3, "ok": True,
               "nested": {"list": ["a", 1.5, None]}}
    with Session(engine) as session, session.begin():
        event = audit.append(session, at=T0, actor="device:dev-1", action="attestation",
                             outcome="success", device_id="dev-1", subject="GET /v1/x",
                             reasons=["policy.pcr_mismatch"], details=details)
    assert event.details == details and event.actor == "device:dev-1"


def test_escapes_name_what_was_there() -> None:
    assert untrusted.storable("a\x00b\x7f", 64) == "a\\x00b\\x7f"
    assert untrusted.storable(untrusted.from_bytes(b"\xff"), 64) == "\\xff"
    assert untrusted.storable("\ud800", 64) == "\\ud800"
    cut = untrusted.storable("\x00" * 100, 20)
    assert len(cut) <= 20 and cut.endswith(untrusted.TRUNCATED)
    assert cut.startswith("\\x00") and "\\x0…" not in cut  # no half escape before the mark
