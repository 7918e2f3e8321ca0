"""Factory enrollment: EK chain, AK checks, DevID certify, credential activation.

Step one checks everything that can be checked from the request and answers
with a MakeCredential challenge; step two proves that the AK and the EK live
in the same TPM and issues the long-lived device identity certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from cryptography.hazmat.primitives import serialization
from sqlmodel import Session

from attestor import audit
from attestor.auth import Principal
from attestor.backends.issuer import IssuedCertificate
from attestor.db import queries
from attestor.db.models import Device, Enrollment
from attestor.services import issuance
from attestor.services.context import Services
from identity.checks import CheckRunner
from identity.ekcert import check_ek_matches, verify_ek_certificate
from identity.errors import (
    ActivationMismatch,
    AuthForbidden,
    AuthMissing,
    DeviceFieldInvalid,
    DeviceNotActive,
    EkChainUntrusted,
    EvidenceError,
    VerificationFailed,
)
from identity.messages import (
    ActivationRequest,
    EnrolledDevice,
    EnrollmentChallenge,
    EnrollmentRequest,
)
from identity.protocol import device_id_for, enrollment_binding
from identity.tpm.ak import TpmKey, record_attestation_key
from identity.tpm.certify import verify_certify
from identity.tpm.credential import (
    SECRET_SIZE,
    check_activation,
    check_ek_public,
    make_activation,
    secret_digest,
)
from identity.tpm.keys import public_key
from identity.tpm.quote import owner_child_qualified_name
from identity.tpm.structures import object_name, parse_public
from identity.x509.names import check_certificate_fields


def _actor(caller: Principal | None) -> str:
    """A station's key, or nobody: a pre-registered TPM enrolls without a credential."""
    return caller.actor if caller is not None else "anonymous"


def fingerprints(ek_public: bytes, ak_public: bytes, devid_public: bytes) -> dict[str, str]:
    """A device's keys as an investigation names them: the EK's SubjectPublicKeyInfo
    SHA-256 (as pre-registration does), the AK's and the DevID key's TPM Names."""
    return {"ek_sha256": ek_key_digest(ek_public),
            "ak_name": object_name(parse_public(ak_public)).hex(),
            "devid_name": object_name(parse_public(devid_public)).hex()}


