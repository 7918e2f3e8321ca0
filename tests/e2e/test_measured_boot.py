"""Measured-boot and IMA appraisal end to end on swtpm: each attack refused with its code,
the IMA list sent incrementally, a reboot sending it whole."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.attest import attest_once, collect_evidence, device_signer
from agent.client import AttestorError
from agent.sim.boot import TAMPERS
from agent.sim.ima import FILES
from attestor.services.policies import LearnSources, learn_policy
from identity.ima.log import list_file_for, parse_binary
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.adversarial]

EXPECTED = {
    "bootloader": ["eventlog.unknown_boot_application", "policy.pcr_mismatch"],
    "secureboot-off": ["eventlog.secure_boot_disabled", "policy.pcr_mismatch"],
    "unknown-app": ["eventlog.unknown_boot_application", "policy.pcr_mismatch"],
    "relabel": ["eventlog.event_after_separator"],
    "after-separator": ["eventlog.event_after_separator", "policy.pcr_mismatch"],
    "config-after-separator": ["eventlog.config_after_separator",
                               "eventlog.secure_boot_disabled", "policy.pcr_mismatch"],
    "cmdline": ["eventlog.cmdline_rejected"],
    "stale-dbx": ["eventlog.dbx_outdated", "policy.pcr_mismatch"],
}


def _learn_everything(attestor: LiveAttestor, device: Device) -> str:
    """Golden PCRs 0-7, the boot policy from the device's log, the IMA allowlist from its
    list; the command line must not carry init=."""
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    entries = parse_binary(device.ima.read_bytes()).entries
    with attestor.services.session() as session, session.begin():
        learn_policy(session, None, LearnSources(config.device_id, ima_entries=entries),
                     "test", now())
    with attestor.services.session() as session, session.begin():
        from attestor.db import queries
        from attestor.services.policies import policy_for, set_policy

        document, _ = policy_for(session, "default")
        assert document.boot is not None
        boot = document.boot.model_copy(update={"cmdline_forbidden": ("init",)})
        set_policy(session, "default", document.model_copy(update={"boot": boot}), "test",
                   now())
        assert queries.current_policy(session, "default") is not None
    return config.device_id


def test_tamper_kinds_are_all_covered() -> None:
    assert set(EXPECTED) == set(TAMPERS)


@pytest.mark.parametrize("tamper", sorted(EXPECTED))
def test_each_boot_attack_is_refused_with_its_codes(attestor: LiveAttestor, device: Device,
                                                    tamper: str) -> None:
    _learn_everything(attestor, device)
    config = device.config(attestor.url)
    config = replace(config, device_id=_device_id(config))
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())  # the good boot passes
        device.reboot(tamper=tamper)
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
    assert refused.value.codes == EXPECTED[tamper]


def _device_id(config: object) -> str:
    from agent.config import load_config

    loaded = load_config(state_dir=config.state_dir)  # type: ignore[attr-defined]
    assert loaded.device_id
    return loaded.device_id


def test_ima_list_is_sent_incrementally_and_whole_after_a_reboot(
    attestor: LiveAttestor, device: Device
) -> None:
    device_id = _learn_everything(attestor, device)
    config = replace(device.config(attestor.url), device_id=device_id)
    with attestor.client(config, device.tpm) as client:
        first = client.attest(device_id, collect_evidence(
            config, device.tpm, device_id, client.challenge(device_id)).body)
        assert first.ima is not None and first.ima.accepted_entries == len(FILES) + 1

        device.run_program(*FILES[2])  # an allowed file, measured again
        challenge = client.challenge(device_id)
        evidence = collect_evidence(config, device.tpm, device_id, challenge)
        assert evidence.body["ima_start"] == len(FILES) + 1  # only the new entry is sent
        second = client.attest(device_id, evidence.body)
        assert second.ima is not None and second.ima.accepted_entries == len(FILES) + 2

        device.run_program("/usr/local/bin/unknown", b"not in the allowlist")
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
        assert refused.value.codes == ["ima.file_not_allowed"]

        device.reboot()
        client.signer = device_signer(config, device.tpm)  # the new TPM session signs
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
        assert evidence.body["ima_start"] == 0  # a new boot: the whole list
        assert client.attest(device_id, evidence.body).verdict == "pass"


def test_attestor_that_cannot_continue_the_list_asks_for_all_of_it(
    attestor: LiveAttestor, device: Device
) -> None:
    device_id = _learn_everything(attestor, device)
    config = replace(device.config(attestor.url), device_id=device_id)
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
        bank = str(evidence.body["ima_bank"])  # the simulated kernel keeps per-bank lists
        sent = device.ima.with_name(list_file_for(bank)).read_bytes()
        listing = parse_binary(sent, bank)
        forged = dict(evidence.body, ima_start=2,
                      ima_log=__import__("base64").b64encode(listing.tail(sent, 2)).decode())
        with pytest.raises(AttestorError) as refused:
            client.attest(device_id, forged)
        assert refused.value.codes == ["ima.state_invalid"]
        assert attest_once(config, device.tpm, client, now()).serial  # the agent recovers


def test_ima_entry_with_forged_data_is_refused(attestor: LiveAttestor, device: Device) -> None:
    """The path of a measured file rewritten in the list; its template hash left as it was."""
    import base64

    device_id = _learn_everything(attestor, device)
    config = replace(device.config(attestor.url), device_id=device_id)
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
        raw = base64.b64decode(str(evidence.body["ima_log"]))
        forged = raw.replace(b"/usr/bin/edge-workload", b"/usr/bin/edge-workloaX")
        with pytest.raises(AttestorError) as refused:
            client.attest(device_id, dict(evidence.body,
                                          ima_log=base64.b64encode(forged).decode()))
    assert "ima.replay_mismatch" in refused.value.codes or \
        "ima.template_hash_mismatch" in refused.value.codes


def test_the_quoted_banks_list_is_sent_and_an_old_agents_sha1_list_still_passes(
    attestor: LiveAttestor, device: Device
) -> None:
    """The simulated kernel keeps binary_runtime_measurements_<bank> beside the SHA-1
    list: the agent sends the quoted bank's (32-byte template hashes), and a body as
    agents before ima_bank sent it (the SHA-1 list, no ima_bank) is accepted too."""
    import base64

    device_id = _learn_everything(attestor, device)
    config = replace(device.config(attestor.url), device_id=device_id)
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, device_id, client.challenge(device_id))
        assert evidence.body["ima_bank"] == "sha256"
        sent = base64.b64decode(str(evidence.body["ima_log"]))
        assert len(parse_binary(sent, "sha256").entries[0].template_hash) == 32
        assert client.attest(device_id, evidence.body).verdict == "pass"

        device.reboot()
        client.signer = device_signer(config, device.tpm)
        old = collect_evidence(config, device.tpm, device_id, client.challenge(device_id)).body
        old.pop("ima_bank")
        old["ima_log"] = base64.b64encode(device.ima.read_bytes()).decode()
        assert client.attest(device_id, old).verdict == "pass"
