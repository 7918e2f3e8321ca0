"""`edge-agent provision` is all or nothing (swtpm, a live attestor over HTTP): an
enrolled device is refused without --force; with it, new keys go beside the old and
the old are removed only after the attestor confirmed the new ones."""

from __future__ import annotations

import tomllib

import pytest
from typer.testing import CliRunner

from agent import keyswap
from agent.attest import attest_once
from agent.cli import app
from agent.client import Unreachable
from agent.config import AgentConfig, config_path, load_config
from agent.doctor import OK, run_checks
from agent.doctor_keys import attestor_record
from agent.enroll import AlreadyEnrolled, provision
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def names(device: Device, config: AgentConfig) -> tuple[bytes, bytes]:
    return (device.tpm.read_public(config.ak_handle), device.tpm.read_public(config.devid_handle))


def cli_provision(attestor: LiveAttestor, device: Device, config: AgentConfig, *extra: str,
                  url: str | None = None) -> tuple[int, str]:
    with device.released():
        result = CliRunner().invoke(app, [
            "provision", "--attestor", url or attestor.url, "--state-dir", str(config.state_dir),
            "--api-key", attestor.enroller_key, *extra])
    return result.exit_code, result.output


def attests(attestor: LiveAttestor, device: Device) -> AgentConfig:
    """The device, with the configuration on disk, attests (and so renews)."""
    config = load_config(state_dir=device.root / "state")
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    return config


def enrollment_ok(attestor: LiveAttestor, device: Device, config: AgentConfig) -> str:
    with device.released():
        checks = {c.name: c for c in run_checks(config, now(), None, attestor_record(config))}
    assert checks["enrollment"].status == OK, checks["enrollment"]
    return checks["enrollment"].detail


