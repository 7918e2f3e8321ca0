"""`edge-agent doctor`: the keys in the TPM are the ones the attestor knows, and the
event logs are where the configuration says (swtpm, a live attestor, real files)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tpm2_pytss import ESYS_TR
from typer.testing import CliRunner

from agent.cli import app
from agent.config import AgentConfig, load_config
from agent.doctor import FAIL, OK, WARN, Check, run_checks
from agent.doctor_keys import attestor_record
from agent.enroll import provision
from agent.sim.swtpm import PORT_FILE, SwtpmProcess
from agent.tpm.device import Tpm
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def enrollment(config: AgentConfig, device: Device, *, offline: bool = False) -> Check:
    with device.released():
        checks = {c.name: c for c in run_checks(
            config, now(), None, None if offline else attestor_record(config))}
    return checks["enrollment"]


def clone_tpm(device: Device, into: Path) -> Path:
    """A copy of the device's TPM (same EK, same keys): swtpm saves its state on stop."""
    device.tpm.close()
    device.process.stop()
    shutil.copytree(device.root / "tpm", into)
    (into / PORT_FILE).unlink(missing_ok=True)  # the clone is another TPM: a port of its own
    device.process.start()  # same port: the configured TCTI stays valid
    device.tpm = Tpm(device.tcti)
    return into


def test_a_device_re_enrolled_from_another_tpm_fails_with_the_way_back(
        attestor: LiveAttestor, device: Device, tmp_path: Path) -> None:
    """The same device id (same EK) enrolled again from a clone of its TPM: the attestor
    now knows the clone's keys; the device's own are no longer enrolled."""
    config = enroll_and_learn(attestor, device)
    clone = SwtpmProcess(clone_tpm(device, tmp_path / "clone-tpm")).start()
    try:
        with Tpm(clone.tcti) as tpm, attestor.client() as client:
            other = AgentConfig(state_dir=tmp_path / "clone-state", attestor_url=attestor.url,
                                tcti=clone.tcti, serial=device.serial)
            assert provision(other, tpm, client, now()).device_id == config.device_id
    finally:
        clone.stop()
    assert enrollment(config, device, offline=True).status == OK  # nothing local changed
    check = enrollment(config, device)
    assert check.status == FAIL, check
    assert "auth.invalid" in check.detail
    assert "edge-agent provision --force" in check.hint
    with device.released():
        result = CliRunner().invoke(app, ["doctor", "--json", "--state-dir",
                                          str(config.state_dir)])
    assert result.exit_code == 1
    assert {c["name"]: c["status"] for c in json.loads(result.output)["checks"]
            }["enrollment"] == FAIL
    # the way back the hint gives
    with device.released():
        again = CliRunner().invoke(app, ["provision", "--force", "--attestor", attestor.url,
                                         "--state-dir", str(config.state_dir),
                                         "--api-key", attestor.enroller_key])
    assert again.exit_code == 0, again.output
    assert enrollment(load_config(state_dir=config.state_dir), device).status == OK


def _replace_ak(device: Device, config: AgentConfig) -> None:
    ak = device.tpm.ectx.tr_from_tpmpublic(config.ak_handle)
    device.tpm.ectx.evict_control(ESYS_TR.OWNER, ak, config.ak_handle)
    device.tpm.create_ak(config.ak_handle, config.srk_handle)


def test_an_ak_replaced_in_the_tpm_is_named(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    _replace_ak(device, config)
    check = enrollment(config, device, offline=True)
    assert check.status == FAIL and "agent.toml ak_name" in check.detail, check
    # an agent provisioned before the AK Name was recorded: the attestor's record says
    config.ak_name = None
    check = enrollment(config, device)
    assert check.status == FAIL and "the attestor knows another AK" in check.detail, check
    assert "provision --force" in check.hint


def test_devid_certificate_for_another_key_is_named(attestor: LiveAttestor,
                                                    device: Device, other_device: Device
                                                    ) -> None:
    config = enroll_and_learn(attestor, device)
    other = enroll_and_learn(attestor, other_device)
    shutil.copy(other.state_dir / "devid.pem", config.state_dir / "devid.pem")
    check = enrollment(config, device, offline=True)
    assert check.status == FAIL and "devid.pem certifies another key" in check.detail


def _checks(config: AgentConfig) -> dict[str, Check]:
    return {c.name: c for c in run_checks(config, now())}


def test_event_logs_on_the_simulators_paths_pass(attestor: LiveAttestor,
                                                 device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    with device.released():
        checks = _checks(config)
    assert (checks["event_log"].status, checks["ima_log"].status) == (OK, OK)
    assert str(device.log) in checks["event_log"].detail


def test_a_missing_event_log_names_the_setting(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    config.event_log = Path("/sys/kernel/security/tpm9/binary_bios_measurements")
    config.ima_log = config.state_dir / "no-ima"
    with device.released():
        checks = _checks(config)
    assert checks["event_log"].status == FAIL
    assert "No such file" in checks["event_log"].detail
    assert "EDGE_AGENT_EVENT_LOG" in checks["event_log"].hint
    assert "securityfs" in checks["event_log"].hint
    assert checks["ima_log"].status == FAIL and "EDGE_AGENT_IMA_LOG" in checks["ima_log"].hint
    config.event_log = None
    with device.released():
        unset = _checks(config)["event_log"]
    assert unset.status == WARN and "eventlog.missing" in unset.detail


def _as_nobody(config: AgentConfig) -> list[dict[str, str]]:
    """``doctor``'s event-log checks as an unprivileged user (a forked child that drops
    root, when the tests run as root)."""
    from agent.doctor import _event_logs

    if os.geteuid() != 0:
        return [c.as_dict() for c in _event_logs(config)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps([c.as_dict() for c in _event_logs(config)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    result: list[dict[str, str]] = json.loads(data)
    return result


@pytest.fixture
def logs() -> Iterator[Path]:
    """A directory anyone may enter (unlike pytest's tmp_path), for files only root reads."""
    path = Path(tempfile.mkdtemp(prefix="edge-agent-logs-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_an_unreadable_event_log_says_who_may_read_it(logs: Path, tmp_path: Path) -> None:
    """securityfs logs are root-only (0440): the agent's own user is refused."""
    for name in ("binary_bios_measurements", "binary_runtime_measurements"):
        (logs / name).write_bytes(b"\0" * 64)
        (logs / name).chmod(0o400)
    event_log, ima_log = _as_nobody(AgentConfig(
        state_dir=tmp_path, event_log=logs / "binary_bios_measurements",
        ima_log=logs / "binary_runtime_measurements"))
    assert event_log["status"] == FAIL and "Permission denied" in event_log["detail"]
    assert f"z {logs}/binary_bios_measurements 0440 root tss" in event_log["hint"]
    assert ima_log["status"] == FAIL
    assert f"z {logs}/binary_runtime_measurements* 0440 root tss" in ima_log["hint"]
