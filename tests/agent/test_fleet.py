"""The fleet simulator's devices pass the same verifier, through the same endpoints,
as a device on swtpm (and fail it the same way when they lie)."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from agent.attest import attest_once
from agent.client import AttestorClient, AttestorError
from agent.sim.fleet import SimDevice
from identity.messages import ActivationRequest
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def enroll(attestor: LiveAttestor, sim: SimDevice) -> None:
    """Pre-registration by the manufacturer, then the device alone (no credential)."""
    answer = httpx.post(f"{attestor.url}/v1/preregistrations",
                        json={"devices": [sim.preregistration()]},
                        headers=attestor.enroller_headers)
    assert answer.status_code == 201, answer.text
    with AttestorClient(attestor.url) as anonymous:
        challenge = anonymous.enroll(sim.enrollment())
        secret = sim.activate(challenge.credential_blob, challenge.encrypted_secret)
        enrolled = anonymous.activate(challenge.enrollment_id, ActivationRequest(secret=secret))
    sim.device_id = enrolled.device_id


def test_simulated_and_swtpm_devices_pass_the_same_endpoints(attestor: LiveAttestor,
                                                             device: Device) -> None:
    config = enroll_and_learn(attestor, device)  # policy learned from the swtpm boot
    with attestor.client(config, device.tpm) as client:
        real = attest_once(config, device.tpm, client, now())
    sim = SimDevice("SIM-0001")
    enroll(attestor, sim)
    with AttestorClient(attestor.url, signer=sim.signer()) as client:
        result = client.attest(str(sim.device_id), sim.evidence(client.challenge(
            str(sim.device_id))))
    assert result.verdict == "pass" and result.token
    assert {c["name"] for c in result.checks} >= {"quote.signature", "policy.pcrs",
                                                  "boot.kernel", "csr"}
    assert real.serial != result.serial

    # a simulated device that lies is refused exactly like a real one
    with AttestorClient(attestor.url, signer=sim.signer()) as client:
        challenge = client.challenge(str(sim.device_id))
        body = msgspec.structs.replace(sim.evidence(challenge), nonce=b"\x00" * 32)
        with pytest.raises(AttestorError) as refused:
            client.attest(str(sim.device_id), body)
    assert refused.value.codes[0].startswith("nonce.")


def test_wrong_ek_cannot_answer_the_activation(attestor: LiveAttestor) -> None:
    sim, impostor = SimDevice("SIM-0002"), SimDevice("SIM-0003")
    httpx.post(f"{attestor.url}/v1/preregistrations", json={"devices": [sim.preregistration()]},
               headers=attestor.enroller_headers)
    with AttestorClient(attestor.url) as anonymous:
        challenge = anonymous.enroll(sim.enrollment())
        with pytest.raises(ValueError, match="integrity"):
            impostor.activate(challenge.credential_blob, challenge.encrypted_secret)