def ek_key_digest(ek_public: bytes) -> str:
    """How a pre-registration names an EK: SHA-256 of its SubjectPublicKeyInfo."""
    key = public_key(parse_public(ek_public))
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def start(svc: Services, req: EnrollmentRequest, caller: Principal | None) -> EnrollmentChallenge:
    """Step one. A station with the enroller role may enroll any TPM whose EK chains to
    a trusted vendor; without a credential, only a TPM the manufacturer pre-registered."""
    now = svc.clock()
    runner = CheckRunner()
    ek = check_ek_public(req.ek_public)  # malformed EK: nothing else is meaningful
    device_id = device_id_for(req.ek_public)
    with svc.session() as session:
        prereg = queries.preregistration_for(session, ek_key_digest(req.ek_public))
    station = caller is not None and caller.role in ("admin", "enroller")
    if prereg is None and not station:
        if caller is None:
            raise AuthMissing("enrollment needs an enroller credential, or a pre-registered EK")
        raise AuthForbidden("only the enroller role may enroll devices that were not "
                            "pre-registered")
    serial = prereg.serial if prereg else req.serial
    model = prereg.model if prereg and prereg.model else req.model
    device_class = prereg.device_class if prereg else req.device_class
    # What goes into the certificate is checked now, not when the challenge is answered.
    check_certificate_fields(device_id=device_id, serial=serial,
                             where="the pre-registration" if prereg else "")

    def ek_chain() -> None:
        if req.ek_certificate is None:
            if prereg is not None:
                return  # the manufacturer vouched for this EK key
            raise EkChainUntrusted(
                "no EK certificate: EK public keys alone are accepted only when pre-registered"
            )
        info = verify_ek_certificate(
            req.ek_certificate, svc.trust, now, req.ek_chain,
            require_san=svc.settings.ek_require_san,
        )
        check_ek_matches(info, public_key(ek))

    runner.run("ek.certificate", ek_chain)
    ak: TpmKey | None = record_attestation_key(runner, req.ak_public)
    qualified: str | None = None
    if ak is not None:
        verify_certify(
            runner, ak, req.devid_certify.attest, req.devid_certify.signature, req.devid_public,
            qualifying_data=enrollment_binding(req.ek_public, ak.name), what="devid.certify",
        )
        if req.srk_public is not None:
            srk_name = object_name(parse_public(req.srk_public))
            qualified = owner_child_qualified_name(srk_name, ak.name).hex()
    else:
        runner.skip("devid.certify", "the AK was rejected")

    with svc.session() as session, session.begin():
        existing = queries.find_device(session, device_id)
        if existing is not None and existing.state != "active":
            runner.fail("device.state", DeviceNotActive(existing.state))
        if not runner.passed or ak is None:
            audit.append(
                session, at=now, actor=_actor(caller), action="enrollment.start",
                outcome="refused", device_id=device_id, reasons=runner.reason_codes,
            )
            session.commit()
            raise VerificationFailed("enrollment refused", runner.checks, runner.reason_codes)
        secret = secrets.token_bytes(SECRET_SIZE)
        challenge = make_activation(req.ek_public, ak.name, secret)
        enrollment = Enrollment(
            id=secrets.token_urlsafe(18),
            device_id=device_id,
            serial=serial,
            model=model,
            device_class=device_class,
            ek_public=req.ek_public,
            ek_certificate=req.ek_certificate,
            ak_public=req.ak_public,
            ak_qualified_name=qualified,
            devid_public=req.devid_public,
            secret_digest=secret_digest(secret),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=svc.settings.activation_ttl_seconds),
        )
        del secret
        queries.add_enrollment(session, enrollment)
        audit.append(
            session, at=now, actor=_actor(caller), action="enrollment.start",
            outcome="success", device_id=device_id,
            details={"enrollment_id": enrollment.id, "serial": req.serial,
                     "reenrollment": existing is not None},
        )
    return EnrollmentChallenge(
        enrollment_id=enrollment.id,
        device_id=device_id,
        credential_blob=challenge.credential_blob,
        encrypted_secret=challenge.encrypted_secret,
        expires_at=enrollment.expires_at,
    )


def complete(svc: Services, enrollment_id: str, req: ActivationRequest) -> EnrolledDevice:
    """Step two. Everything that can fail for a reason known before the answer is
    checked first, spending nothing; a wrong answer burns the challenge; a right one is
    spent in the transaction that records the device and its certificate, so a failure
    on our side leaves it for the device to answer again."""
    now = svc.clock()
    bundle = svc.ca_bundle()  # first: with Vault down this fails before anything is spent
    claimed: str | None = None  # the device the enrollment is for, once known
    with svc.session() as session:
        try:
            with session.begin():
                row = _answerable(session, enrollment_id, now)
            claimed = row.device_id
            devid = public_key(parse_public(row.devid_public))
            _check_answer(session, row, req.secret, now)
        except (EvidenceError, DeviceFieldInvalid) as exc:
            with session.begin():
                audit.append(
                    session, at=now, actor="anonymous", action="enrollment.activate",
                    outcome="refused", device_id=claimed, reasons=[exc.code],
                    details={"enrollment_id": enrollment_id},
                )
            raise
        lifetime = dt.timedelta(days=svc.settings.ca.device_identity_days)
        cert_serial = issuance.reserve(svc, row.device_id, "identity", now, lifetime)
        issued = issuance.sign(svc, cert_serial, "identity", lambda: (
            svc.ca.issue_device_identity(devid, device_id=row.device_id, serial=row.serial,
                                             now=now, cert_serial=cert_serial)))
        try:
            _record_enrollment(session, row, issued, now)
        except Exception:
            issuance.void(svc, cert_serial, "not_recorded")
            raise
        svc.metrics.enrollments.labels(step="activate", outcome="enrolled").inc()
        return EnrolledDevice(
            device_id=row.device_id, certificate=issued.pem, chain=issued.chain_pem,
            ca=bundle,
        )


