"""First boot with no station and no API key (docs/onboarding.md): the device proves
with the OEM's IAK and IDevID that it is a device the owner bought; the attestor then
issues the LDevID certificate from its own CA and records the device with its new local
keys (LAK as the attestation key, LDevID as the device identity key), after which the
device attests as any other."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from sqlmodel import Session

from attestor import audit
from attestor.db import ownership_queries as q
from attestor.db import queries
from attestor.db.models import Device
from attestor.db.ownership_models import OnboardingChallenge as ChallengeRow
from attestor.db.ownership_models import Ownership
from attestor.services import issuance
from attestor.services.context import Services
from attestor.services.ownership import trusted_certificates
from identity.checks import CheckRunner
from identity.devid.evidence import (
    OnboardingEvidence,
    fingerprint,
    presented_chain,
    verify_onboarding,
)
from identity.devid.manifest import certificate_sha256
from identity.devid.messages import (
    OnboardedDevice,
    OnboardingChallenge,
    OnboardingChallengeRequest,
    OnboardingRequest,
)
from identity.devid.profile import DevIdCertificate, check_devid_certificate
from identity.errors import (
    AlreadyOnboarded,
    DeviceNotActive,
    EvidenceError,
    IdentityError,
    ManufacturerUnbound,
    OnboardingDeviceConflict,
    OwnershipRevoked,
    SerialNotOwned,
    VerificationFailed,
    WrongManufacturer,
)
from identity.protocol import device_id_for
from identity.tpm.quote import owner_child_qualified_name
from identity.tpm.structures import object_name, parse_public
from identity.x509.names import check_certificate_fields

# Before onboarding completes nobody is authenticated (docs/audit.md: principals).
ACTOR = "anonymous"


def _owned(row: Ownership | None, serial: str, idevid_sha256: str,
           certificates: Sequence[DevIdCertificate]) -> Ownership:
    """The ownership record lets this IDevID onboard now, with ``certificates`` (the
    IDevID's, and the IAK's once presented) chained to the record's root; or the typed
    refusal."""
    if row is None:
        raise SerialNotOwned(f"serial {serial!r} is not owned here")
    if row.state == q.REVOKED:
        raise OwnershipRevoked(f"the owner revoked serial {serial!r}")
    if row.state == q.ONBOARDED:
        raise AlreadyOnboarded(f"serial {serial!r} has onboarded already; the owner must "
                               "release it first")
    if row.idevid_sha256 is not None and row.idevid_sha256 != idevid_sha256:
        raise SerialNotOwned(f"serial {serial!r} is owned with another IDevID certificate")
    if row.root_sha256 is None:
        raise ManufacturerUnbound(f"serial {serial!r} was owned before records named their "
                                  "manufacturer root: the owner must import it again "
                                  "(import-csv --root, or its manifest)")
    for cert in certificates:
        ends_at = certificate_sha256(cert.chain[-1])
        if ends_at != row.root_sha256:
            raise WrongManufacturer(
                f"serial {serial!r} is owned for manufacturer root {row.root_sha256}; this "
                f"device's certificates chain to {ends_at}")
    return row


def _refuse(svc: Services, action: str, now: dt.datetime, reasons: list[str],
            details: dict[str, object]) -> None:
    svc.metrics.onboarding(action.removeprefix("onboarding."), reasons)
    with svc.session() as session, session.begin():
        audit.append(session, at=now, actor=ACTOR, action=action, outcome="refused",
                     reasons=reasons, details=details)


def challenge(svc: Services, req: OnboardingChallengeRequest) -> OnboardingChallenge:
    """Step 1: an IDevID that chains to an imported root and names an owned serial gets
    a single-use nonce."""
    now = svc.clock()
    digest = fingerprint(req.idevid_certificate)
    try:
        with svc.session() as session:
            roots, inter = trusted_certificates(session)
        idevid = check_devid_certificate(req.idevid_certificate, "idevid", roots,
                                         presented_chain(inter, req.chain), now)
        with svc.session() as session:
            _owned(q.find(session, idevid.serial), idevid.serial, digest, [idevid])
    except EvidenceError as exc:
        _refuse(svc, "onboarding.challenge", now, [exc.code], {"idevid_sha256": digest})
        raise
    row = ChallengeRow(id=secrets.token_urlsafe(18), nonce=secrets.token_bytes(32),
                       serial=idevid.serial, idevid_sha256=digest, created_at=now,
                       expires_at=now + dt.timedelta(
                           seconds=svc.settings.activation_ttl_seconds))
    with svc.session() as session, session.begin():
        q.add_challenge(session, row)
        audit.append(session, at=now, actor=ACTOR, action="onboarding.challenge",
                     outcome="success", subject=idevid.serial,
                     details={"challenge_id": row.id, "idevid_sha256": digest})
    svc.metrics.onboarding("challenge")
    return OnboardingChallenge(challenge_id=row.id, nonce=row.nonce, expires_at=row.expires_at)


def _verify(svc: Services, req: OnboardingRequest, now: dt.datetime
            ) -> tuple[OnboardingEvidence, Ownership, str, str | None]:
    with svc.session() as session, session.begin():
        spent = q.spend_challenge(session, req.challenge_id, now)  # replay: refused here
    with svc.session() as session:
        roots, inter = trusted_certificates(session)
    runner = CheckRunner()
    evidence = verify_onboarding(runner, req, spent.nonce, roots, inter, now)
    if evidence is None:
        raise VerificationFailed("onboarding refused", runner.checks, runner.reason_codes)
    if evidence.idevid_fingerprint != spent.idevid_sha256:
        raise SerialNotOwned("the IDevID certificate is not the one the challenge was "
                             "issued to")
    device_id = device_id_for(evidence.ek_public)
    check_certificate_fields(device_id=device_id, serial=evidence.serial)
    qualified = None
    if req.srk_public is not None:
        srk_name = object_name(parse_public(req.srk_public))
        qualified = owner_child_qualified_name(srk_name, evidence.lak.name).hex()
    with svc.session() as session:
        owned = _owned(q.find(session, evidence.serial), evidence.serial,
                       evidence.idevid_fingerprint, [evidence.iak, evidence.idevid])
        existing = queries.find_device(session, device_id)
        if existing is not None and existing.state != "active":
            raise DeviceNotActive(existing.state)
        # The device id derives from the EK, which only the OEM's IAK certificate vouches
        # for here: an OEM naming another device's (public) EK must not take it over.
        if existing is not None and existing.serial != evidence.serial:
            raise OnboardingDeviceConflict(
                f"the EK is enrolled device {device_id}'s, serial {existing.serial!r}, not "
                f"{evidence.serial!r}")
    return evidence, owned, device_id, qualified


def onboard(svc: Services, req: OnboardingRequest) -> OnboardedDevice:
    """Step 2: every check of :func:`identity.devid.evidence.verify_onboarding`, the
    ownership record again, then the LDevID certificate and the device record."""
    now = svc.clock()
    bundle = svc.ca_bundle()
    try:
        evidence, owned, device_id, qualified = _verify(svc, req, now)
    except IdentityError as exc:
        reasons = exc.reasons if isinstance(exc, VerificationFailed) else [exc.code]
        _refuse(svc, "onboarding.complete", now, reasons or [exc.code],
                {"challenge_id": req.challenge_id,
                 "idevid_sha256": fingerprint(req.idevid_certificate)})
        raise
    lifetime = dt.timedelta(days=svc.settings.ca.device_identity_days)
    cert_serial = issuance.reserve(svc, device_id, "identity", now, lifetime)
    issued = issuance.sign(svc, cert_serial, "identity", lambda: (
        svc.ca.issue_device_identity(evidence.ldevid.key, device_id=device_id,
                                     serial=evidence.serial, now=now,
                                     cert_serial=cert_serial)))
    try:
        with svc.session() as session, session.begin():
            _record(session, req, evidence, owned, device_id, qualified, issued.serial, now)
            issuance.confirm(session, issued)
            audit.append(session, at=now, actor=f"device:{device_id}", action="onboarding.complete",
                         outcome="success", device_id=device_id, subject=evidence.serial,
                         details={"certificate_serial": issued.serial,
                                  "idevid_sha256": evidence.idevid_fingerprint,
                                  "device_class": owned.device_class})
    except Exception:
        issuance.void(svc, cert_serial, "not_recorded")
        raise
    svc.metrics.onboarding("complete")
    return OnboardedDevice(device_id=device_id, serial=evidence.serial,
                           device_class=owned.device_class, certificate=issued.pem,
                           chain=issued.chain_pem, ca=bundle)


def _record(session: Session, req: OnboardingRequest, evidence: OnboardingEvidence,
            owned: Ownership, device_id: str, qualified: str | None, cert_serial: str,
            now: dt.datetime) -> None:
    # The state is checked again under this transaction: two concurrent onboardings of
    # one serial with two challenges: the second finds it onboarded.
    _owned(q.find(session, evidence.serial, for_update=True), evidence.serial,
           evidence.idevid_fingerprint, [evidence.iak, evidence.idevid])
    device = queries.find_device(session, device_id)
    if device is None:
        device = Device(id=device_id, ek_public=evidence.ek_public, ak_public=req.lak_public,
                        ak_name=evidence.lak.name.hex(), devid_public=req.ldevid_public,
                        enrolled_at=now)
    device.serial = evidence.serial
    device.device_class = owned.device_class
    device.ek_public = evidence.ek_public
    device.ak_public = req.lak_public
    device.ak_name = evidence.lak.name.hex()
    device.ak_qualified_name = qualified
    device.devid_public = req.ldevid_public
    device.devid_cert_serial = cert_serial
    device.enrolled_at = now
    device.clock_reset_count = device.clock_restart_count = device.clock_value = None
    session.add(device)
    q.set_state(session, evidence.serial, q.ONBOARDED, now, device_id=device_id)
