"""Pre-registration by the manufacturer (JSON and CSV), then enrollment on-line without
a station credential, which only a pre-registered EK gets."""

from __future__ import annotations

import base64

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.client import AttestorClient, AttestorError
from agent.enroll import provision
from attestor.services import preregistration
from identity.errors import MalformedInput
from tests.harness import Device, LiveAttestor, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def _ek_cert(device: Device) -> bytes:
    certificate = device.tpm.endorsement().certificate
    assert certificate
    return certificate


def _ek_spki(device: Device) -> bytes:
    cert = x509.load_der_x509_certificate(_ek_cert(device))
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_batch_then_enrollment_without_credential(attestor: LiveAttestor, device: Device,
                                                      other_device: Device) -> None:
    batch = {"devices": [
        {"serial": "FAB-001", "model": "gw-2", "device_class": "gateway",
         "ek_certificate": _b64(_ek_cert(device))},
        {"serial": "FAB-002", "ek_public_key": _b64(_ek_spki(other_device))},
    ]}
    created = httpx.post(f"{attestor.url}/v1/preregistrations", json=batch,
                         headers={"X-Api-Key": attestor.enroller_key})
    assert created.status_code == 201 and created.json() == {"created": 2}
    again = httpx.post(f"{attestor.url}/v1/preregistrations", json=batch,
                       headers=attestor.headers("enroller"))
    assert again.status_code == 409 and again.json()["code"] == "request.conflict"

    pending = httpx.get(f"{attestor.url}/v1/preregistrations",
                        headers=attestor.headers("enroller")).json()["items"]
    assert [p["serial"] for p in pending] == ["FAB-001", "FAB-002"]

    # The device enrolls on its own: no API key, no token.
    with AttestorClient(attestor.url) as anonymous:
        enrolled = provision(device.config(attestor.url), device.tpm, anonymous, now())
    record = httpx.get(f"{attestor.url}/v1/devices/{enrolled.device_id}",
                       headers=attestor.headers("auditor")).json()
    assert (record["serial"], record["model"], record["device_class"]) == (
        "FAB-001", "gw-2", "gateway")
    pending = httpx.get(f"{attestor.url}/v1/preregistrations",
                        headers=attestor.headers("enroller")).json()["items"]
    assert [p["serial"] for p in pending] == ["FAB-002"]


def test_an_unregistered_tpm_needs_a_station(attestor: LiveAttestor, device: Device) -> None:
    with AttestorClient(attestor.url) as anonymous, pytest.raises(AttestorError) as refused:
        provision(device.config(attestor.url), device.tpm, anonymous, now())
    assert refused.value.status == 401 and refused.value.codes == ["auth.missing"]


def test_csv_upload(attestor: LiveAttestor, device: Device) -> None:
    rows = ["serial,model,device_class,ek_certificate,ek_public_key",
            f"CSV-1,cam,camera,{_b64(_ek_cert(device))},"]
    created = httpx.post(f"{attestor.url}/v1/preregistrations/csv",
                         content="\n".join(rows).encode(),
                         headers={"Content-Type": "text/csv",
                                  **attestor.headers("enroller")})
    assert created.status_code == 201, created.text
    pending = httpx.get(f"{attestor.url}/v1/preregistrations",
                        headers=attestor.headers("auditor"))
    assert pending.status_code == 403  # pre-registrations are the enrollers' business
    listed = httpx.get(f"{attestor.url}/v1/preregistrations",
                       headers=attestor.headers("enroller")).json()["items"]
    assert [(p["serial"], p["device_class"]) for p in listed] == [("CSV-1", "camera")]


@pytest.mark.parametrize(("text", "message"), [
    ("name,ek_certificate\nx,AAAA", "header"),
    ("serial,colour\nx,red", "unknown CSV columns"),
    ("serial,ek_public_key\nx,not-base64!", "row 1"),
    ("serial,ek_public_key\n", "no devices"),
    ("serial\nx", "device 1: give an EK"),
])
def test_malformed_csv_is_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedInput, match=message):
        items = preregistration.parse_csv(text)
        for number, item in enumerate(items, 1):
            preregistration._ek_key(item, number)


def test_malformed_csv_over_http(attestor: LiveAttestor) -> None:
    response = httpx.post(f"{attestor.url}/v1/preregistrations/csv", content=b"\xff\xfe",
                          headers={"Content-Type": "text/csv", **attestor.headers("admin")})
    assert response.status_code == 400 and response.json()["code"] == "input.malformed"
