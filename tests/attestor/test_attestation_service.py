"""The attestation service with no HTTP server: the functions the routes call, on SQLite
and PostgreSQL, with a simulated device (agent/sim/fleet.py) enrolled through the
enrollment service. The challenge writes nothing; its nonce's single use is enforced when
the attestation spends it, and forged, misdirected, late and replayed nonces are refused
with their reason codes, each refusal recorded and audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from sqlmodel import select

from agent.sim.fleet import SimDevice
from attestor.auth import Principal
from attestor.auth.devices import RequestProof
from attestor.db import attestation_queries as aq
from attestor.db import queries
from attestor.db.attestation_queries import DeviceRecord
from attestor.db.models import Attestation, AuditEvent, Certificate, Device, Nonce
from attestor.models.operator import PreregistrationIn
from attestor.services import attestation, enrollment, preregistration
from attestor.services.context import Services, build_services
from attestor.services.policies import LearnSources, learn_policy
from attestor.settings import load_settings
from attestor.setup import initialise
from identity import challenge
from identity.errors import AuthInvalid, AuthReplay, IdentityError, VerificationFailed
from identity.messages import ActivationRequest, AttestationRequest, encode
from identity.pcr import format_pcr_values, parse_pcr_values
from identity.requestsig import SignedRequest, parse_headers
from tests.harness import MutableClock

ADMIN = Principal("token", "test-admin", role="admin")


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[Services]:
    clock = MutableClock()
    settings = load_settings(tmp_path / "data", dev=True, database_url=db_url)
    initialise(settings, clock())
    services = build_services(settings, clock=clock)
    try:
        yield services
    finally:
        services.engine.dispose()


def _enroll(svc: Services, serial: str = "SIM-1") -> SimDevice:
    device = SimDevice(serial)
    prereg = device.preregistration()
    preregistration.create(svc, [PreregistrationIn(**prereg)], ADMIN)
    started = enrollment.start(svc, device.enrollment(), None)
    secret = device.activate(started.credential_blob, started.encrypted_secret)
    device.device_id = enrollment.complete(svc, started.enrollment_id,
                                           ActivationRequest(secret=secret)).device_id
    return device


@pytest.fixture
def device(svc: Services) -> SimDevice:
    """An enrolled device and the policy learned from its first (refused) attestation."""
    device = _enroll(svc)
    with pytest.raises(VerificationFailed) as first:
        _cycle(svc, device)
    assert first.value.reasons == ["policy.no_reference"]
    with svc.session() as session, session.begin():
        learn_policy(session, None, LearnSources(device_id=device.device_id), "test", svc.clock())
    return device


def _cycle(svc: Services, device: SimDevice) -> AttestationRequest:
    request = device.evidence(attestation.challenge(svc, str(device.device_id)))
    attestation.attest(svc, str(device.device_id), request)
    return request


def _refusal(svc: Services, device: SimDevice, request: AttestationRequest) -> list[str]:
    with pytest.raises(IdentityError) as refused:
        attestation.attest(svc, str(device.device_id), request)
    error = refused.value
    return list(error.reasons) if isinstance(error, VerificationFailed) else [error.code]


def _rows(svc: Services, table: type, device_id: str) -> int:
    with svc.session() as session:
        return len(session.exec(select(table).where(
            table.device_id == device_id)).all())  # type: ignore[attr-defined]


def _audited(svc: Services, device_id: str) -> list[tuple[str, list[str]]]:
    with svc.session() as session:
        events = session.exec(select(AuditEvent).where(
            AuditEvent.device_id == device_id, AuditEvent.action == "attestation")
            .order_by(AuditEvent.seq)).all()
        return [(e.outcome, list(e.reasons)) for e in events]


def test_a_challenge_writes_nothing_and_a_pass_spends_its_nonce(svc: Services,
                                                                device: SimDevice) -> None:
    device_id = str(device.device_id)
    nonces_before = _rows(svc, Nonce, device_id)
    answer = attestation.challenge(svc, device_id)
    assert _rows(svc, Nonce, device_id) == nonces_before  # no write to issue it
    assert challenge.check(svc.challenge_key, answer.nonce, device_id, svc.clock()) \
        == answer.expires_at
    request = device.evidence(answer)
    result = attestation.attest(svc, device_id, request)
    assert result.verdict == "pass" and result.certificate
    assert _rows(svc, Nonce, device_id) == nonces_before + 1
    with svc.session() as session:
        issued = session.exec(select(Certificate).where(
            Certificate.serial == result.serial)).one()
        assert issued.status == "issued"
    assert _audited(svc, device_id)[-1] == ("success", [])
    with svc.session() as session:  # what the cycle's statements stored reads back whole
        row = session.exec(select(Attestation).order_by(sa.desc(Attestation.id))).first()
        assert row is not None and row.verdict == "pass" and row.quote_verified
        assert row.checks == result.checks and row.certificate_serial == result.serial
        assert row.pcr_values == format_pcr_values(parse_pcr_values(request.pcrs))
        record = session.get(Device, device_id)
        assert record is not None and record.last_verdict == "pass"
        assert record.last_reasons == "" and record.clock_reset_count == \
            device.ak.clock.reset_count


def test_the_driver_statement_reads_the_record_in_its_order() -> None:
    columns = aq._PG_DEVICE_AND_POLICY.split(" FROM ")[0].removeprefix("SELECT ").split(", ")
    assert [c.removeprefix("d.") for c in columns] == [*DeviceRecord.__slots__, "p.id",
                                                       "p.version", "p.document"]


def test_a_replayed_nonce_is_refused(svc: Services, device: SimDevice) -> None:
    request = _cycle(svc, device)
    assert _refusal(svc, device, request) == ["nonce.used"]
    assert _audited(svc, str(device.device_id))[-1] == ("refused", ["nonce.used"])


def test_a_nonce_issued_to_another_device_is_refused(svc: Services,
                                                     device: SimDevice) -> None:
    other = _enroll(svc, "SIM-2")
    theirs = attestation.challenge(svc, str(other.device_id))
    request = device.evidence(theirs)  # quoted genuinely, over the other device's nonce
    assert _refusal(svc, device, request) == ["nonce.wrong_device"]
    # and it is not spent: the device it was issued to may still use it
    assert _rows(svc, Nonce, str(device.device_id)) == 1  # the first cycle's only


def test_an_expired_nonce_is_refused(svc: Services, device: SimDevice) -> None:
    request = device.evidence(attestation.challenge(svc, str(device.device_id)))
    clock = svc.clock
    assert isinstance(clock, MutableClock)
    clock.offset += dt.timedelta(seconds=svc.settings.nonce_ttl_seconds + 1)
    assert _refusal(svc, device, request) == ["nonce.expired"]


def test_a_forged_nonce_is_refused(svc: Services, device: SimDevice) -> None:
    """A device that makes up its own nonce (a quote made in advance, say) with a later
    expiry: the MAC does not verify, the evidence is never appraised."""
    answer = attestation.challenge(svc, str(device.device_id))
    forged = bytearray(answer.nonce)
    forged[8:12] = (int(answer.expires_at.timestamp()) + 86_400).to_bytes(4, "big")
    request = device.evidence(msgspec.structs.replace(answer, nonce=bytes(forged)))
    assert _refusal(svc, device, request) == ["nonce.unknown"]
    with svc.session() as session:
        last = session.exec(select(Attestation).order_by(sa.desc(Attestation.id))).first()
        assert last is not None and last.reasons == ["nonce.unknown"]
        assert not last.quote_verified


def test_refused_evidence_spends_the_nonce_and_records_every_check(
        svc: Services, device: SimDevice) -> None:
    answer = attestation.challenge(svc, str(device.device_id))
    request = device.evidence(answer)
    pcrs = {bank: dict(values) for bank, values in request.pcrs.items()}
    pcrs["sha256"]["0"] = "00" * 32
    tampered = msgspec.structs.replace(request, pcrs=pcrs)
    assert "quote.pcr_digest_mismatch" in _refusal(svc, device, tampered)
    # the genuine evidence for that nonce now finds it spent
    assert _refusal(svc, device, request) == ["nonce.used"]
    with svc.session() as session:
        pending = session.exec(select(Certificate).where(
            Certificate.status == "pending")).all()
        assert pending == []  # each refusal discarded its reservation


def _proof(svc: Services, device: SimDevice, path: str, body: bytes = b"",
           signer_of: SimDevice | None = None) -> RequestProof:
    headers = (signer_of or device).signer().headers("POST", path, body,
                                                     svc.clock().timestamp())
    signed = parse_headers(headers)
    assert signed is not None
    if signer_of is not None:  # another device's key, claiming this device
        signed = SignedRequest(str(device.device_id), signed.timestamp, signed.nonce,
                               signed.signature)
    return RequestProof(signed, "POST", path, body, svc.settings.auth.request_window_seconds)


def test_signed_requests_are_checked_in_the_services_transaction(
        svc: Services, device: SimDevice) -> None:
    """The route hands the device's signed request to the service, which checks it on
    the device row it reads: a replay, another key, an unknown device are refused
    before anything is recorded; a refused attestation still spends its request."""
    device_id = str(device.device_id)
    path = f"/v1/devices/{device_id}/challenge"
    proof = _proof(svc, device, path)
    answer = attestation.challenge(svc, device_id, proof)
    with pytest.raises(AuthReplay):
        attestation.challenge(svc, device_id, proof)
    impostor = SimDevice("SIM-IMPOSTOR", device_id="not-enrolled")
    with pytest.raises(AuthInvalid):
        attestation.challenge(svc, device_id, _proof(svc, device, path, signer_of=impostor))
    with pytest.raises(AuthInvalid):
        attestation.challenge(svc, "not-enrolled", _proof(svc, impostor, path))

    records = _rows(svc, Attestation, device_id)
    request = device.evidence(answer)
    body = encode(request)
    attest_path = f"/v1/devices/{device_id}/attestations"
    with pytest.raises(AuthInvalid):  # a body other than the one signed
        attestation.attest(svc, device_id, request, dataclasses.replace(
            _proof(svc, device, attest_path, body), body=body + b" "))
    assert _rows(svc, Attestation, device_id) == records  # nothing recorded
    forged = msgspec.structs.replace(request, nonce=bytes(32))
    proof = _proof(svc, device, attest_path, encode(forged))
    assert _refusal_with(svc, device, forged, proof) == ["nonce.unknown"]
    with pytest.raises(AuthReplay):  # its transaction rolled back; the refusal spent it
        attestation.attest(svc, device_id, forged, proof)
    passing = _proof(svc, device, attest_path, body)
    result = attestation.attest(svc, device_id, request, passing)
    assert result.verdict == "pass"
    # The same signed request again is a replayed request before it is a replayed nonce
    # (on PostgreSQL both are spent in one statement); a fresh request, the spent nonce.
    with pytest.raises(AuthReplay):
        attestation.attest(svc, device_id, request, passing)
    again = _proof(svc, device, attest_path, body)
    assert _refusal_with(svc, device, request, again) == ["nonce.used"]
    with pytest.raises(AuthReplay):
        attestation.attest(svc, device_id, request, again)
    with svc.session() as session:  # no refusal left a serial reserved
        assert session.exec(select(Certificate).where(
            Certificate.device_id == device_id, Certificate.status == "pending")).all() == []
    # A replayed request does not spend the fresh challenge nonce it carries.
    fresh = device.evidence(attestation.challenge(svc, device_id))
    replayed = _proof(svc, device, attest_path, encode(fresh))
    with svc.engine.begin() as conn:  # its request nonce is spent already
        queries.spend_request_nonce(conn, device_id, replayed.signed.nonce,
                                    svc.clock() + dt.timedelta(minutes=5))
    with pytest.raises(AuthReplay):
        attestation.attest(svc, device_id, fresh, replayed)
    assert attestation.attest(svc, device_id, fresh, _proof(
        svc, device, attest_path, encode(fresh))).verdict == "pass"


def _refusal_with(svc: Services, device: SimDevice, request: AttestationRequest,
                  proof: RequestProof) -> list[str]:
    with pytest.raises(IdentityError) as refused:
        attestation.attest(svc, str(device.device_id), request, proof)
    return [refused.value.code]
