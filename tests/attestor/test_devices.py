"""The device lifecycle through the operator API, over real HTTP with swtpm devices:
find and inspect, quarantine and release, revoke (certificates too, CRL), decommission
(the record and its audit trail stay), attestation history with paging."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from cryptography import x509

from agent.attest import attest_once
from agent.client import AttestorError
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def _get(attestor: LiveAttestor, path: str, role: str = "auditor", **params: object
         ) -> httpx.Response:
    return httpx.get(attestor.url + path, params=params, headers=attestor.headers(role))


def _act(attestor: LiveAttestor, device_id: str, action: str,
         reason: str = "maintenance") -> httpx.Response:
    return httpx.post(f"{attestor.url}/v1/devices/{device_id}/{action}",
                      json={"reason": reason}, headers=attestor.headers("admin"))


def test_inspect_filter_and_page(attestor: LiveAttestor, device: Device,
                                 other_device: Device) -> None:
    first = enroll_and_learn(attestor, device)
    second = enroll_and_learn(attestor, other_device)
    with attestor.client(first, device.tpm) as client:
        issued = attest_once(first, device.tpm, client, now())
        device.reboot(tamper="bootloader")
        with pytest.raises(AttestorError):
            attest_once(first, device.tpm, client, now())

    one = _get(attestor, f"/v1/devices/{first.device_id}").json()
    assert one["state"] == "active" and one["last_verdict"] == "fail"
    assert one["current_certificate"]["serial"] == issued.serial
    assert "policy.pcr_mismatch" in one["last_reasons"]
    assert {c["name"] for c in one["failed_checks"]} and all(
        not c["passed"] for c in one["failed_checks"])

    failing = _get(attestor, "/v1/devices", reason="policy.pcr_mismatch").json()["items"]
    assert [d["id"] for d in failing] == [first.device_id]
    assert _get(attestor, "/v1/devices", reason="policy_pcr.mismatch").json()["items"] == []
    later = (now() + dt.timedelta(hours=1)).isoformat()
    assert len(_get(attestor, "/v1/devices", attested_before=later).json()["items"]) == 2
    assert _get(attestor, "/v1/devices", attested_after=later).json()["items"] == []
    assert _get(attestor, "/v1/devices", state="quarantined").json()["items"] == []

    page = _get(attestor, "/v1/devices", limit=1).json()
    rest = _get(attestor, "/v1/devices", limit=1, cursor=page["next_cursor"]).json()
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {first.device_id,
                                                                second.device_id}
    assert rest["next_cursor"] is None
    bad = _get(attestor, "/v1/devices", cursor="!!!")
    assert bad.status_code == 400 and bad.json()["code"] == "input.malformed"


def test_attestation_history(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
        attest_once(config, device.tpm, client, now())
    path = f"/v1/devices/{config.device_id}/attestations"
    newest = _get(attestor, path, limit=1).json()
    record = newest["items"][0]
    assert record["verdict"] == "pass" and record["policy_version"] == 1
    assert len(record["evidence_sha256"]) == 64 and len(record["event_log_sha256"]) == 64
    assert record["checks"] and all(c["passed"] for c in record["checks"])
    older = _get(attestor, path, limit=10, cursor=newest["next_cursor"]).json()["items"]
    assert [r["verdict"] for r in older] == ["pass", "fail"]  # the learning run came first
    assert older[-1]["reasons"] == ["policy.no_reference"]
    # The device may read its own history.
    with attestor.client(config, device.tpm) as client:
        signed = client.signer.headers("GET", path, b"", __import__("time").time())  # type: ignore[union-attr]
    assert httpx.get(attestor.url + path, headers=signed).status_code == 200


def test_quarantine_release_revoke_decommission(attestor: LiveAttestor,
                                                device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    with attestor.client(config, device.tpm) as client:
        issued = attest_once(config, device.tpm, client, now())

        quarantined = _act(attestor, device_id, "quarantine", "suspected compromise").json()
        assert quarantined["state"] == "quarantined"
        assert quarantined["state_reason"] == "suspected compromise"
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
        assert refused.value.codes == ["device.not_active"]
        again = _act(attestor, device_id, "quarantine")
        assert again.status_code == 409 and again.json()["code"] == "request.conflict"

        assert _act(attestor, device_id, "release").json()["state"] == "active"
        renewed = attest_once(config, device.tpm, client, now())

        revoked = _act(attestor, device_id, "revoke", "stolen").json()
        assert revoked["state"] == "revoked" and revoked["current_certificate"] is None
        with pytest.raises(AttestorError) as no_more:
            attest_once(config, device.tpm, client, now())
        assert no_more.value.codes == ["device.not_active"]
    certs = _get(attestor, "/v1/certificates", device_id=device_id).json()["items"]
    assert {c["serial"] for c in certs} >= {issued.serial, renewed.serial}
    assert all(c["status"] == "revoked" for c in certs if c["kind"] != "pending")

    crl = x509.load_der_x509_crl(httpx.get(f"{attestor.url}/v1/crl").content)
    identity = [c for c in certs if c["kind"] == "identity"]
    assert identity and all(crl.get_revoked_certificate_by_serial_number(int(c["serial"], 16))
                            for c in identity)
    ca = x509.load_pem_x509_certificates(httpx.get(f"{attestor.url}/v1/ca").content)
    issuing = x509.load_pem_x509_certificate(
        (config.state_dir / "current" / "chain.pem").read_bytes())
    assert crl.is_signature_valid(issuing.public_key()) and ca

    gone = _act(attestor, device_id, "decommission", "end of life").json()
    assert gone["state"] == "decommissioned"
    assert _get(attestor, f"/v1/devices/{device_id}").json()["state"] == "decommissioned"
    trail = _get(attestor, "/v1/audit", device_id=device_id, limit=500).json()["items"]
    actions = [e["action"] for e in trail]
    for action in ("enrollment.activate", "attestation", "device.quarantine",
                   "device.release", "device.revoke", "device.decommission"):
        assert action in actions
    assert _act(attestor, device_id, "release").status_code == 409


def test_single_certificate_revocation_and_class_change(attestor: LiveAttestor,
                                                        device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        issued = attest_once(config, device.tpm, client, now())
    url = f"{attestor.url}/v1/certificates/{issued.serial}/revoke"
    done = httpx.post(url, json={"reason": "key_compromise"}, headers=attestor.headers("admin"))
    assert done.json()["status"] == "revoked" and done.json()["revoked_reason"] == "key_compromise"
    twice = httpx.post(url, json={}, headers=attestor.headers("admin"))
    assert twice.status_code == 409
    missing = httpx.post(f"{attestor.url}/v1/certificates/ffff/revoke", json={},
                         headers=attestor.headers("admin"))
    assert missing.status_code == 404 and missing.json()["code"] == "request.not_found"
    moved = httpx.put(f"{attestor.url}/v1/devices/{config.device_id}/class",
                      json={"device_class": "kiosk"}, headers=attestor.headers("admin"))
    assert moved.json()["device_class"] == "kiosk"
    with attestor.client(config, device.tpm) as client, pytest.raises(AttestorError) as none:
        attest_once(config, device.tpm, client, now())
    assert none.value.codes == ["policy.no_reference"]  # kiosk has no policy yet
