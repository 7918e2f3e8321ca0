"""Fleet-wide numbers for the metrics, read at scrape time (and cached by the caller).

Each query is bounded by an index or by a small table, and returns a handful of
rows whatever the fleet's size: counts grouped by a few bounded values, a head
row, the newest checkpoint. Kept apart from :mod:`attestor.db.queries` (the
request path's queries, already at the size limit of a module); the same rule
holds: callers own the connection, nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col

from attestor.db.models import AuditCheckpoint, AuditHead, Certificate, Device, WebhookDelivery


def device_counts(conn: sa.Connection) -> dict[tuple[str, str], int]:
    """Devices by (state, last verdict); a device never attested has verdict ``none``."""
    rows = conn.execute(sa.select(col(Device.state), col(Device.last_verdict), sa.func.count())
                        .group_by(col(Device.state), col(Device.last_verdict))).all()
    counts: dict[tuple[str, str], int] = {}
    for state, verdict, n in rows:
        key = (str(state), str(verdict or "none"))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


@dataclass(frozen=True)
class CertificateCounts:
    valid: int  # active devices holding a valid workload certificate
    expiring: int  # of those, the ones whose newest certificate expires within the window


def current_certificates(conn: sa.Connection, now: dt.datetime,
                         window: dt.timedelta) -> CertificateCounts:
    """Per active device, its newest valid workload certificate (older ones overlap it
    until they expire and say nothing about renewal); how many expire within
    ``window``. The range scan on ``not_after > now`` reads only valid certificates."""
    newest = (sa.select(col(Certificate.device_id).label("device_id"),
                        sa.func.max(col(Certificate.not_after)).label("until"))
              .where(col(Certificate.kind) == "workload", col(Certificate.status) == "issued",
                     col(Certificate.revoked_at).is_(None), col(Certificate.not_after) > now)
              .group_by(col(Certificate.device_id)).subquery())
    expiring = sa.func.count(sa.case((newest.c.until <= now + window, 1)))
    row = conn.execute(sa.select(sa.func.count(), expiring)
                       .select_from(newest.join(Device, col(Device.id) == newest.c.device_id))
                       .where(col(Device.state) == "active")).one()
    return CertificateCounts(valid=int(row[0]), expiring=int(row[1] or 0))


@dataclass(frozen=True)
class AuditAnchor:
    head_seq: int  # the last entry written
    checkpoint_seq: int  # the last entry a signed checkpoint covers (0: none)
    checkpoint_at: dt.datetime | None  # when that checkpoint was signed

    @property
    def unanchored(self) -> int:
        return max(0, self.head_seq - self.checkpoint_seq)


def audit_anchor(conn: sa.Connection) -> AuditAnchor:
    head = conn.execute(sa.select(col(AuditHead.seq)).where(col(AuditHead.id) == 1)).first()
    mark = conn.execute(sa.select(col(AuditCheckpoint.seq), col(AuditCheckpoint.at))
                        .order_by(col(AuditCheckpoint.seq).desc()).limit(1)).first()
    return AuditAnchor(head_seq=int(head[0]) if head else 0,
                       checkpoint_seq=int(mark[0]) if mark else 0,
                       checkpoint_at=mark[1] if mark else None)


@dataclass(frozen=True)
class WebhookBacklog:
    depth: int  # deliveries still being attempted
    oldest: dt.datetime | None  # when the oldest of them was queued


def webhook_backlog(conn: sa.Connection, since: dt.datetime) -> WebhookBacklog:
    """Undelivered deliveries queued after ``since`` (older ones have been given up)."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(col(WebhookDelivery.created_at)))
                       .where(col(WebhookDelivery.delivered_at).is_(None),
                              col(WebhookDelivery.created_at) > since)).one()
    return WebhookBacklog(depth=int(row[0]), oldest=row[1])  # min() keeps the UTC column type
