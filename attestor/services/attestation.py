"""Challenge and attestation: verify the evidence, then issue; or refuse and issue nothing.

Order of work: the nonce is consumed first, in its own transaction, so a nonce
is spent even when the rest fails. Then every check runs and is recorded. Only
if all pass is a certificate signed and are secrets read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlmodel import Session

from attestor import audit
from attestor.backends.issuer import IssuedCertificate
from attestor.db import queries
from attestor.db.models import Attestation, Device, Nonce, Policy
from attestor.services import issuance, results, webhooks
from attestor.services.context import Services
from attestor.services.evidence import Verification, verify_evidence
from attestor.services.policies import device_and_policy
from attestor.services.release import Released, release
from identity import ear
from identity.errors import (
    DeviceNotActive,
    DeviceUnknown,
    IdentityError,
    ServiceError,
    VerificationFailed,
)
from identity.messages import (
    AttestationRequest,
    AttestationResult,
    Challenge,
    ImaProgress,
    PolicyRef,
    encode,
)
from identity.pcr import format_pcr_values, parse_pcr_values
from identity.policy import PolicyDocument

NONCE_SIZE = 32


def _actor(device_id: str) -> str:
    """The principal of every attestation entry: the device, by its signed request."""
    return f"device:{device_id}"


def challenge(svc: Services, device_id: str) -> Challenge:
    now = svc.clock()
    nonce = secrets.token_bytes(NONCE_SIZE)
    expires = now + dt.timedelta(seconds=svc.settings.nonce_ttl_seconds)
    with svc.session() as session, session.begin():
        device, document, _ = device_and_policy(session, device_id)
        if device.state != "active":
            raise DeviceNotActive(device.state)
        queries.add_nonce(
            session, Nonce(value=nonce.hex(), device_id=device_id, expires_at=expires)
        )
    ima = None
    if document.ima is not None and device.ima_state:
        ima = ImaProgress(accepted_entries=int(device.ima_state.get("entries", 0)),
                          reset_count=int(device.ima_state.get("reset_count", -1)))
    return Challenge(
        nonce=nonce, expires_at=expires, pcr_selection=document.required_selection().as_dict(),
        ima=ima,
    )


def _evidence_digest(req: AttestationRequest) -> str:
    return hashlib.sha256(encode(req)).hexdigest()


def attest(svc: Services, device_id: str, req: AttestationRequest) -> AttestationResult:
    now = svc.clock()
    policy: Policy | None = None
    serial: int | None = None
    with svc.session() as session:
        try:
            # One transaction reads the device and its policy, spends the nonce and
            # reserves the certificate's serial: the nonce is consumed (committed) before
            # any verification, even when it fails; a refusal discards the reservation.
            with session.begin():
                device, document, policy = device_and_policy(session, device_id)
                if device.state != "active":
                    raise DeviceNotActive(device.state)
                queries.consume_nonce(session, req.nonce.hex(), device_id, now)
                ttl = _lifetime(svc, document)
                reserved = issuance.reserve_in(session.connection(), device_id, "workload",
                                               now, ttl)
            serial = reserved
            result = verify_evidence(svc.ak(device.ak_public), device, req, document)
        except DeviceUnknown:
            with session.begin():
                audit.append(
                    session, at=now, actor=_actor(device_id), action="attestation",
                    outcome="refused", device_id=device_id, reasons=[DeviceUnknown.code],
                )
            raise
        except IdentityError as exc:
            _record_refusal(svc, session, device, req, now, [exc.code], [], policy,
                            quote_ok=False, reserved=serial)
            raise
        runner = result.runner
        checks = [c.as_dict() for c in runner.checks]
        if not runner.passed:
            _record_refusal(svc, session, device, req, now, runner.reason_codes, checks,
                            policy, quote_ok=result.quote_ok, reserved=reserved)
            raise VerificationFailed("attestation refused", runner.checks, runner.reason_codes)

        appraisal = ear.appraise(checks, runner.warnings)
        try:
            released, issued, roots = _release_and_issue(svc, device, result, document,
                                                         appraisal.status, now, reserved, ttl)
        except ServiceError as exc:  # a backend failed: nothing issued or released
            _record_backend_failure(svc, session, device_id, now, exc, reserved)
            raise
        try:
            token = results.result_token(
                svc, device_id=device_id, result=result, appraisal=appraisal,
                certificate=issued.cert,
                policy=results.policy_id(device.device_class, policy.version if policy else None),
                event_log=req.event_log, now=now, nonce=req.ear_nonce)
            renewal = _record_pass(svc, session, device_id, req, now, result, checks, policy,
                                   issued, released)
        except Exception:
            issuance.void(svc, issued.cert.serial_number, "not_recorded")
            raise
    svc.metrics.attestation("pass", [])
    if renewal:
        svc.metrics.renewals.inc()
    return AttestationResult(
        device_id=device_id, verdict="pass", checks=checks,
        warnings=runner.warnings,
        policy=PolicyRef(device_class=device.device_class,
                         version=policy.version if policy else None),
        certificate=issued.pem, chain=issued.chain_pem, ca=roots,
        serial=issued.serial, not_before=issued.cert.not_valid_before_utc,
        not_after=issued.cert.not_valid_after_utc, secrets=released.granted,
        ima=ImaProgress(accepted_entries=result.ima_state.entries,
                        reset_count=result.quote.clock.reset_count) if result.ima_state else None,
        ima_pending_entries=result.ima_pending, token=token,
    )


def _record_pass(
    svc: Services, session: Session, device_id: str, req: AttestationRequest,
    now: dt.datetime, result: Verification, checks: list[dict[str, Any]],
    policy: Policy | None, issued: IssuedCertificate, released: Released,
) -> bool:
    """Record the pass, its certificate and audit entry at once; True for a renewal."""
    clock = result.quote.clock
    with session.begin():
        device = queries.get_device(session, device_id)  # loaded at the start: no query
        renewal = queries.holds_certificate(session, device_id)
        _announce_verdict(svc, session, device, "pass", [], now)
        queries.record_attested(
            session, device_id, last_attested_at=now, last_verdict="pass", last_reasons="",
            clock_reset_count=clock.reset_count, clock_restart_count=clock.restart_count,
            clock_value=clock.clock,
            **({"ima_state": result.stored_ima_state()} if result.ima_state is not None
               else {}))
        queries.add_attestation(session, Attestation(
            device_id=device_id, at=now, verdict="pass", reasons=[],
            checks=checks, warnings=result.runner.warnings,
            policy_id=policy.id if policy else None,
            policy_version=policy.version if policy else None,
            quote_verified=True, pcr_values=format_pcr_values(parse_pcr_values(req.pcrs)),
            evidence_sha256=_evidence_digest(req), certificate_serial=issued.serial,
            event_log=req.event_log,
        ))
        issuance.confirm(session, issued)
        audit.append(
            session, at=now, actor=_actor(device_id), action="attestation",
            outcome="success", device_id=device_id,
            details={
                "certificate_serial": issued.serial,
                "policy_version": policy.version if policy else None,
                "secrets": released.audit,
                **({"withheld_secrets": released.withheld} if released.withheld else {}),
                "warnings": result.runner.warnings,
            },
        )
    return renewal


def _announce_verdict(svc: Services, session: Session, device: Device, verdict: str,
                      reasons: list[str], now: dt.datetime) -> None:
    """A webhook when the device's verdict differs from its last one."""
    if device.last_verdict != verdict:
        webhooks.enqueue(session, svc.settings, "verdict.changed", {
            "device_id": device.id, "verdict": verdict, "previous_verdict": device.last_verdict,
            "reasons": reasons}, now)


