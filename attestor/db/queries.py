"""Every query the attestor runs, in one place. Callers own the transaction.

Single-use values (nonces, activation secrets) are consumed with one guarded
UPDATE, so two replicas racing on the same value cannot both win.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from attestor.db import attestation_queries
from attestor.db.models import (
    Attestation,
    AuditEvent,
    Certificate,
    Device,
    Enrollment,
    Policy,
    Preregistration,
    RequestNonce,
    StoredSecret,
)
from identity.errors import (
    ActivationExpired,
    ActivationUnknown,
    ActivationUsed,
    Conflict,
    DeviceUnknown,
)


def _rowcount(result: sa.Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0))


# devices ---------------------------------------------------------------------


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise DeviceUnknown(f"no enrolled device {device_id!r}")
    return device


_DEVID = sa.select(col(Device.devid_public)).where(col(Device.id) == sa.bindparam("d"))


def devid_public_of(conn: sa.Connection, device_id: str) -> bytes | None:
    """The enrolled DevID public area of a device (what its requests are signed with)."""
    row = conn.execute(_DEVID, {"d": device_id}).first()
    return bytes(row[0]) if row is not None else None


def spend_request_nonce(conn: sa.Connection, device_id: str, nonce: str,
                        expires_at: dt.datetime) -> bool:
    """Record a signed request's nonce; False if it was recorded before (a replay). An
    insert-if-absent, without a savepoint, on SQLite and PostgreSQL alike."""
    pg = attestation_queries.driver(conn)
    if pg is not None:
        return attestation_queries.spend_request_nonce_pg(pg, device_id, nonce, expires_at)
    insert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(RequestNonce)
    statement = (insert.values(device_id=device_id, nonce=nonce, expires_at=expires_at)
                 .on_conflict_do_nothing().returning(col(RequestNonce.nonce)))
    return conn.execute(statement).first() is not None  # no row back: it was there


def find_device(session: Session, device_id: str) -> Device | None:
    return session.get(Device, device_id)


def list_devices(session: Session, limit: int = 100) -> Sequence[Device]:
    return session.exec(select(Device).order_by(col(Device.enrolled_at)).limit(limit)).all()


@dataclass(frozen=True)
class DeviceFilter:
    state: str | None = None
    device_class: str | None = None
    attested_before: dt.datetime | None = None
    attested_after: dt.datetime | None = None
    reason: str | None = None  # a reason code of the last attestation
    text: str | None = None  # part of the id, serial or model (the console's search)
    verdict: str | None = None  # "pass", "fail" or "none" (never attested)


def find_devices(session: Session, f: DeviceFilter, after: str | None,
                 limit: int) -> Sequence[Device]:
    """Keyset paging by device id."""
    query = select(Device).order_by(col(Device.id)).limit(limit)
    if after:
        query = query.where(col(Device.id) > after)
    if f.text:
        query = query.where(sa.or_(*(col(c).contains(f.text, autoescape=True)
                                     for c in (Device.id, Device.serial, Device.model))))
    if f.verdict == "none":
        query = query.where(col(Device.last_verdict).is_(None))
    elif f.verdict:
        query = query.where(Device.last_verdict == f.verdict)
    if f.state:
        query = query.where(Device.state == f.state)
    if f.device_class:
        query = query.where(Device.device_class == f.device_class)
    if f.attested_before:
        query = query.where(col(Device.last_attested_at) < f.attested_before)
    if f.attested_after:
        query = query.where(col(Device.last_attested_at) > f.attested_after)
    if f.reason:
        query = query.where(col(Device.last_reasons).contains(f",{f.reason},",
                                                             autoescape=True))
    return session.exec(query).all()


def current_certificate(session: Session, device_id: str) -> Certificate | None:
    """The newest issued, unrevoked workload certificate: X.509 times have whole seconds,
    so among certificates of one second, the one the later attestation issued."""
    issued_by = sa.and_(col(Attestation.device_id) == col(Certificate.device_id),
                        col(Attestation.certificate_serial) == col(Certificate.serial))
    return session.exec(
        select(Certificate).outerjoin(Attestation, issued_by)
        .where(Certificate.device_id == device_id, Certificate.kind == "workload",
               Certificate.status == "issued", col(Certificate.revoked_at).is_(None))
        .order_by(col(Certificate.not_before).desc(), col(Attestation.id).desc().nulls_last())
        .limit(1)).first()


def latest_attestation(session: Session, device_id: str) -> Attestation | None:
    return session.exec(select(Attestation).where(Attestation.device_id == device_id)
                        .order_by(col(Attestation.id).desc()).limit(1)).first()


def attestation_page(session: Session, device_id: str, before: int | None,
                     limit: int) -> Sequence[Attestation]:
    query = (select(Attestation).where(Attestation.device_id == device_id)
             .order_by(col(Attestation.id).desc()).limit(limit))
    if before is not None:
        query = query.where(col(Attestation.id) < before)
    return session.exec(query).all()


def revoke_device_certificates(session: Session, device_id: str, now: dt.datetime,
                               reason: str) -> list[str]:
    rows = session.exec(select(Certificate).where(
        Certificate.device_id == device_id, col(Certificate.revoked_at).is_(None),
        Certificate.status == "issued")).all()
    for row in rows:
        row.revoked_at, row.revoked_reason = now, reason
        session.add(row)
    return [row.serial for row in rows]


def certificate_page(session: Session, device_id: str | None, status: str | None,
                     after: str | None, limit: int) -> Sequence[Certificate]:
    query = select(Certificate).order_by(col(Certificate.serial)).limit(limit)
    if after:
        query = query.where(col(Certificate.serial) > after)
    if device_id:
        query = query.where(Certificate.device_id == device_id)
    if status == "revoked":
        query = query.where(col(Certificate.revoked_at).is_not(None))
    elif status:
        query = query.where(Certificate.status == status, col(Certificate.revoked_at).is_(None))
    return session.exec(query).all()


def revoked_identity_certificates(session: Session) -> Sequence[Certificate]:
    return session.exec(select(Certificate).where(
        Certificate.kind == "identity", col(Certificate.revoked_at).is_not(None))
        .order_by(col(Certificate.revoked_at))).all()


# enrollment ------------------------------------------------------------------


def add_enrollment(session: Session, enrollment: Enrollment) -> None:
    session.add(enrollment)


def pending_enrollment(session: Session, enrollment_id: str, now: dt.datetime) -> Enrollment:
    """The enrollment, if it may still be answered (nothing is spent); typed errors say
    why it may not be. ``consume_enrollment`` spends it, atomically."""
    row = session.get(Enrollment, enrollment_id, populate_existing=True)
    if row is None:
        raise ActivationUnknown("no pending enrollment with that id")
    if row.used_at is not None:
        raise ActivationUsed("this enrollment challenge was already answered")
    if row.expires_at <= now:
        raise ActivationExpired("the enrollment challenge has expired; enroll again")
    return row


def consume_enrollment(session: Session, enrollment_id: str, now: dt.datetime) -> Enrollment:
    """Mark a pending enrollment used, once; typed errors say why it cannot be."""
    result = session.execute(
        sa.update(Enrollment)
        .where(
            col(Enrollment.id) == enrollment_id,
            col(Enrollment.used_at).is_(None),
            col(Enrollment.expires_at) > now,
        )
        .values(used_at=now)
    )
    row = session.get(Enrollment, enrollment_id, populate_existing=True)
    if _rowcount(result) == 1 and row is not None:
        return row
    if row is None:
        raise ActivationUnknown("no pending enrollment with that id")
    if row.used_at is not None:
        raise ActivationUsed("this enrollment challenge was already answered")
    raise ActivationExpired("the enrollment challenge has expired; enroll again")


def preregistration_for(session: Session, ek_key_sha256: str) -> Preregistration | None:
    return session.exec(select(Preregistration)
                        .where(Preregistration.ek_key_sha256 == ek_key_sha256)).first()


def mark_preregistration_enrolled(session: Session, ek_key_sha256: str, device_id: str,
                                  now: dt.datetime) -> None:
    row = preregistration_for(session, ek_key_sha256)
    if row is not None and row.enrolled_at is None:
        row.enrolled_device_id, row.enrolled_at = device_id, now
        session.add(row)


def add_preregistrations(session: Session, rows: Sequence[Preregistration]) -> None:
    """All or nothing: a duplicate EK refuses the whole batch."""
    try:
        with session.begin_nested():
            session.add_all(rows)
    except IntegrityError as exc:
        raise Conflict("an EK in this batch is already pre-registered") from exc


def pending_preregistrations(session: Session, after: int, limit: int) -> Sequence[Preregistration]:
    return session.exec(select(Preregistration)
                        .where(col(Preregistration.enrolled_at).is_(None),
                               col(Preregistration.id) > after)
                        .order_by(col(Preregistration.id)).limit(limit)).all()


# attestations and certificates (the attestation cycle's own statements, challenge
# nonces among them, are in attestor/db/attestation_queries.py) ---------------------


def last_verified_attestation(session: Session, device_id: str) -> Attestation | None:
    """The latest attestation whose quote verified (its PCR values are genuine)."""
    return session.exec(
        select(Attestation)
        .where(Attestation.device_id == device_id, col(Attestation.quote_verified).is_(True))
        .order_by(col(Attestation.at).desc(), col(Attestation.id).desc())
        .limit(1)
    ).first()


def attestations_for(session: Session, device_id: str, limit: int = 50) -> Sequence[Attestation]:
    return session.exec(
        select(Attestation)
        .where(Attestation.device_id == device_id)
        .order_by(col(Attestation.at).desc(), col(Attestation.id).desc())
        .limit(limit)
    ).all()


def add_certificate(session: Session, cert: Certificate) -> None:
    session.add(cert)


# policies --------------------------------------------------------------------


def current_policy(session: Session, device_class: str) -> Policy | None:
    return session.exec(
        select(Policy)
        .where(Policy.device_class == device_class)
        .order_by(col(Policy.version).desc())
        .limit(1)
    ).first()


def policy_versions(session: Session, device_class: str) -> Sequence[Policy]:
    return session.exec(select(Policy).where(Policy.device_class == device_class)
                        .order_by(col(Policy.version).desc())).all()


def policy_version(session: Session, device_class: str, version: int) -> Policy | None:
    return session.exec(select(Policy).where(Policy.device_class == device_class,
                                             Policy.version == version)).first()


def policy_classes(session: Session) -> list[str]:
    return [str(c) for c in session.execute(
        sa.select(col(Policy.device_class)).distinct().order_by(col(Policy.device_class)))
        .scalars()]


def add_policy_version(
    session: Session, device_class: str, document: dict[str, Any], actor: str, now: dt.datetime
) -> Policy:
    """Append a new immutable version; the unique constraint settles concurrent writers."""
    for _ in range(3):
        latest = current_policy(session, device_class)
        version = (latest.version if latest else 0) + 1
        policy = Policy(
            device_class=device_class, version=version, document=document,
            created_at=now, created_by=actor,
        )
        try:
            with session.begin_nested():
                session.add(policy)
            return policy
        except IntegrityError:
            continue
    raise RuntimeError("could not allocate a policy version after 3 attempts")


# embedded secret store ---------------------------------------------------------


def latest_secret(session: Session, name: str) -> StoredSecret | None:
    return session.exec(
        select(StoredSecret)
        .where(StoredSecret.name == name)
        .order_by(col(StoredSecret.version).desc())
        .limit(1)
    ).first()


def all_secrets(session: Session) -> list[StoredSecret]:
    return list(session.exec(select(StoredSecret).with_for_update()).all())


def add_secret(session: Session, secret: StoredSecret) -> None:
    session.add(secret)


def secret_names(session: Session, limit: int | None = None) -> list[tuple[str, int]]:
    rows = session.execute(
        sa.select(col(StoredSecret.name), sa.func.max(col(StoredSecret.version)))
        .group_by(col(StoredSecret.name))
        .order_by(col(StoredSecret.name)).limit(limit)
    ).all()
    return [(str(name), int(version)) for name, version in rows]


# audit -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Every field optional; ``actor`` is a prefix (``token:`` finds every token holder),
    ``reason`` one reason code the entry's ``reasons`` must hold."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    device_id: str | None = None
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    reason: str | None = None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _holds_reason(dialect: str, code: str) -> sa.ColumnElement[bool]:
    """``reasons`` (a JSON array) holds ``code``, exactly."""
    if dialect == "postgresql":
        return sa.cast(col(AuditEvent.reasons), JSONB).contains([code])
    each = sa.func.json_each(col(AuditEvent.reasons)).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == code))


def audit_page(session: Session, f: AuditFilter, after: int, limit: int) -> Sequence[AuditEvent]:
    """Entries after sequence number ``after`` (the cursor: stable while entries are
    appended), in order, filtered."""
    query = (select(AuditEvent).where(col(AuditEvent.seq) > after)
             .order_by(col(AuditEvent.seq)).limit(limit))
    if f.since:
        query = query.where(col(AuditEvent.at) >= f.since)
    if f.until:
        query = query.where(col(AuditEvent.at) < f.until)
    for column, value in ((AuditEvent.device_id, f.device_id), (AuditEvent.action, f.action),
                          (AuditEvent.outcome, f.outcome)):
        if value:
            query = query.where(column == value)
    if f.actor:
        # LIKE ignores ASCII case on SQLite, not on PostgreSQL: the substr comparison
        # makes the prefix exact on both (LIKE stays for PostgreSQL's index).
        actor = col(AuditEvent.actor)
        query = query.where(actor.like(_like_prefix(f.actor), escape="\\"),
                            sa.func.substr(actor, 1, len(f.actor)) == f.actor)
    if f.reason:
        query = query.where(_holds_reason(session.get_bind().dialect.name, f.reason))
    return session.exec(query).all()


def audit_events(session: Session, device_id: str | None = None) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq))
    if device_id is not None:
        query = query.where(AuditEvent.device_id == device_id)
    return session.exec(query).all()
