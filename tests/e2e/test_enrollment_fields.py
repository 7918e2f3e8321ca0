"""Serials with ``_``, ``@`` and non-ASCII letters enroll; values that cannot go into a
certificate are refused when accepted; an activation that fails on our side after the
answer was checked leaves the challenge for the device to answer again."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from sqlmodel import select

from agent.attest import attest_once
from agent.client import AttestorClient
from agent.enroll import DEVID_CERT, provision
from attestor.db import queries
from attestor.db.models import Certificate, Enrollment, Preregistration
from tests.harness import Device, LiveAttestor, enroll_and_learn, enrollment_body, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _serial_in(cert: x509.Certificate) -> x509.NameAttribute[str]:
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return attribute  # type: ignore[return-value]


def _enrollments(attestor: LiveAttestor) -> list[Enrollment]:
    with attestor.services.session() as session:
        return list(session.exec(select(Enrollment)).all())


def test_a_serial_printablestring_cannot_hold_enrolls_and_attests(
        attestor: LiveAttestor, device: Device) -> None:
    device.serial = "line_7@fab-Ü"
    config = enroll_and_learn(attestor, device)  # the agent checked its certificate
    assert config.device_id
    pem = (config.state_dir / DEVID_CERT).read_bytes()
    attribute = _serial_in(x509.load_pem_x509_certificates(pem)[0])
    assert (attribute.value, attribute._type) == ("line_7@fab-Ü", _ASN1Type.UTF8String)
    with attestor.client(config, device.tpm) as client:  # requests signed with the DevID
        result = attest_once(config, device.tpm, client, now())
    assert result.subject_uri.endswith(f"/device/{config.device_id}")
    record = httpx.get(f"{attestor.url}/v1/devices/{config.device_id}",
                       headers=attestor.headers("auditor")).json()
    assert record["serial"] == "line_7@fab-Ü"


def test_a_preregistered_non_ascii_serial_enrolls_alone(attestor: LiveAttestor,
                                                        device: Device) -> None:
    ek_cert = device.tpm.endorsement().certificate
    assert ek_cert
    created = httpx.post(f"{attestor.url}/v1/preregistrations", json={"devices": [
        {"serial": "Gerät-Ü_01@fab", "ek_certificate": _b64(ek_cert)}]},
        headers=attestor.headers("enroller"))
    assert created.status_code == 201, created.text
    with AttestorClient(attestor.url) as anonymous:
        enrolled = provision(device.config(attestor.url), device.tpm, anonymous, now())
    assert _serial_in(enrolled.certificate).value == "Gerät-Ü_01@fab"


@pytest.mark.parametrize(("serial", "why"), [
    ("LINE7-BATCH2026Q4-" + "0" * 47, "65 characters"),  # within the API's 128, not X.509's 64
    ("FAB\u200d001", "U+200D"),  # zero-width joiner: displays as FAB001, a \w character
])
def test_preregistration_refuses_serials_a_certificate_cannot_hold(
        attestor: LiveAttestor, device: Device, serial: str, why: str) -> None:
    ek_cert = device.tpm.endorsement().certificate
    assert ek_cert
    batch = {"devices": [{"serial": "FAB-OK-1", "ek_certificate": _b64(ek_cert)},
                         {"serial": serial, "ek_public_key": _b64(b"unused")}]}
    answer = httpx.post(f"{attestor.url}/v1/preregistrations", json=batch,
                        headers=attestor.headers("enroller"))
    problem = answer.json()
    assert answer.status_code == 400 and problem["code"] == "device.field_invalid", problem
    assert problem["detail"].startswith("device 2: serial ") and why in problem["detail"]
    csv = f"serial,ek_certificate\n{serial},{_b64(ek_cert)}\n"
    answer = httpx.post(f"{attestor.url}/v1/preregistrations/csv", content=csv.encode(),
                        headers={"Content-Type": "text/csv", **attestor.headers("enroller")})
    assert answer.status_code == 400 and answer.json()["code"] == "device.field_invalid"
    with attestor.services.session() as session:  # all or nothing: the good row neither
        assert not session.exec(select(Preregistration)).all()


def test_enrollment_start_refuses_a_bad_serial_before_any_challenge(
        attestor: LiveAttestor, device: Device) -> None:
    body = {**enrollment_body(device.tpm), "serial": "SN-" + "7" * 62}
    answer = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                        headers=attestor.enroller_headers)
    assert answer.status_code == 400 and answer.json()["code"] == "device.field_invalid"
    assert not _enrollments(attestor)


def test_enrollment_start_refuses_a_bad_preregistered_serial(
        attestor: LiveAttestor, device: Device) -> None:
    """A pre-registration stored before serials were checked: the device is told that the
    pre-registration is at fault, and no challenge is made."""
    from attestor.services.enrollment import ek_key_digest

    ek = device.tpm.endorsement()
    with attestor.services.session() as session, session.begin():
        session.add(Preregistration(ek_key_sha256=ek_key_digest(ek.public),
                                    serial="LINE7-BATCH2026Q4-" + "0" * 52,
                                    created_by="old import",
                                    created_at=attestor.clock()))
    answer = httpx.post(f"{attestor.url}/v1/enrollments", json=enrollment_body(device.tpm))
    problem = answer.json()
    assert answer.status_code == 400 and problem["code"] == "device.field_invalid"
    assert problem["detail"].startswith("the pre-registration: serial has 70 characters")
    assert not _enrollments(attestor)


@pytest.fixture()
def challenge(attestor: LiveAttestor, device: Device) -> Iterator[dict[str, Any]]:
    """A started enrollment and the right answer to it (from the device's TPM)."""
    body = {**enrollment_body(device.tpm), "serial": "line_7@fab-Ü"}
    started = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                         headers=attestor.enroller_headers)
    assert started.status_code == 201, started.text
    data = started.json()
    secret = device.tpm.activate_credential(base64.b64decode(data["credential_blob"]),
                                            base64.b64decode(data["encrypted_secret"]))
    yield {"url": f"{attestor.url}/v1/enrollments/{data['enrollment_id']}/activation",
           "answer": {"secret": _b64(secret)}, "device_id": data["device_id"]}


