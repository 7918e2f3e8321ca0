"""What the web console reads beyond the API's queries: fleet summaries, device search,
expiring certificates, a known-good reference for a refused attestation. Callers own
the session; nothing here writes. Each query is bounded (an index range or a limit)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, col, select

from attestor.db.models import Attestation, AuditCheckpoint, Certificate, Device

REFUSAL_SCAN_LIMIT = 20_000  # refusals counted per overview (a storm is summarised, capped)


def refusals_by_reason(session: Session, since: dt.datetime) -> tuple[Counter[str], int]:
    """Reason codes of the attestations refused since ``since``, and how many were."""
    rows = session.execute(
        sa.select(col(Attestation.reasons)).where(col(Attestation.at) >= since,
                                                  col(Attestation.verdict) != "pass")
        .order_by(col(Attestation.at).desc()).limit(REFUSAL_SCAN_LIMIT)).scalars().all()
    counts: Counter[str] = Counter()
    for reasons in rows:
        counts.update(str(r) for r in reasons or ["(none recorded)"])
    return counts, len(rows)


def expiring_certificates(session: Session, kind: str, now: dt.datetime,
                          window: dt.timedelta, limit: int = 20) -> Sequence[Certificate]:
    """Issued, unrevoked certificates of ``kind`` that expire within ``window``, soonest
    first."""
    return session.exec(
        select(Certificate).where(Certificate.kind == kind, col(Certificate.not_after) > now,
                                  col(Certificate.not_after) <= now + window,
                                  Certificate.status == "issued",
                                  col(Certificate.revoked_at).is_(None))
        .order_by(col(Certificate.not_after)).limit(limit)).all()


def device_classes(session: Session) -> list[str]:
    return [str(c) for c in session.execute(
        sa.select(col(Device.device_class)).distinct().order_by(col(Device.device_class))
        .limit(200)).scalars()]


def attestation(session: Session, device_id: str, attestation_id: int) -> Attestation | None:
    return session.exec(select(Attestation).where(Attestation.id == attestation_id,
                                                  Attestation.device_id == device_id)).first()


def reference_attestation(session: Session, device_id: str, bank: str,
                          values: dict[int, str], before: int,
                          device_class: str | None = None,
                          scan: int = 50) -> Attestation | None:
    """The newest passing attestation before ``before`` that kept its event log and whose
    quoted PCRs held ``values`` (the reference): the known-good boot to compare with.
    Of the device itself; with ``device_class``, of any device of that class."""
    query = (select(Attestation).where(col(Attestation.id) < before,
                                       Attestation.verdict == "pass",
                                       col(Attestation.event_log).is_not(None))
             .order_by(col(Attestation.id).desc()).limit(scan))
    if device_class is None:
        query = query.where(Attestation.device_id == device_id)
    else:
        query = query.join(Device, col(Device.id) == col(Attestation.device_id)).where(
            Device.device_class == device_class)
    rows = session.exec(query).all()
    for row in rows:
        quoted = (row.pcr_values or {}).get(bank, {})
        if all(quoted.get(str(i)) == v for i, v in values.items()):
            return row
    return None


def last_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq).desc())
                        .limit(1)).first()
