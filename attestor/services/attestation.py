"""Challenge and attestation: a short transaction script around the pure appraisal
(identity/appraisal.py); if the evidence is refused, nothing is issued.

- ``challenge`` reads the device and its policy and answers an authenticated, expiring
  nonce (identity/challenge.py): nothing is written.
- ``attest`` reads the device and its policy, checks that the nonce was issued by this
  attestor to this device and has not expired, spends it (an insert-if-absent: a replay
  finds it spent, on every replica) and reserves the certificate's serial: on PostgreSQL
  one read and one write statement, each atomic on its own in autocommit (no BEGIN or
  COMMIT round trips; ``attestation_queries.each_statement_atomic``), elsewhere one
  transaction. That is written before any verification, so a nonce is spent even when
  the rest fails. Then the appraisal runs; on a pass, secrets are read and the
  certificate signed, and one transaction records the pass (device, attestation record,
  certificate, audit entry); on a refusal one transaction records the refusal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from attestor import audit
from attestor.auth import devices
from attestor.auth.devices import RequestProof
from attestor.backends.issuer import IssuedCertificate
from attestor.db import attestation_queries as aq
from attestor.db import queries
from attestor.db.attestation_queries import DeviceRecord, PolicyRecord
from attestor.services import issuance, results, webhooks
from attestor.services.context import Services
from attestor.services.logcache import ParsedLogs
from attestor.services.policies import document_of
from attestor.services.release import Released, release
from identity import challenge as nonces
from identity import ear
from identity.appraisal import Enrolled, Verdict, appraise
from identity.errors import (
    AuthInvalid,
    AuthReplay,
    DeviceNotActive,
    DeviceUnknown,
    IdentityError,
    NonceUsed,
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
from identity.pcr import format_pcr_values
from identity.policy import PolicyDocument
from identity.tpm.quote import ClockState

# Process-wide: one device's log is the same at every attestation until it reboots.
PARSED_LOGS = ParsedLogs()


def _actor(device_id: str) -> str:
    """The principal of every attestation entry: the device, by its signed request."""
    return f"device:{device_id}"


def challenge(svc: Services, device_id: str, proof: RequestProof | None = None) -> Challenge:
    """A nonce for ``device_id``; ``proof``, the device's signed request, is checked and
    its nonce spent in the transaction that reads the device (None: checked already)."""
    now = svc.clock()
    # a signed request's nonce is written; without one, nothing is
    with svc.engine.connect() as conn, aq.each_statement_atomic(conn):
        device, policy, _ = _read(svc, conn, device_id, proof, now)
    if device.state != "active":  # a quarantined or revoked device still calling in
        refused = DeviceNotActive(device.state)
        with svc.engine.begin() as conn:
            audit.append(conn, at=now, actor=_actor(device_id),
                         action="attestation.challenge", outcome="refused",
                         device_id=device_id, reasons=[refused.code],
                         details={"detail": refused.detail[:200]})
        raise refused
    document = _document(policy)
    nonce = nonces.issue(svc.challenge_key, device_id,
                         now + dt.timedelta(seconds=svc.settings.nonce_ttl_seconds))
    ima = None
    if document.ima is not None and device.ima_state:
        ima = ImaProgress(accepted_entries=int(device.ima_state.get("entries", 0)),
                          reset_count=int(device.ima_state.get("reset_count", -1)))
    return Challenge(
        nonce=nonce, expires_at=nonces.expiry(nonce),
        pcr_selection=document.required_selection().as_dict(), ima=ima,
    )


def _read(svc: Services, conn: sa.Connection, device_id: str, proof: RequestProof | None,
          now: dt.datetime, *, attesting: bool = False,
          ) -> tuple[DeviceRecord, PolicyRecord | None, bool | None]:
    """The device and its policy; with ``proof``, the request's DevID signature checked
    against the row just read, the device's rate limit applied, the request nonce spent
    (a rate-limited request's nonce is spent too, in a transaction of its own).
    ``attesting`` on PostgreSQL: whether the device holds a certificate is read in the
    same query, and an active device's request nonce is left for :func:`_open`'s
    statement to spend."""
    pg = aq.driver(conn) if attesting else None
    holds: bool | None = None
    try:
        if pg is not None:
            device, policy, holds = aq.read_for_attestation_pg(pg, device_id)
        else:
            device, policy = aq.device_and_policy(conn, device_id)
    except DeviceUnknown:
        if proof is not None:
            raise AuthInvalid("unknown device") from None  # what the request's check says
        raise
    if proof is not None:
        principal = devices.verify_proof(proof, device.devid_public, now, svc.devid_keys)
        refused = proof.admit(principal)
        if refused is not None:
            with svc.engine.begin() as own:
                devices.spend_proof(own, proof, now)
            raise refused
        if pg is None or device.state != "active":
            devices.spend_proof(conn, proof, now)
    return device, policy, holds


def _open(svc: Services, conn: sa.Connection, device: DeviceRecord, req: AttestationRequest,
          proof: RequestProof | None, holds: bool | None, now: dt.datetime,
          ttl: dt.timedelta) -> int:
    """Spend the nonce and reserve the certificate's serial (returned). On PostgreSQL,
    after :func:`_read` with ``attesting``, the request nonce too, in one statement; the
    refusals and their order are those of the separate statements."""
    pg = aq.driver(conn) if holds is not None else None
    if pg is None:
        _spend(svc, conn, device, req.nonce, now)
        return issuance.reserve_in(conn, device.id, "workload", now, ttl)
    try:
        expires = nonces.check(svc.challenge_key, req.nonce, device.id, now)
    except IdentityError:
        if proof is not None:  # a replayed request is refused as such first
            devices.spend_proof(conn, proof, now)
        raise
    signed = proof.signed if proof is not None else None
    serial = x509.random_serial_number()
    fresh_request, fresh_nonce = aq.open_attestation_pg(
        pg, (signed.device_id, signed.nonce, now + dt.timedelta(seconds=2 * proof.window))
        if signed is not None and proof is not None else None,
        (req.nonce.hex(), device.id, expires, now),
        (f"{serial:x}", device.id, "workload", now, now + ttl))
    if not fresh_request:
        raise AuthReplay("this signed request was already used")
    if not fresh_nonce:
        raise NonceUsed("the nonce was already used (replay)")
    return serial


def _document(policy: PolicyRecord | None) -> PolicyDocument:
    if policy is None:
        return document_of(None, None, None)
    return document_of(policy.id, policy.version, policy.document)


def _evidence_digest(req: AttestationRequest) -> str:
    return hashlib.sha256(encode(req)).hexdigest()


def enrolled(svc: Services, device: DeviceRecord) -> Enrolled:
    """What the appraisal needs of the device record."""
    previous = None
    if device.clock_reset_count is not None and device.clock_value is not None:
        previous = ClockState(clock=device.clock_value, reset_count=device.clock_reset_count,
                              restart_count=device.clock_restart_count or 0, safe=True)
    return Enrolled(
        ak=svc.ak(device.ak_public), previous_clock=previous, ima_state=device.ima_state,
        ak_qualified_name=(bytes.fromhex(device.ak_qualified_name)
                           if device.ak_qualified_name else None))


def _spend(svc: Services, conn: sa.Connection, device: DeviceRecord, nonce: bytes,
           now: dt.datetime) -> None:
    """Issued by this attestor, to this device, unexpired (the MACs), and unused."""
    expires = nonces.check(svc.challenge_key, nonce, device.id, now)
    if not aq.spend_nonce(conn, nonce.hex(), device.id, expires, now):
        raise NonceUsed("the nonce was already used (replay)")


def attest(svc: Services, device_id: str, req: AttestationRequest,
           proof: RequestProof | None = None) -> AttestationResult:
    """Appraise ``req`` and, on a pass, issue; ``proof`` as for :func:`challenge`."""
    now = svc.clock()
    device: DeviceRecord | None = None
    policy: PolicyRecord | None = None
    reserved: int | None = None
    with svc.engine.connect() as conn:
        try:
            with aq.each_statement_atomic(conn):  # PostgreSQL: two statements, no BEGIN
                device, policy, holds = _read(svc, conn, device_id, proof, now,
                                              attesting=True)
                if device.state != "active":
                    raise DeviceNotActive(device.state)
                document = _document(policy)
                ttl = _lifetime(svc, document)
                reserved = _open(svc, conn, device, req, proof, holds, now, ttl)
            verdict = appraise(req, enrolled(svc, device), document, req.nonce, now,
                               PARSED_LOGS.get)
        except DeviceUnknown:
            with conn.begin():
                audit.append(
                    conn, at=now, actor=_actor(device_id), action="attestation",
                    outcome="refused", device_id=device_id, reasons=[DeviceUnknown.code],
                )
            raise
        except IdentityError as exc:
            if device is None:  # refused before the device was read: the request itself
                raise
            _record_refusal(svc, conn, device, req, now, [exc.code], [], policy,
                            verdict=None, reserved=reserved,
                            proof=proof if reserved is None else None)
            raise
        checks = verdict.check_dicts()
        if not verdict.passed:
            _record_refusal(svc, conn, device, req, now, list(verdict.reasons), checks,
                            policy, verdict=verdict, reserved=reserved)
            raise VerificationFailed("attestation refused", verdict.checks, verdict.reasons)
        return _serve(svc, conn, device, policy, document, req, verdict, checks, now,
                      reserved, ttl, holds)


def _serve(svc: Services, conn: sa.Connection, device: DeviceRecord,
           policy: PolicyRecord | None, document: PolicyDocument, req: AttestationRequest,
           verdict: Verdict, checks: list[dict[str, Any]], now: dt.datetime, reserved: int,
           ttl: dt.timedelta, holds: bool | None) -> AttestationResult:
    """Release, sign and record a pass; the certificate leaves only once recorded."""
    device_id = device.id
    warnings = list(verdict.warnings)
    appraisal = ear.appraise(checks, warnings)
    try:
        released, issued, roots = _release_and_issue(svc, device, verdict, document,
                                                     appraisal.status, now, reserved, ttl)
    except ServiceError as exc:  # a backend failed: nothing issued or released
        _record_backend_failure(svc, conn, device_id, now, exc, reserved)
        raise
    version = policy.version if policy else None
    try:
        token = results.result_token(
            svc, device_id=device_id, result=verdict, appraisal=appraisal,
            certificate=issued.cert, policy=results.policy_id(device.device_class, version),
            event_log=req.event_log, now=now, nonce=req.ear_nonce)
        renewal = _record_pass(svc, conn, device, req, now, verdict, checks, policy,
                               issued, released, holds)
    except Exception:
        issuance.void(svc, issued.cert.serial_number, "not_recorded")
        raise
    svc.metrics.attestation("pass", [])
    if renewal:
        svc.metrics.renewals.inc()
    return AttestationResult(
        device_id=device_id, verdict="pass", checks=checks, warnings=warnings,
        policy=PolicyRef(device_class=device.device_class, version=version),
        certificate=issued.pem, chain=issued.chain_pem, ca=roots,
        serial=issued.serial, not_before=issued.cert.not_valid_before_utc,
        not_after=issued.cert.not_valid_after_utc, secrets=released.granted,
        ima=ImaProgress(accepted_entries=verdict.ima_state.entries,
                        reset_count=verdict.quote.clock.reset_count)
        if verdict.ima_state else None,
        ima_pending_entries=verdict.ima_pending, token=token,
    )


def _attestation_row(device_id: str, req: AttestationRequest, now: dt.datetime, verdict: str,
                     reasons: list[str], checks: list[dict[str, Any]], warnings: list[str],
                     policy: PolicyRecord | None, appraised: Verdict | None,
                     serial: str | None = None) -> dict[str, Any]:
    """The attestation record; PCR values and the event log only when the quote proved
    them."""
    proven = appraised is not None and appraised.quote_ok
    return {
        "device_id": device_id, "at": now, "verdict": verdict, "reasons": reasons,
        "checks": checks, "warnings": warnings,
        "policy_id": policy.id if policy else None,
        "policy_version": policy.version if policy else None,
        "quote_verified": proven,
        "pcr_values": format_pcr_values(appraised.pcr_values)
        if proven and appraised is not None else {},
        "evidence_sha256": _evidence_digest(req), "certificate_serial": serial,
        "event_log": req.event_log if proven else None,
    }


def _record_pass(
    svc: Services, conn: sa.Connection, device: DeviceRecord, req: AttestationRequest,
    now: dt.datetime, verdict: Verdict, checks: list[dict[str, Any]],
    policy: PolicyRecord | None, issued: IssuedCertificate, released: Released,
    holds: bool | None,
) -> bool:
    """Record the pass, its certificate and audit entry at once; True for a renewal (on
    PostgreSQL, ``holds`` as read with the device; elsewhere read here)."""
    device_id = device.id
    record = verdict.recorded()
    entry = audit.prepare(
        at=now, actor=_actor(device_id), action="attestation", outcome="success",
        device_id=device_id, details={
            "certificate_serial": issued.serial,
            "policy_version": policy.version if policy else None,
            "secrets": released.audit,
            **({"withheld_secrets": released.withheld} if released.withheld else {}),
            "warnings": list(verdict.warnings),
        })
    row = _attestation_row(device_id, req, now, "pass", [], checks, list(verdict.warnings),
                           policy, verdict, serial=issued.serial)
    with conn.begin():
        pg = aq.driver(conn)
        _announce_verdict(svc, conn, device, "pass", [], now)
        if pg is not None and holds is not None:
            cert = issued.cert
            confirmed, head = aq.record_pass_pg(
                pg, device_id, now, (record.clock_reset_count, record.clock_restart_count,
                                     record.clock_value), record.ima_state, row,
                (issued.serial, issued.pem, cert.not_valid_before_utc,
                 cert.not_valid_after_utc))
            if confirmed != 1:
                raise ServiceError(f"certificate {issued.serial} was not reserved")
            audit.write(conn, entry, head)
            return holds
        renewal = aq.holds_certificate(conn, device_id)
        aq.record_passed(conn, device_id, now, record.clock_reset_count,
                         record.clock_restart_count, record.clock_value, record.ima_state)
        aq.add_attestation(conn, **row)
        issuance.confirm(conn, issued)
        audit.write(conn, entry)
    return renewal


def _announce_verdict(svc: Services, conn: sa.Connection, device: DeviceRecord,
                      verdict: str, reasons: list[str], now: dt.datetime) -> None:
    """A webhook when the device's verdict differs from its last one."""
    if device.last_verdict != verdict:
        webhooks.enqueue(conn, svc.settings, "verdict.changed", {
            "device_id": device.id, "verdict": verdict, "previous_verdict": device.last_verdict,
            "reasons": reasons}, now)


def _lifetime(svc: Services, document: PolicyDocument) -> dt.timedelta:
    return dt.timedelta(seconds=min(
        document.cert_ttl_seconds or svc.settings.issuance.cert_ttl_seconds,
        svc.settings.issuance.max_cert_ttl_seconds))


def _release_and_issue(svc: Services, device: DeviceRecord, result: Verdict,
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


def _record_backend_failure(svc: Services, conn: sa.Connection, device_id: str,
                            now: dt.datetime, exc: ServiceError, reserved: int) -> None:
    """Audit an attestation that passed but could not be served (the device's verdict
    and credentials stay as they were: it is not the device's fault)."""
    svc.metrics.attestation("error", [exc.code])
    with conn.begin():
        issuance.discard(conn, reserved)  # unless signing failed: then it is void
        audit.append(conn, at=now, actor=_actor(device_id), action="attestation",
                     outcome="error", device_id=device_id, reasons=[exc.code])


def _record_refusal(
    svc: Services, conn: sa.Connection, device: DeviceRecord, req: AttestationRequest,
    now: dt.datetime, reasons: list[str], checks: list[dict[str, Any]],
    policy: PolicyRecord | None, verdict: Verdict | None, reserved: int | None = None,
    proof: RequestProof | None = None,
) -> None:
    """Record a refusal: the device's last verdict, the attestation record (with the PCR
    values and event log only if the quote proved them), the audit entry; and, when the
    transaction that would have spent it rolled back, the request's nonce."""
    svc.metrics.attestation("fail", reasons)
    with conn.begin():
        if proof is not None:  # a replay of it finds it spent (its race is refused anyway)
            queries.spend_request_nonce(conn, proof.signed.device_id, proof.signed.nonce,
                                        now + dt.timedelta(seconds=2 * proof.window))
        if reserved is not None:
            issuance.discard(conn, reserved)
        _announce_verdict(svc, conn, device, "fail", reasons, now)
        aq.record_refused(conn, device.id, now, reasons)
        aq.add_attestation(conn, **_attestation_row(
            device.id, req, now, "fail", reasons, checks, [], policy, verdict))
        audit.append(
            conn, at=now, actor=_actor(device.id), action="attestation",
            outcome="refused", device_id=device.id, reasons=reasons,
        )