def test_an_enrolled_device_is_refused_without_force(attestor: LiveAttestor,
                                                     device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    before = names(device, config)
    code, output = cli_provision(attestor, device, config)
    assert code == 1
    said = " ".join(output.split())  # rich wraps at the test console's 80 columns
    assert said == (f"error: this device is already enrolled (device {config.device_id}); "
                    "`edge-agent provision --force` replaces its keys (see --help)"), output
    assert names(device, config) == before
    with attestor.client() as client, pytest.raises(AlreadyEnrolled):
        provision(config, device.tpm, client, now())
    attests(attestor, device)
    with device.released():
        helped = CliRunner().invoke(app, ["provision", "--help"], terminal_width=200)
    assert "--force" in helped.output and "beside" in helped.output


def test_a_wrong_url_during_force_leaves_the_device_working(attestor: LiveAttestor,
                                                            device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    before = names(device, config)
    toml_before = config_path(config.state_dir).read_text()
    code, output = cli_provision(attestor, device, config, "--force",
                                 url=attestor.url + "/wrong")
    assert code == 3, output
    assert "(404)" in output and "nothing changed" in output
    assert "--force" in output and "beside" in output  # it said what it would do
    assert names(device, config) == before
    for handle in (config.ak_handle, config.devid_handle):
        assert not device.tpm.has(keyswap.alternate(handle))  # the new keys are gone
    assert config_path(config.state_dir).read_text() == toml_before
    assert not keyswap.journal_path(config.state_dir).exists()
    attests(attestor, device)
    enrollment_ok(attestor, device, config)


def test_a_failure_after_the_challenge_keeps_the_old_keys(
        attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attestor has checked the new keys and sent the activation challenge; the
    device never completes it (the network drops): nothing changes for the device."""
    from agent.client import AttestorClient

    config = enroll_and_learn(attestor, device)
    before = names(device, config)

    def dropped(self: AttestorClient, enrollment_id: str, secret_b64: str) -> dict[str, str]:
        raise Unreachable("connection reset")

    monkeypatch.setattr(AttestorClient, "activate", dropped)
    with attestor.client() as client, pytest.raises(Unreachable):
        provision(load_config(state_dir=config.state_dir), device.tpm, client, now(),
                  force=True)
    monkeypatch.undo()
    assert names(device, config) == before
    assert not device.tpm.has(keyswap.alternate(config.ak_handle))
    attests(attestor, device)


def test_force_switches_keys_and_removes_the_old(attestor: LiveAttestor,
                                                 device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    old_ak, old_devid = names(device, config)
    code, output = cli_provision(attestor, device, config, "--force")
    assert code == 0, output
    assert "old keys removed" in output
    switched = load_config(state_dir=config.state_dir)
    assert (switched.ak_handle, switched.devid_handle) == (
        keyswap.alternate(config.ak_handle), keyswap.alternate(config.devid_handle))
    assert switched.device_id == config.device_id
    assert not device.tpm.has(config.ak_handle) and not device.tpm.has(config.devid_handle)
    new_ak, new_devid = names(device, switched)
    assert new_ak != old_ak and new_devid != old_devid
    attests(attestor, device)
    enrollment_ok(attestor, device, switched)
    # and back: the next re-provisioning uses the first pair of handles again
    code, output = cli_provision(attestor, device, switched, "--force")
    assert code == 0, output
    again = load_config(state_dir=config.state_dir)
    assert (again.ak_handle, again.devid_handle) == (config.ak_handle, config.devid_handle)
    assert not device.tpm.has(switched.ak_handle)
    attests(attestor, device)


def test_an_interrupted_provisioning_is_undone_or_finished(
        attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    config = enroll_and_learn(attestor, device)
    before = names(device, config)
    # cut off before the attestor confirmed: the new keys exist, the journal says so
    journal = keyswap.begin(config, device.tpm)
    device.tpm.create_ak(journal.new_ak, config.srk_handle)
    device.tpm.create_devid(journal.new_devid, config.srk_handle)
    with device.released():
        checks = {c.name: c for c in run_checks(config, now())}
        assert checks["enrollment"].status == "fail" and "attest --once" in \
            checks["enrollment"].hint
        result = CliRunner().invoke(app, ["attest", "--once", "--state-dir",
                                          str(config.state_dir)])
    assert result.exit_code == 0, result.output
    assert "undid an interrupted provisioning" in result.output
    assert names(device, config) == before
    assert not device.tpm.has(journal.new_ak) and not device.tpm.has(journal.new_devid)

    # cut off after the attestor confirmed (the journal committed), before the switch
    def crash(*args: object) -> None:
        raise SystemExit("power lost")

    monkeypatch.setattr(keyswap, "finish", crash)
    with attestor.client() as client, pytest.raises(SystemExit):
        provision(load_config(state_dir=config.state_dir), device.tpm, client, now(),
                  force=True)
    monkeypatch.undo()
    assert tomllib.loads(config_path(config.state_dir).read_text())["ak_handle"] == \
        config.ak_handle  # not switched yet
    with device.released():
        result = CliRunner().invoke(app, ["attest", "--once", "--state-dir",
                                          str(config.state_dir)])
    assert result.exit_code == 0, result.output
    assert "finished an interrupted provisioning" in result.output
    switched = load_config(state_dir=config.state_dir)
    assert switched.ak_handle == keyswap.alternate(config.ak_handle)
    assert not device.tpm.has(config.ak_handle) and not device.tpm.has(config.devid_handle)
    enrollment_ok(attestor, device, switched)


def test_a_first_provisioning_cut_off_after_the_commit_is_completed_not_repeated(
        attestor: LiveAttestor, device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    config = device.config(attestor.url)

    def crash(*args: object) -> None:
        raise SystemExit("power lost")

    monkeypatch.setattr(keyswap, "finish", crash)
    with attestor.client() as client, pytest.raises(SystemExit):
        provision(config, device.tpm, client, now())
    monkeypatch.undo()
    assert config.device_id is None
    code, output = cli_provision(attestor, device, config, "--tcti", device.tcti)
    assert code == 1
    said = " ".join(output.split())
    assert "finished an interrupted provisioning" in said and "is enrolled" in said, output
    enrolled = load_config(state_dir=config.state_dir)
    assert enrolled.device_id and enrolled.ak_name
    assert not keyswap.journal_path(config.state_dir).exists()
    enrollment_ok(attestor, device, enrolled)
