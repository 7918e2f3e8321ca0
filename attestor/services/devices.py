"""The device lifecycle for operators: find, inspect, quarantine, release, revoke,
decommission; attestation history. Every change is audited and announced."""

from __future__ import annotations

import base64
import hashlib

from sqlmodel import Session

from attestor import audit
from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import Attestation, Device
from attestor.models.operator import AttestationPublic, Page
from attestor.services import webhooks
from attestor.services.context import Services
from identity.errors import Conflict, MalformedInput
from identity.messages import CertificateRef, DevicePage, DevicePublic
from identity.tpm.structures import object_name, parse_public

# action -> (states it may start from, state it leads to, webhook event)
TRANSITIONS = {
    "quarantine": ({"active"}, "quarantined", "device.quarantined"),
    "release": ({"quarantined"}, "active", "device.released"),
    "revoke": ({"active", "quarantined"}, "revoked", "device.revoked"),
    "decommission": ({"active", "quarantined", "revoked"}, "decommissioned",
                     "device.decommissioned"),
}


def encode_cursor(value: str | int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_",
                                validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedInput("the cursor is not one this API returned") from exc


MAX_POSITION = 2**63 - 1  # a BIGINT: past it SQLite and PostgreSQL fail the query


def decode_position(cursor: str | None) -> int | None:
    """A cursor over numbered rows (audit sequence, attestation or pre-registration id)."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19 or int(value) > MAX_POSITION:
        raise MalformedInput("the cursor is not one this API returned")
    return int(value)


def view(session: Session, device: Device) -> DevicePublic:
    cert = queries.current_certificate(session, device.id)
    last = queries.latest_attestation(session, device.id)
    failed = [c for c in (last.checks if last else []) if not c.get("passed", False)]
    return DevicePublic(
        id=device.id, serial=device.serial, model=device.model,
        device_class=device.device_class, state=device.state,
        state_reason=device.state_reason, enrolled_at=device.enrolled_at,
        last_attested_at=device.last_attested_at, last_verdict=device.last_verdict,
        last_reasons=[r for r in device.last_reasons.split(",") if r],
        current_certificate=CertificateRef(serial=cert.serial, kind=cert.kind,
                                           not_after=cert.not_after) if cert else None,
        failed_checks=failed,
        ak_name=device.ak_name,
        devid_name=object_name(parse_public(device.devid_public)).hex(),
    )


def find(svc: Services, filters: queries.DeviceFilter, cursor: str | None,
         limit: int) -> DevicePage:
    with svc.session() as session:
        rows = queries.find_devices(session, filters, decode_cursor(cursor), limit + 1)
        items = [view(session, d) for d in rows[:limit]]
    more = len(rows) > limit
    return DevicePage(items=items,
                      next_cursor=encode_cursor(rows[limit - 1].id) if more else None)


def get(svc: Services, device_id: str) -> DevicePublic:
    with svc.session() as session:
        return view(session, queries.get_device(session, device_id))


def change_state(svc: Services, device_id: str, action: str, reason: str,
                 caller: Principal) -> DevicePublic:
    """Move a device through its lifecycle; revoking also revokes its certificates."""
    allowed_from, target, event = TRANSITIONS[action]
    now = svc.clock()
    with svc.session() as session, session.begin():
        device = queries.get_device(session, device_id)
        if device.state not in allowed_from:
            raise Conflict(f"a {device.state} device cannot be {action}d")
        previous = device.state
        device.state, device.state_reason, device.state_changed_at = target, reason, now
        session.add(device)
        revoked: list[str] = []
        if target in ("revoked", "decommissioned"):
            revoked = queries.revoke_device_certificates(session, device_id, now,
                                                         "cessation_of_operation"
                                                         if target == "decommissioned"
                                                         else "privilege_withdrawn")
        webhooks.enqueue(session, svc.settings, event, {
            "device_id": device_id, "state": target, "previous_state": previous,
            "reason": reason}, now)
        audit.append(session, at=now, actor=caller.actor, action=f"device.{action}",
                     outcome="success", device_id=device_id, subject=f"device:{device_id}",
                     details={"from": previous, "to": target, "reason": reason,
                              "certificates_revoked": revoked})
        return view(session, device)


def change_class(svc: Services, device_id: str, device_class: str,
                 caller: Principal) -> DevicePublic:
    now = svc.clock()
    with svc.session() as session, session.begin():
        device = queries.get_device(session, device_id)
        previous, device.device_class = device.device_class, device_class
        session.add(device)
        audit.append(session, at=now, actor=caller.actor, action="device.class",
                     outcome="success", device_id=device_id, subject=f"device:{device_id}",
                     details={"from": previous, "to": device_class})
        return view(session, device)


def attestation_view(row: Attestation) -> AttestationPublic:
    assert row.id is not None  # noqa: S101 - stored rows have ids
    return AttestationPublic(
        id=row.id, at=row.at, verdict=row.verdict, reasons=list(row.reasons),
        checks=list(row.checks), warnings=list(row.warnings),
        policy_version=row.policy_version, quote_verified=row.quote_verified,
        evidence_sha256=row.evidence_sha256,
        event_log_sha256=hashlib.sha256(row.event_log).hexdigest() if row.event_log else None,
        certificate_serial=row.certificate_serial,
    )


def history(svc: Services, device_id: str, cursor: str | None,
            limit: int) -> Page[AttestationPublic]:
    before = decode_position(cursor)
    with svc.session() as session:
        queries.get_device(session, device_id)
        rows = queries.attestation_page(session, device_id, before, limit + 1)
    more = len(rows) > limit
    items = [attestation_view(r) for r in rows[:limit]]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)