def _lifetime(svc: Services, document: PolicyDocument) -> dt.timedelta:
    return dt.timedelta(seconds=min(
        document.cert_ttl_seconds or svc.settings.issuance.cert_ttl_seconds,
        svc.settings.issuance.max_cert_ttl_seconds))


def _release_and_issue(svc: Services, device: Device, result: Verification,
                       document: PolicyDocument, status: str, now: dt.datetime,
                       serial: int, ttl: dt.timedelta,
                       ) -> tuple[Released, IssuedCertificate, str]:
    """Secrets, the issuer's trust anchors, then the certificate: if a backend fails,
    nothing leaves (and nothing after the pass is recorded can fail on a backend)."""
    csr = result.csr
    if csr is None:  # a pass means the "csr" check passed; never sign without it
        raise ServiceError("a passing verification without a checked CSR")
    released = release(svc, document, device, status)
    roots = svc.issuer.roots_pem()
    issued = issuance.sign(svc, serial, "workload", lambda: svc.issuer.issue_workload(
        csr, device_id=device.id, now=now, ttl=ttl, serial=serial),
        assigns_serials=svc.issuer.assigns_serials)
    return released, issued, roots


def _record_backend_failure(svc: Services, session: Session, device_id: str,
                            now: dt.datetime, exc: ServiceError, reserved: int) -> None:
    """Audit an attestation that passed but could not be served (the device's verdict
    and credentials stay as they were: it is not the device's fault)."""
    svc.metrics.attestation("error", [exc.code])
    with session.begin():
        issuance.discard(session, reserved)  # unless signing failed: then it is void
        audit.append(session, at=now, actor=_actor(device_id), action="attestation",
                     outcome="error", device_id=device_id, reasons=[exc.code])


def _record_refusal(
    svc: Services, session: Session, device: Device, req: AttestationRequest,
    now: dt.datetime, reasons: list[str], checks: list[dict[str, object]],
    policy: Policy | None, quote_ok: bool, reserved: int | None = None,
) -> None:
    svc.metrics.attestation("fail", reasons)
    with session.begin():
        if reserved is not None:
            issuance.discard(session, reserved)
        fresh = queries.get_device(session, device.id)
        _announce_verdict(svc, session, fresh, "fail", reasons, now)
        fresh.last_attested_at = now
        fresh.last_verdict = "fail"
        fresh.last_reasons = ("," + ",".join(reasons) + ",")[:1024]
        session.add(fresh)
        pcrs: dict[str, object] = {}
        if quote_ok:
            pcrs = dict(format_pcr_values(parse_pcr_values(req.pcrs)))
        event_log = req.event_log if quote_ok else None
        queries.add_attestation(session, Attestation(
            device_id=device.id, at=now, verdict="fail", reasons=reasons, checks=checks,
            policy_id=policy.id if policy else None,
            policy_version=policy.version if policy else None,
            quote_verified=quote_ok, pcr_values=pcrs, evidence_sha256=_evidence_digest(req),
            event_log=event_log,
        ))
        audit.append(
            session, at=now, actor=_actor(device.id), action="attestation",
            outcome="refused", device_id=device.id, reasons=reasons,
        )
