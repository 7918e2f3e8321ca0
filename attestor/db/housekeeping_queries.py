"""The deletes of scheduled housekeeping (attestor.services.housekeeping).

Each runs in batches (one short transaction each) and is safe with several replicas at
once: a row deleted by another replica is simply not there; on PostgreSQL the batch is
chosen with ``FOR UPDATE SKIP LOCKED``, so two replicas do not wait on each other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from attestor.db.models import (
    Attestation,
    Certificate,
    Enrollment,
    Nonce,
    RequestNonce,
    WebhookDelivery,
)

BATCH = 5000


def _batched(session: Session, table: Any, keys: list[Any], where: Any) -> int:
    """Delete the rows of ``table`` matching ``where``, ``BATCH`` at a time; the count."""
    total = 0
    while True:
        with session.begin():
            chosen = (sa.select(*keys).where(where).limit(BATCH)
                      .with_for_update(skip_locked=True))
            if len(keys) == 1:
                statement = sa.delete(table).where(keys[0].in_(chosen.scalar_subquery()))
            else:
                statement = sa.delete(table).where(sa.tuple_(*keys).in_(chosen))
            done = session.connection().execute(statement).rowcount or 0
        total += done
        if done < BATCH:
            return total


def purge_nonces(session: Session, expired_before: dt.datetime) -> int:
    """Challenge nonces that expired before ``expired_before`` (used or not)."""
    return _batched(session, Nonce, [col(Nonce.value)], col(Nonce.expires_at) < expired_before)


def purge_request_nonces(session: Session, now: dt.datetime) -> int:
    """Signed-request nonces past their replay window (their ``expires_at``)."""
    return _batched(session, RequestNonce,
                    [col(RequestNonce.device_id), col(RequestNonce.nonce)],
                    col(RequestNonce.expires_at) < now)


def purge_enrollments(session: Session, expired_before: dt.datetime) -> int:
    """Enrollment challenges that expired before ``expired_before`` (activated or not):
    the device record holds what an activated one proved."""
    return _batched(session, Enrollment, [col(Enrollment.id)],
                    col(Enrollment.expires_at) < expired_before)


def purge_attestations(session: Session, before: dt.datetime, keep: int,
                       now: dt.datetime) -> int:
    """Attestation records older than ``before``, except, for each device, the latest
    ``keep``, the latest whose quote verified (policy learning and dry runs start from
    it) and any on which a certificate still live at ``now`` was issued."""
    newer = sa.orm.aliased(Attestation)
    same_device = col(newer.device_id) == col(Attestation.device_id)
    newest_first = (col(newer.at).desc(), col(newer.id).desc())
    latest = sa.select(col(newer.id)).where(same_device).order_by(*newest_first).limit(keep)
    verified = (sa.select(col(newer.id))
                .where(same_device, col(newer.quote_verified).is_(True))
                .order_by(*newest_first).limit(1))
    live = sa.select(sa.literal(1)).where(
        col(Certificate.serial) == Attestation.certificate_serial,
        col(Certificate.not_after) > now, col(Certificate.revoked_at).is_(None))
    return _batched(session, Attestation, [col(Attestation.id)], sa.and_(
        col(Attestation.at) < before,
        col(Attestation.id).not_in(latest.scalar_subquery()),
        col(Attestation.id).not_in(verified.scalar_subquery()),
        ~sa.exists(live)))


def purge_workload_certificates(session: Session, expired_before: dt.datetime) -> int:
    """Workload certificates (issued, revoked or void) that expired before
    ``expired_before``; device identity certificates stay (revoked ones are the CRL)."""
    return _batched(session, Certificate, [col(Certificate.serial)], sa.and_(
        col(Certificate.kind) == "workload", col(Certificate.status) != "pending",
        col(Certificate.not_after) < expired_before))


def purge_webhook_deliveries(session: Session, before: dt.datetime) -> int:
    """Deliveries created before ``before``: delivered, or given up a day after creation."""
    return _batched(session, WebhookDelivery, [col(WebhookDelivery.id)],
                    col(WebhookDelivery.created_at) < before)
