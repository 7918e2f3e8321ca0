"""`edge-agent status`, human and --json, on swtpm against a live attestor: its exit code
is the agent's health (a liveness probe), and follows what the attestor says about the
device (revoked, quarantined, released), refusals, failures in a row and an overdue
renewal, while an attestor that cannot answer for a while is not a verdict."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from agent.attest import attest_once, current_certificate, read_status, write_status
from agent.cli import app
from agent.client import AttestorClient, AttestorError
from agent.config import AgentConfig
from agent.health import assess
from agent.renew import Renewer
from tests.agent.proxy import FlakyProxy
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def status(state_dir: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", "--state-dir", state_dir, *args])
    return result.exit_code, result.output


def status_json(config: AgentConfig) -> tuple[int, dict[str, Any]]:
    code, output = status(str(config.state_dir), "--json")
    return code, json.loads(output)


def failing(info: dict[str, Any]) -> set[str]:
    return {check["name"] for check in info["checks"] if not check["ok"]}


def test_status_reports_identity_expiry_verdict_renewal_and_reachability(
        attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    config = enroll_and_learn(attestor, device)  # the learning attestation was refused
    state = str(config.state_dir)
    code, info = status_json(config)
    assert code == 1 and info["healthy"] is False
    assert info["certificate"]["valid"] is False
    assert (info["last_verdict"], info["reasons"]) == ("fail", ["policy.no_reference"])
    assert failing(info) == {"certificate", "last_verdict"}
    assert info["attestor"]["reachable"] is None  # local state only, unless asked

    with attestor.client(config, device.tpm) as client:
        issued = attest_once(config, device.tpm, client, now())
    code, output = status(state, "--json", "--check-attestor")
    info = json.loads(output)
    assert code == 0 and info["healthy"] is True and info["problems"] == []
    assert info["device_id"] == config.device_id and info["device_state"] == "active"
    assert info["certificate"]["serial"] == issued.serial
    assert 3000 < info["certificate"]["expires_in_seconds"] <= 3600
    assert (info["last_verdict"], info["reasons"]) == ("pass", [])
    assert info["last_renewal"] and info["next_renewal"]
    assert info["consecutive_failures"] == 0
    assert info["attestor"]["reachable"] is True

    code, output = status(state)
    assert code == 0 and "healthy" in output and "valid" in output and "last renewal" in output

    monkeypatch.setenv("EDGE_AGENT_ATTESTOR_URL", "http://127.0.0.1:9")
    code, output = status(state, "--json", "--check-attestor")
    info = json.loads(output)
    assert code == 0  # the certificate is still good; the attestor is not
    assert info["attestor"]["reachable"] is False and "127.0.0.1:9" in info["attestor"]["detail"]


def _admin(attestor: LiveAttestor, device_id: str, action: str) -> None:
    httpx.post(f"{attestor.url}/v1/devices/{device_id}/{action}", json={"reason": "test"},
               headers=attestor.headers("admin")).raise_for_status()


def test_a_revoked_device_is_unhealthy_though_its_certificate_has_not_expired(
        attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
        assert status_json(config)[0] == 0

        _admin(attestor, config.device_id, "quarantine")
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())  # the next renewal
        assert refused.value.code == "device.not_active"
        assert refused.value.device_state == "quarantined"  # the attestor says which
        code, info = status_json(config)
        assert code == 1 and info["device_state"] == "quarantined"
        assert failing(info) == {"device_state", "last_verdict"}
        assert info["certificate"]["valid"] is True  # what the old status looked at
        assert any("quarantined" in problem for problem in info["problems"])

        _admin(attestor, config.device_id, "release")
        attest_once(config, device.tpm, client, now())
        code, info = status_json(config)
        assert code == 0 and info["device_state"] == "active"

        _admin(attestor, config.device_id, "revoke")
        with pytest.raises(AttestorError):
            attest_once(config, device.tpm, client, now())
    code, info = status_json(config)
    assert code == 1 and info["device_state"] == "revoked"
    assert info["certificate"]["valid"] is True
    code, output = status(str(config.state_dir))
    assert code == 1 and "UNHEALTHY" in output and "revoked" in output


def test_an_attestor_that_cannot_answer_is_not_a_verdict_until_failures_pile_up(
        attestor: LiveAttestor, device: Device, proxy: FlakyProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    monkeypatch.setenv("EDGE_AGENT_UNHEALTHY_AFTER_FAILURES", "3")
    clock = [now() + dt.timedelta(minutes=50)]  # past the renewal time
    proxied = AttestorClient(proxy.url, clock=lambda: clock[0].timestamp())
    renewer = Renewer(config, device.tpm, proxied, lambda: clock[0], rng=random.Random(2))
    backoff = renewer.backoff()
    for mode in ("500", "429"):
        proxy.mode = mode
        renewer.step(backoff)
        recorded = read_status(config.state_dir)
        assert recorded["last_verdict"] == "pass"  # a 5xx or 429 is no verdict on us
        assert status_json(config)[0] == 0
    proxy.mode = "down"
    renewer.step(backoff)  # the third failure in a row
    code, info = status_json(config)
    assert code == 1 and failing(info) == {"failures"}
    assert info["consecutive_failures"] == 3
    proxy.mode = "up"
    attestor.clock.offset = dt.timedelta(minutes=50)
    renewer.step(backoff)  # renewed, in the attestor's (virtual) time
    health = assess(config, read_status(config.state_dir),
                    current_certificate(config.output), clock[0])
    assert health.healthy, health.problems


def test_an_overdue_renewal_means_nobody_is_renewing(attestor: LiveAttestor,
                                                     device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    write_status(config.state_dir, {"next_renewal": (now() - dt.timedelta(minutes=5))
                                    .isoformat()})
    assert status_json(config)[0] == 0  # within the grace: a renewal may be under way
    write_status(config.state_dir, {"next_renewal": (now() - dt.timedelta(minutes=11))
                                    .isoformat()})
    code, info = status_json(config)
    assert code == 1 and failing(info) == {"renewal"}
    assert "edge-agent run" in " ".join(info["problems"])


def test_not_provisioned_is_unhealthy(tmp_path: Path) -> None:
    code, output = status(str(tmp_path))
    assert code == 1 and "not provisioned" in output
