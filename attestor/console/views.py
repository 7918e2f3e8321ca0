"""What each console page shows, gathered from the database and the services (the
routes only parse the request and render). Blocking: run from sync routes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from attestor import audit
from attestor.db import console_queries, fleet_queries, queries
from attestor.services import certificates, devices, explain
from attestor.services.background import verify_audit
from attestor.services.context import Services
from attestor.services.readiness import readiness
from identity.ekcert import verify_ek_certificate
from identity.errors import IdentityError, NotFound
from identity.tpm.structures import object_name, parse_public

PAGE = 50
STATES = ("active", "quarantined", "revoked", "decommissioned")
VERDICTS = ("pass", "fail", "none")
AUDIT_FILTERS = ("device_id", "actor", "action", "outcome", "reason", "since", "until")


def overview(svc: Services) -> dict[str, Any]:
    now = svc.clock()
    with svc.engine.connect() as conn:
        counts = fleet_queries.device_counts(conn)
        anchor = fleet_queries.audit_anchor(conn)
    with svc.session() as session:
        refusals, refused = console_queries.refusals_by_reason(session,
                                                               now - dt.timedelta(hours=24))
        expiring = [*console_queries.expiring_certificates(
            session, "identity", now, dt.timedelta(days=30)),
            *console_queries.expiring_certificates(
                session, "workload", now, dt.timedelta(seconds=svc.settings.renewal_window))]
    by_state = {state: sum(n for (s, _), n in counts.items() if s == state) for state in STATES}
    return {"counts": counts, "by_state": by_state, "states": STATES, "verdicts": VERDICTS,
            "total": sum(counts.values()), "refusals": refusals.most_common(),
            "refused": refused, "expiring": expiring, "health": readiness(svc),
            "anchor": anchor, "now": now}


def device_list(svc: Services, search: queries.DeviceFilter, after: str | None) -> dict[str, Any]:
    with svc.session() as session:
        rows = queries.find_devices(session, search, after, PAGE + 1)
        classes = console_queries.device_classes(session)
    return {"devices": rows[:PAGE], "next": rows[PAGE - 1].id if len(rows) > PAGE else None,
            "search": search, "classes": classes, "states": STATES, "verdicts": VERDICTS}


def _ek_chain(svc: Services, certificate: bytes | None) -> dict[str, Any]:
    if not certificate:
        return {"present": False}
    try:
        info = verify_ek_certificate(certificate, svc.trust, svc.clock(),
                                     require_san=svc.settings.ek_require_san)
    except IdentityError as exc:
        try:
            leaf = [x509.load_der_x509_certificate(certificate)]
        except ValueError:
            leaf = []
        return {"present": True, "ok": False, "code": exc.code, "detail": exc.detail,
                "chain": leaf}
    return {"present": True, "ok": True, "chain": list(info.chain),
            "manufacturer": info.manufacturer, "model": info.model, "version": info.version}


def device_page(svc: Services, device_id: str) -> dict[str, Any]:
    with svc.session() as session:
        device = queries.get_device(session, device_id)
        public = devices.view(session, device)
        certs = queries.certificate_page(session, device_id, None, None, PAGE)
        history = queries.attestation_page(session, device_id, None, 20)
    return {"device": device, "public": public, "ek": _ek_chain(svc, device.ek_certificate),
            "devid_name": object_name(parse_public(device.devid_public)).hex(),
            "certificates": sorted(certs, key=lambda c: c.not_before, reverse=True),
            "attestations": history}


def attestation_page(svc: Services, device_id: str, attestation_id: int) -> dict[str, Any]:
    with svc.session() as session:
        device = queries.get_device(session, device_id)
        row = console_queries.attestation(session, device_id, attestation_id)
        if row is None:
            raise NotFound(f"no attestation {attestation_id} of device {device_id}")
        explanation = explain.explain(session, device, row)
    return {"device": device, "attestation": row, "explanation": explanation}


def audit_filter(values: Mapping[str, Any]) -> tuple[queries.AuditFilter, list[str]]:
    """The filter the audit query understands, and the names of those it does not (yet):
    the page shows them as unavailable rather than pretending to apply them."""
    known = {f.name for f in dataclasses.fields(queries.AuditFilter)}
    given = {k: v for k, v in values.items() if v not in (None, "")}
    return (queries.AuditFilter(**{k: v for k, v in given.items() if k in known}),
            [k for k in AUDIT_FILTERS if k not in known])


def audit_page(svc: Services, values: Mapping[str, Any], after: int,
               verify: bool = True) -> dict[str, Any]:
    f, unsupported = audit_filter(values)
    with svc.session() as session:
        rows = queries.audit_page(session, f, after, PAGE + 1)
        mark = console_queries.last_checkpoint(session)
    report = verify_audit(svc) if verify else None
    return {"entries": [audit.event_json(r) for r in rows[:PAGE]],
            "next": rows[PAGE - 1].seq if len(rows) > PAGE else None,
            "values": values, "unsupported": unsupported, "report": report,
            "checkpoint": audit.checkpoint_json(mark) if mark else None}


def certificates_page(svc: Services, status: str | None, device_id: str | None,
                      after: str | None) -> dict[str, Any]:
    with svc.session() as session:
        rows = queries.certificate_page(session, device_id, status, after, PAGE + 1)
    crl = x509.load_der_x509_crl(certificates.crl(svc))
    return {"certificates": rows[:PAGE], "next": rows[PAGE - 1].serial if len(rows) > PAGE
            else None, "status": status, "device_id": device_id, "crl": crl,
            "crl_entries": list(crl)}