def _certificates(attestor: LiveAttestor) -> list[tuple[str, str]]:
    with attestor.services.session() as session:
        return sorted((c.kind, c.status) for c in session.exec(select(Certificate)).all())


def test_an_issuer_failure_leaves_the_challenge_unspent(
        attestor: LiveAttestor, challenge: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ca = attestor.services.ca
    real = ca.issue_device_identity

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("issuing CA key unreadable")

    monkeypatch.setattr(ca, "issue_device_identity", broken)
    failed = httpx.post(challenge["url"], json=challenge["answer"])
    assert failed.status_code == 500
    monkeypatch.setattr(ca, "issue_device_identity", real)
    retry = httpx.post(challenge["url"], json=challenge["answer"])
    assert retry.status_code == 200, retry.text
    assert retry.json()["device_id"] == challenge["device_id"]
    assert _certificates(attestor) == [("identity", "issued"), ("identity", "void")]
    again = httpx.post(challenge["url"], json=challenge["answer"])
    assert again.status_code == 403 and again.json()["code"] == "activation.used"


def test_a_failure_recording_the_enrollment_rolls_the_spending_back(
        attestor: LiveAttestor, challenge: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = queries.mark_preregistration_enrolled
    calls: list[int] = []

    def fail_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("lost the database in the middle of the transaction")
        real(*args, **kwargs)

    monkeypatch.setattr(queries, "mark_preregistration_enrolled", fail_once)
    failed = httpx.post(challenge["url"], json=challenge["answer"])
    assert failed.status_code == 500
    with attestor.services.session() as session:
        assert queries.find_device(session, challenge["device_id"]) is None
    retry = httpx.post(challenge["url"], json=challenge["answer"])
    assert retry.status_code == 200, retry.text
    assert _certificates(attestor) == [("identity", "issued"), ("identity", "void")]


def test_a_device_quarantined_meanwhile_is_refused_without_spending(
        attestor: LiveAttestor, device: Device) -> None:
    """Re-enrollment of an enrolled device that is quarantined between the challenge and
    the answer: refused with its state, and the challenge still answers once released."""
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    body = {**enrollment_body(device.tpm), "serial": "line_7@fab-Ü"}
    data = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                      headers=attestor.enroller_headers).json()
    secret = device.tpm.activate_credential(base64.b64decode(data["credential_blob"]),
                                            base64.b64decode(data["encrypted_secret"]))
    url = f"{attestor.url}/v1/enrollments/{data['enrollment_id']}/activation"
    devices = f"{attestor.url}/v1/devices/{config.device_id}"
    reason = {"reason": "suspected tampering at the line"}
    assert httpx.post(f"{devices}/quarantine", json=reason,
                      headers=attestor.headers("admin")).status_code == 200
    refused = httpx.post(url, json={"secret": _b64(secret)})
    assert refused.status_code == 403 and refused.json()["code"] == "device.not_active"
    assert refused.json()["device_state"] == "quarantined"
    assert httpx.post(f"{devices}/release", json=reason,
                      headers=attestor.headers("admin")).status_code == 200
    retry = httpx.post(url, json={"secret": _b64(secret)})
    assert retry.status_code == 200, retry.text


def test_activation_of_a_row_stored_with_a_bad_serial_spends_nothing(
        attestor: LiveAttestor, challenge: dict[str, Any]) -> None:
    """An enrollment started before serials were checked: refused with the reason, not a
    500 after the challenge was spent."""
    enrollment_id = challenge["url"].rsplit("/", 2)[-2]
    with attestor.services.session() as session, session.begin():
        row = session.get(Enrollment, enrollment_id)
        assert row is not None
        row.serial = "SN\u202e0001"
        session.add(row)
    refused = httpx.post(challenge["url"], json=challenge["answer"])
    assert refused.status_code == 400 and refused.json()["code"] == "device.field_invalid"
    assert _enrollments(attestor)[0].used_at is None
    assert _certificates(attestor) == []


def test_a_device_class_longer_than_the_database_holds_is_refused_as_input(
        attestor: LiveAttestor, device: Device) -> None:
    """65 characters passed the schema (128) and broke PostgreSQL's VARCHAR(64) column:
    refused by the schema now, wherever a class is accepted."""
    ek_cert = device.tpm.endorsement().certificate
    assert ek_cert
    long_class = "outdoor-gateway-with-lte-backhaul-and-dual-sim-failover-rev-c-eu1"
    assert len(long_class) == 65
    answer = httpx.post(f"{attestor.url}/v1/preregistrations", json={"devices": [
        {"serial": "FAB-001", "device_class": long_class, "ek_certificate": _b64(ek_cert)}]},
        headers=attestor.headers("enroller"))
    assert answer.status_code == 422 and answer.json()["code"] == "request.invalid"
    body = {**enrollment_body(device.tpm), "device_class": long_class}
    answer = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                        headers=attestor.enroller_headers)
    assert answer.status_code == 422 and answer.json()["code"] == "request.invalid"
    assert not _enrollments(attestor)
