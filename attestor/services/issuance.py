"""Crash-safe issuance: every certificate is accounted for before it is signed.

1. ``reserve`` commits a *pending* row holding the serial the certificate will carry
   (an attestation does it in the transaction that spends its nonce, and discards
   the row if the evidence is refused);
2. the issuer signs with that serial (timed for ``edgeproof_issuance_duration_seconds``);
3. ``confirm`` turns the row into *issued*, in the same transaction as the audit
   entry and the attestation or enrollment record; the certificate leaves the
   attestor only after that commit.

If the process dies between 1 and 3, or 3 fails (the audit log cannot be
written, say), the row stays pending or is voided at once. ``reconcile`` runs at
start-up and then every ``issuance.reconcile_seconds`` on every replica: pending
rows older than ``issuance.pending_grace_seconds`` (longer than an issuance takes,
so other replicas' work in flight is normally left alone) become *void* and are
marked revoked, each with one audit entry, whichever replicas run it at once (rows
claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, voided by a conditional
UPDATE everywhere). Voiding a reservation that was in fact still in flight is safe:
its ``confirm`` finds no pending row and the request fails (503) without handing the
certificate out. No signed certificate is ever unknown to the database; a void one
was never handed out. ``edgeproof_issuance_pending_oldest_age_seconds`` shows the
age of the oldest reservation after each pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from cryptography import x509
from sqlmodel import Session, col, select

from attestor import audit
from attestor.backends.issuer import IssuedCertificate
from attestor.db import attestation_queries as aq
from attestor.db.models import Certificate
from attestor.services.context import Services
from identity.errors import ServiceError

log = logging.getLogger("attestor.issuance")
VOID_REASON = "issuance_interrupted"
RECONCILE_BATCH = 500


_CONFIRM = (sa.update(Certificate)
            .where(col(Certificate.serial) == sa.bindparam("s"),
                   col(Certificate.status) == "pending")
            .values(status="issued", pem=sa.bindparam("pem"), not_before=sa.bindparam("nb"),
                    not_after=sa.bindparam("na")))


_DISCARD = sa.delete(Certificate).where(col(Certificate.serial) == sa.bindparam("s"),
                                        col(Certificate.status) == "pending")


def reserve_in(conn: sa.Connection, device_id: str, kind: str, now: dt.datetime,
               lifetime: dt.timedelta) -> int:
    """Add a pending row for a fresh serial in the caller's transaction (which must
    commit before signing); returns the serial to sign with."""
    serial = x509.random_serial_number()
    aq.reserve_certificate(conn, f"{serial:x}", device_id, kind, now, now + lifetime)
    return serial


def reserve(svc: Services, device_id: str, kind: str, now: dt.datetime,
            lifetime: dt.timedelta) -> int:
    """Commit a pending row for a fresh serial; returns the serial to sign with."""
    with svc.engine.begin() as conn:
        return reserve_in(conn, device_id, kind, now, lifetime)


def discard(session: Session | sa.Connection, serial: int) -> None:
    """Drop a reservation that will never be signed (the attestation was refused)."""
    conn = session.connection() if isinstance(session, Session) else session
    conn.execute(_DISCARD, {"s": f"{serial:x}"})


def sign(svc: Services, serial: int, kind: str,
         signer: Callable[[], IssuedCertificate], *,
         assigns_serials: bool = False) -> IssuedCertificate:
    """Sign the reserved certificate; a failure voids the reservation. For an issuer
    that assigns serials (Vault), the reservation is re-keyed to the serial issued
    at once, before anything else happens to the certificate."""
    started = time.perf_counter()
    try:
        issued = signer()
    except Exception:
        void(svc, serial, "signing_failed")
        raise
    svc.metrics.issuance.labels(kind=kind).observe(time.perf_counter() - started)
    if issued.cert.serial_number != serial and assigns_serials:
        _rekey(svc, serial, issued)
    elif issued.cert.serial_number != serial:
        void(svc, serial, "serial_mismatch")
        raise ServiceError("the issuer did not use the reserved serial")
    return issued


def _rekey(svc: Services, reserved: int, issued: IssuedCertificate) -> None:
    try:
        with svc.session() as session, session.begin():
            result = session.execute(
                sa.update(Certificate).where(col(Certificate.serial) == f"{reserved:x}",
                                             col(Certificate.status) == "pending")
                .values(serial=issued.serial))
            moved = int(getattr(result, "rowcount", 0))
    except sa.exc.SQLAlchemyError as exc:
        void(svc, reserved, "not_recorded")
        raise ServiceError(f"the issued serial {issued.serial} could not be recorded") from exc
    if moved != 1:
        raise ServiceError(f"reservation {reserved:x} vanished before serial {issued.serial} "
                           "was recorded")


def confirm(session: Session | sa.Connection, issued: IssuedCertificate) -> None:
    """Record the signed certificate (inside the caller's transaction)."""
    conn = session.connection() if isinstance(session, Session) else session
    pg = aq.driver(conn)
    cert = issued.cert
    if pg is not None:
        changed = aq.confirm_certificate_pg(pg, issued.serial, issued.pem,
                                            cert.not_valid_before_utc, cert.not_valid_after_utc)
    else:
        changed = int(getattr(conn.execute(_CONFIRM, {
            "s": issued.serial, "pem": issued.pem, "nb": cert.not_valid_before_utc,
            "na": cert.not_valid_after_utc}), "rowcount", 0))
    if changed != 1:
        raise ServiceError(f"certificate {issued.serial} was not reserved")


def void(svc: Services, serial: int, reason: str) -> None:
    """Best effort: mark a reservation whose certificate was never handed out."""
    try:
        with svc.session() as session, session.begin():
            row = session.get(Certificate, f"{serial:x}")
            if row is not None and row.status == "pending":
                row.status, row.revoked_at, row.revoked_reason = "void", svc.clock(), reason
                session.add(row)
    except sa.exc.SQLAlchemyError:
        log.exception("could not void reservation %x; the scheduled reconciliation will",
                      serial)


_VOID = (sa.update(Certificate)
         .where(col(Certificate.serial) == sa.bindparam("s"),
                col(Certificate.status) == "pending")
         .values(status="void", revoked_at=sa.bindparam("at"), revoked_reason=VOID_REASON))


def reconcile(svc: Services, now: dt.datetime,
              grace: dt.timedelta | None = None) -> list[str]:
    """Void pending reservations older than ``grace`` (default: the settings'); returns
    the serials this call voided (another replica's are not repeated)."""
    if grace is None:
        grace = dt.timedelta(seconds=svc.settings.issuance.pending_grace_seconds)
    voided: list[str] = []
    with svc.session() as session, session.begin():
        stale = session.exec(select(Certificate).where(
            Certificate.status == "pending", col(Certificate.not_before) < now - grace)
            .order_by(col(Certificate.not_before)).limit(RECONCILE_BATCH)
            .with_for_update(skip_locked=True)).all()
        conn = session.connection()
        for row in stale:
            # SQLite has no row locks: another process may have voided it since the read.
            if int(getattr(conn.execute(_VOID, {"s": row.serial, "at": now}), "rowcount",
                           0)) != 1:
                continue
            audit.append(session, at=now, actor="attestor", action="certificate.reconcile",
                         outcome="alert", device_id=row.device_id,
                         subject=f"certificate:{row.serial}",
                         details={"kind": row.kind, "reason": VOID_REASON,
                                  "reserved_at": row.not_before.isoformat()})
            voided.append(row.serial)
    if voided:
        log.warning("voided %d interrupted issuance(s): %s", len(voided), ", ".join(voided))
    return voided


def oldest_pending_age(svc: Services, now: dt.datetime) -> float:
    """Seconds since the oldest reservation still pending was made (0 when none is)."""
    with svc.session() as session:
        oldest: dt.datetime | None = session.execute(
            sa.select(sa.func.min(col(Certificate.not_before)))
            .where(col(Certificate.status) == "pending")).scalar()
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def reconcile_pass(svc: Services) -> None:
    """One scheduled pass: void what was interrupted, then report the oldest age."""
    now = svc.clock()
    reconcile(svc, now)
    svc.metrics.pending_oldest_age.set(oldest_pending_age(svc, now))
