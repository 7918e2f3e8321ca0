"""Certificates for operators: list, revoke, and the CRL of device identity certificates."""

from __future__ import annotations

import datetime as dt

from attestor import audit
from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import Certificate
from attestor.models.operator import CertificatePublic, Page
from attestor.services.context import Services
from attestor.services.devices import decode_cursor, encode_cursor
from identity.errors import Conflict, NotFound


def public(row: Certificate) -> CertificatePublic:
    return CertificatePublic(serial=row.serial, device_id=row.device_id, kind=row.kind,
                             status=("revoked" if row.revoked_at and row.status == "issued"
                                     else row.status),
                             not_before=row.not_before, not_after=row.not_after,
                             revoked_at=row.revoked_at, revoked_reason=row.revoked_reason)


def find(svc: Services, device_id: str | None, status: str | None, cursor: str | None,
         limit: int) -> Page[CertificatePublic]:
    with svc.session() as session:
        rows = queries.certificate_page(session, device_id, status, decode_cursor(cursor),
                                        limit + 1)
    more = len(rows) > limit
    items = [public(r) for r in rows[:limit]]
    return Page(items=items, next_cursor=encode_cursor(items[-1].serial) if more else None)


def revoke(svc: Services, serial: str, reason: str, caller: Principal) -> CertificatePublic:
    now = svc.clock()
    with svc.session() as session, session.begin():
        row = session.get(Certificate, serial.lower())
        if row is None:
            raise NotFound(f"no certificate with serial {serial}")
        if row.revoked_at is not None:
            raise Conflict("the certificate is already revoked")
        row.revoked_at, row.revoked_reason = now, reason
        session.add(row)
        audit.append(session, at=now, actor=caller.actor, action="certificate.revoke",
                     outcome="done", device_id=row.device_id, subject=f"certificate:{serial}",
                     details={"reason": reason, "kind": row.kind})
        return public(row)


def crl(svc: Services) -> bytes:
    """The CRL of revoked device identity certificates (workload certificates live an
    hour or so: they are not listed; revoking a device stops their renewal)."""
    now = svc.clock()
    with svc.session() as session:
        rows = queries.revoked_identity_certificates(session)
    revoked = [(int(r.serial, 16), r.revoked_at or now, r.revoked_reason or "unspecified")
               for r in rows]
    number = int(now.timestamp())  # monotonic enough across replicas, and needs no state
    return svc.ca.crl(revoked, now - dt.timedelta(minutes=5), number)
