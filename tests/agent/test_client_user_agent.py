"""The agent names itself and its version to the attestor, so the audit log's
``user_agent`` tells an investigator which agent made a device's requests (issue 16:
every entry carries the user agent)."""

from __future__ import annotations

import httpx
import pytest

from agent.attest import attest_once
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def test_the_agents_requests_carry_its_user_agent(attestor: LiveAttestor,
                                                  device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    entries = httpx.get(attestor.url + "/v1/audit", params={"device_id": config.device_id},
                        headers=attestor.headers("auditor")).json()["items"]
    by_device = [e for e in entries if e["actor"].startswith("device:")]
    assert {e["action"] for e in by_device} >= {"enrollment.activate", "attestation"}
    assert all(e["user_agent"].startswith("edge-agent/") for e in by_device), [
        (e["action"], e["user_agent"]) for e in by_device]
