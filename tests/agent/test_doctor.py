"""`edge-agent doctor` on a healthy device and on each broken setup (swtpm, real files)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable

import pytest
from tpm2_pytss import ESYS_TR, TPM2_CAP, TPM2_HANDLE
from typer.testing import CliRunner

from agent.cli import app
from agent.client import AttestorClient, Unreachable
from agent.config import AgentConfig
from agent.doctor import FAIL, OK, WARN, Check, run_checks
from agent.doctor_keys import attestor_record
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def attested(attestor: LiveAttestor, device: Device) -> AgentConfig:
    from agent.attest import attest_once

    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    return config


def diagnose(config: AgentConfig, device: Device,
             probe: Callable[[], dt.datetime | None] | None = None,
             at: dt.datetime | None = None) -> dict[str, Check]:
    with device.released():
        return {c.name: c for c in run_checks(config, at or now(), probe)}


def test_healthy_device_passes_every_check(attestor: LiveAttestor, device: Device) -> None:
    config = attested(attestor, device)

    def probe() -> dt.datetime | None:
        with AttestorClient(attestor.url) as client:
            return client.health()

    with device.released():
        checks = {c.name: c for c in run_checks(config, now(), probe,
                                                  attestor_record(config))}
    assert {c.status for c in checks.values()} == {OK}, checks
    assert set(checks) == {"state_dir", "credentials", "tpm", "ek_certificate",
                           "persistent_objects", "enrollment", "event_log", "ima_log",
                           "attestor", "clock"}
    assert "the ones the attestor has" in checks["enrollment"].detail
    with device.released():
        result = CliRunner().invoke(app, ["doctor", "--json", "--offline",
                                          "--state-dir", str(config.state_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def _evict_ak(device: Device, config: AgentConfig) -> None:
    ak = device.tpm.ectx.tr_from_tpmpublic(config.ak_handle)
    device.tpm.ectx.evict_control(ESYS_TR.OWNER, ak, config.ak_handle)


def _remove_ek_certificates(device: Device, config: AgentConfig) -> None:
    """Undefine every EK certificate index (TCG range 0x01C00002-0x01C0001F) there is."""
    _, data = device.tpm.ectx.get_capability(TPM2_CAP.HANDLES, 0x01C00000, 64)
    for index in data.data.handles:
        if 0x01C00002 <= int(index) <= 0x01C0001F:
            handle = device.tpm.ectx.tr_from_tpmpublic(TPM2_HANDLE(int(index)))
            device.tpm.ectx.nv_undefine_space(handle, ESYS_TR.PLATFORM)


BROKEN: dict[str, tuple[str, str, Callable[[AgentConfig, Device], object]]] = {
    "tpm unreachable": ("tpm", FAIL,
                        lambda c, d: setattr(c, "tcti", "swtpm:host=127.0.0.1,port=9")),
    "not provisioned": ("persistent_objects", FAIL, lambda c, d: setattr(c, "device_id", None)),
    "AK evicted": ("persistent_objects", FAIL, lambda c, d: _evict_ak(d, c)),
    "no EK certificate": ("ek_certificate", WARN, lambda c, d: _remove_ek_certificates(d, c)),
    "event log missing": ("event_log", FAIL,
                          lambda c, d: setattr(c, "event_log", c.state_dir / "nope")),
    "event log empty": ("event_log", FAIL,
                        lambda c, d: (d.log.write_bytes(b""))),
    "IMA path a directory": ("ima_log", FAIL, lambda c, d: setattr(c, "ima_log", c.state_dir)),
    "state dir open to others": ("state_dir", FAIL, lambda c, d: c.state_dir.chmod(0o755)),
    "state dir owned by another user": ("state_dir", FAIL,
                                        lambda c, d: os.chown(c.state_dir, 4321, 4321)),
    "key readable by others": ("credentials", FAIL,
                               lambda c, d: (c.state_dir / "key.pem").chmod(0o644)),
}


@pytest.mark.parametrize("setup", sorted(BROKEN))
def test_each_broken_setup_is_named_with_a_fix(attestor: LiveAttestor, device: Device,
                                               setup: str) -> None:
    config = attested(attestor, device)
    name, status, breaker = BROKEN[setup]
    if setup == "state dir owned by another user" and os.geteuid() != 0:
        pytest.skip("needs root to give the directory away")
    breaker(config, device)
    checks = diagnose(config, device)
    assert checks[name].status == status, checks[name]
    assert checks[name].hint
    others = {n: c.status for n, c in checks.items() if n != name and c.status == FAIL}
    if setup == "tpm unreachable":  # what depends on the TPM says it was not checked
        assert set(others) == {"ek_certificate", "persistent_objects", "enrollment"}
    else:
        assert not others, others


def test_clock_and_attestor_problems(attestor: LiveAttestor, device: Device) -> None:
    config = attested(attestor, device)
    checks = diagnose(config, device, at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert checks["clock"].status == FAIL and "NTP" in checks["clock"].hint
    checks = diagnose(config, device, probe=lambda: now() + dt.timedelta(hours=1))
    assert checks["clock"].status == FAIL and "-3600 s" in checks["clock"].detail

    def down() -> dt.datetime | None:
        raise Unreachable("http://attestor:8080/healthz: connection refused")

    checks = diagnose(config, device, probe=down)
    assert checks["attestor"].status == FAIL and "refused" in checks["attestor"].detail
    with device.released():
        result = CliRunner().invoke(app, ["doctor", "--state-dir", str(config.state_dir),
                                          "--tcti", "swtpm:host=127.0.0.1,port=9"])
    assert result.exit_code == 1
    assert "fix:" in result.output
