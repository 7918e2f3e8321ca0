"""The audit trail an investigation needs, end to end over real HTTP with swtpm devices:
a refused attestation names its outcome, reasons, device, client address and principal;
a refused device request names the device it claimed to be; a re-enrollment is its own
action with the keys before and after; and filtering by device finds all of it."""

from __future__ import annotations

import httpx
import pytest

from agent.attest import attest_once
from agent.client import AttestorClient, AttestorError, DeviceSigner
from agent.enroll import provision
from attestor import audit
from attestor.db import queries
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True


def _entries(attestor: LiveAttestor, **params: str) -> list[dict[str, object]]:
    response = httpx.get(f"{attestor.url}/v1/audit", params=params,
                         headers=attestor.headers("auditor"))
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_a_refused_attestation_is_recorded_for_an_investigation(
        attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    with attestor.client(config, device.tpm) as client:
        device.reboot(tamper="bootloader")
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
    (entry,) = [e for e in _entries(attestor, device_id=device_id, action="attestation",
                                    outcome="refused")
                if e["reasons"] == refused.value.codes]
    assert entry["outcome"] == "refused"
    assert entry["reasons"] == ["eventlog.unknown_boot_application", "policy.pcr_mismatch"]
    assert entry["device_id"] == device_id
    assert entry["client_address"] == "127.0.0.1"
    assert entry["actor"] == f"device:{device_id}"
    assert isinstance(entry["request_id"], str) and len(entry["request_id"]) >= 16
    assert entry["version"] == 2
    # and the reason-code filter finds it
    assert [e["seq"] for e in _entries(attestor, reason="policy.pcr_mismatch")] == \
        [entry["seq"]]


def test_a_refused_device_request_names_the_device_it_claimed(
        attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    handle = config.devid_handle
    # The genuine DevID key, signing something other than the request: a forgery.
    forged = DeviceSigner(device_id, lambda m: device.tpm.sign_persistent(
        handle, m + b"tampered"))
    with AttestorClient(attestor.url, signer=forged) as client, \
            pytest.raises(AttestorError) as refused:
        client.challenge(device_id)
    assert refused.value.status == 401
    entries = _entries(attestor, device_id=device_id, action="auth")
    assert [(e["actor"], e["outcome"], e["device_id"]) for e in entries] == [
        ("anonymous", "refused", device_id)]
    assert entries[0]["reasons"] == refused.value.codes
    assert entries[0]["client_address"] == "127.0.0.1"


def test_a_reenrollment_is_its_own_action_with_old_and_new_keys(
        attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    with attestor.services.session() as session:
        first = [e for e in queries.audit_events(session, device_id)
                 if e.action == "enrollment.activate"]
    assert len(first) == 1 and first[0].actor == f"device:{device_id}"
    with attestor.client() as client:
        provision(config, device.tpm, client, now(), force=True)  # new AK and DevID keys
    (entry,) = _entries(attestor, device_id=device_id, action="device.reenrolled")
    details = entry["details"]
    assert isinstance(details, dict)
    old, new = details["old_keys"], details["new_keys"]
    assert old["ek_sha256"] == new["ek_sha256"]  # the same TPM
    assert old["ak_name"] != new["ak_name"] and old["devid_name"] != new["devid_name"]
    assert details["keys_changed"] == ["ak_name", "devid_name"]
    assert (entry["outcome"], entry["actor"]) == ("success", f"device:{device_id}")
    with attestor.services.session() as session:
        assert all(audit.event_json(e)["outcome"] in audit.OUTCOMES
                   for e in queries.audit_events(session))


def test_a_quarantined_device_calling_in_is_recorded(attestor: LiveAttestor,
                                                     device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = config.device_id
    assert device_id
    assert httpx.post(f"{attestor.url}/v1/devices/{device_id}/quarantine",
                      json={"reason": "investigation 42"},
                      headers=attestor.headers("admin")).status_code == 200
    with attestor.client(config, device.tpm) as client, \
            pytest.raises(AttestorError) as refused:
        client.challenge(device_id)
    assert refused.value.codes == ["device.not_active"]
    history = _entries(attestor, device_id=device_id, since="2000-01-01T00:00:00Z")
    quarantine, challenge = history[-2:]
    assert (quarantine["action"], quarantine["actor"]) == ("device.quarantine",
                                                           "token:test-admin")
    assert (challenge["action"], challenge["outcome"], challenge["reasons"],
            challenge["actor"], challenge["client_address"]) == (
        "attestation.challenge", "refused", ["device.not_active"], f"device:{device_id}",
        "127.0.0.1")