def _answerable(session: Session, enrollment_id: str, now: dt.datetime) -> Enrollment:
    """The pending enrollment, if nothing known now would make its issuance fail: the
    fields for the certificate (a row from before they were checked at start) and the
    device's state (revoked or quarantined since the challenge)."""
    row = queries.pending_enrollment(session, enrollment_id, now)
    check_certificate_fields(device_id=row.device_id, serial=row.serial)
    existing = queries.find_device(session, row.device_id)
    if existing is not None and existing.state != "active":
        raise DeviceNotActive(existing.state)
    return row


def _check_answer(session: Session, row: Enrollment, secret: bytes, now: dt.datetime) -> None:
    """Compare the answer (constant time); a wrong one spends the challenge in its own
    transaction: the device, or whoever is guessing (against a 32-byte secret), starts
    over. A right answer is spent later, with the enrollment it records."""
    try:
        check_activation(row.secret_digest, secret)
    except ActivationMismatch:
        with session.begin():
            queries.consume_enrollment(session, row.id, now)  # raises if spent meanwhile
        raise


def _record_enrollment(session: Session, row: Enrollment, issued: IssuedCertificate,
                       now: dt.datetime) -> None:
    with session.begin():
        # Spent here, atomically: a concurrent answer that got here first wins
        # (activation.used), and any failure below rolls the spending back.
        queries.consume_enrollment(session, row.id, now)
        previous = _upsert_device(session, row, issued.serial, now)
        queries.mark_preregistration_enrolled(session, ek_key_digest(row.ek_public),
                                              row.device_id, now)
        issuance.confirm(session, issued)
        details: dict[str, object] = {"certificate_serial": issued.serial,
                                      "serial": row.serial, "enrollment_id": row.id}
        if previous is not None:  # the device's keys replaced: its own action
            current = fingerprints(row.ek_public, row.ak_public, row.devid_public)
            details.update(old_keys=previous, new_keys=current,
                           keys_changed=sorted(k for k in current
                                               if current[k] != previous.get(k)))
        # The device proved it holds the EK's and AK's TPM by answering the challenge.
        audit.append(
            session, at=now, actor=f"device:{row.device_id}",
            action="enrollment.activate" if previous is None else "device.reenrolled",
            outcome="success", device_id=row.device_id, details=details,
        )


def _upsert_device(session: Session, row: Enrollment, cert_serial: str,
                   now: dt.datetime) -> dict[str, str] | None:
    """Record the device; for a re-enrollment, the fingerprints of the keys replaced."""
    ak_name = object_name(parse_public(row.ak_public)).hex()
    device = queries.find_device(session, row.device_id)
    previous = None
    if device is not None:
        previous = fingerprints(device.ek_public, device.ak_public, device.devid_public)
    if device is None:
        device = Device(id=row.device_id, ek_public=row.ek_public, ak_public=row.ak_public,
                        ak_name=ak_name, devid_public=row.devid_public, enrolled_at=now)
    elif device.state != "active":
        raise DeviceNotActive(device.state)
    device.serial = row.serial
    device.model = row.model
    device.device_class = row.device_class
    device.ek_certificate = row.ek_certificate
    device.ak_public = row.ak_public
    device.ak_name = ak_name
    device.ak_qualified_name = row.ak_qualified_name
    device.devid_public = row.devid_public
    device.devid_cert_serial = cert_serial
    device.enrolled_at = now
    # A new AK starts a new clock history.
    device.clock_reset_count = device.clock_restart_count = device.clock_value = None
    session.add(device)
    return previous

