"""`edge-agent status`, human and --json, against a live attestor and a dead one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.attest import attest_once
from agent.cli import app
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def status(state_dir: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", "--state-dir", state_dir, *args])
    return result.exit_code, result.output


def test_status_reports_identity_expiry_verdict_renewal_and_reachability(
        attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    config = enroll_and_learn(attestor, device)  # the learning attestation was refused
    state = str(config.state_dir)
    code, output = status(state, "--json", "--offline")
    info = json.loads(output)
    assert code == 1 and info["certificate"]["valid"] is False
    assert (info["last_verdict"], info["reasons"]) == ("fail", ["policy.no_reference"])

    with attestor.client(config, device.tpm) as client:
        issued = attest_once(config, device.tpm, client, now())
    code, output = status(state, "--json")
    info = json.loads(output)
    assert code == 0
    assert info["device_id"] == config.device_id
    assert info["certificate"]["serial"] == issued.serial
    assert 3000 < info["certificate"]["expires_in_seconds"] <= 3600
    assert (info["last_verdict"], info["reasons"]) == ("pass", [])
    assert info["next_renewal"] and info["attestor"]["reachable"] is True

    code, output = status(state)
    assert code == 0 and "valid" in output and "reachable" in output

    monkeypatch.setenv("EDGE_AGENT_ATTESTOR_URL", "http://127.0.0.1:9")
    code, output = status(state, "--json")
    info = json.loads(output)
    assert code == 0  # the certificate is still good; the attestor is not
    assert info["attestor"]["reachable"] is False and "127.0.0.1:9" in info["attestor"]["detail"]
