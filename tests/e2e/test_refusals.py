"""Negative end-to-end tests over real HTTP against swtpm, each asserting its reason code."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from agent.attest import attest_once, collect_evidence
from agent.client import AttestorError
from agent.enroll import provision
from agent.sim.swtpm import Manufacturer
from attestor.db import queries
from tests.harness import Device, LiveAttestor, enroll_and_learn, enrollment_body, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.adversarial]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def _refusal(exc: pytest.ExceptionInfo[AttestorError]) -> list[str]:
    return exc.value.codes


def test_replayed_nonce_is_refused(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        challenge = client.challenge(config.device_id)
        evidence = collect_evidence(config, device.tpm, config.device_id, challenge)
        client.attest(config.device_id, evidence.body)
        with pytest.raises(AttestorError) as replay:
            client.attest(config.device_id, evidence.body)
    assert replay.value.status == 403
    assert _refusal(replay) == ["nonce.used"]


def test_expired_nonce_is_refused(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        challenge = client.challenge(config.device_id)
        evidence = collect_evidence(config, device.tpm, config.device_id, challenge)
        attestor.clock.offset = dt.timedelta(seconds=61)  # nonces live 60 s
        with pytest.raises(AttestorError) as expired:
            client.attest(config.device_id, evidence.body)
    assert _refusal(expired) == ["nonce.expired"]


def test_quote_signed_by_another_devices_ak_is_refused(
    attestor: LiveAttestor, device: Device, other_device: Device
) -> None:
    config = enroll_and_learn(attestor, device)
    other = other_device.config(attestor.url)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        provision(other, other_device.tpm, client, now())
        challenge = client.challenge(config.device_id)
        genuine = collect_evidence(config, device.tpm, config.device_id, challenge)
        # The other TPM quotes the same PCR values with this device's nonce.
        forged = collect_evidence(replace(config, tcti=other.tcti),
                                  other_device.tpm, config.device_id, challenge)
        body = dict(genuine.body, quote=forged.body["quote"])
        with pytest.raises(AttestorError) as refused:
            client.attest(config.device_id, body)
    assert "quote.signature_invalid" in _refusal(refused)
    assert refused.value.status == 403


def test_ek_from_unknown_manufacturer_is_refused(
    attestor: LiveAttestor, rogue_manufacturer: Manufacturer, tmp_path: Path
) -> None:
    rogue = Device(rogue_manufacturer, tmp_path / "rogue")
    try:
        with attestor.client() as client, pytest.raises(AttestorError) as refused:
            provision(rogue.config(attestor.url), rogue.tpm, client, now())
    finally:
        rogue.close()
    assert _refusal(refused) == ["ek.chain_untrusted"]
    with attestor.services.session() as session:
        outcomes = [(e.action, e.outcome) for e in queries.audit_events(session)]
    assert ("enrollment.start", "refused") in outcomes


def test_wrong_activation_secret_is_refused_without_echo(
    attestor: LiveAttestor, device: Device
) -> None:
    from agent.sim.fleet import b64 as _b64

    tpm = device.tpm
    body = enrollment_body(tpm)
    challenge = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                           headers=attestor.enroller_headers).json()
    expected = tpm.activate_credential(base64.b64decode(challenge["credential_blob"]),
                                       base64.b64decode(challenge["encrypted_secret"]))
    wrong = bytes(b ^ 0xFF for b in expected)
    response = httpx.post(f"{attestor.url}/v1/enrollments/{challenge['enrollment_id']}/activation",
                          json={"secret": _b64(wrong)})
    assert response.status_code == 403
    assert response.json()["code"] == "activation.secret_mismatch"
    text = response.text
    for form in (expected.hex(), expected.hex().upper(), _b64(expected),
                 base64.urlsafe_b64encode(expected).decode().rstrip("=")):
        assert form not in text
    # The challenge was burnt by the wrong answer: the right one no longer works.
    retry = httpx.post(f"{attestor.url}/v1/enrollments/{challenge['enrollment_id']}/activation",
                       json={"secret": _b64(expected)})
    assert retry.json()["code"] == "activation.used"


def test_tampered_boot_is_refused_and_nothing_issued(
    attestor: LiveAttestor, device: Device
) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        good = attest_once(config, device.tpm, client, now())
        device.reboot(tamper="bootloader")
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
    # The learned policy holds golden PCRs and the boot policy from the good boot's log.
    assert _refusal(refused) == ["eventlog.unknown_boot_application", "policy.pcr_mismatch"]
    details = {c["code"]: c["detail"] for c in refused.value.checks if not c["passed"]}
    assert details["policy.pcr_mismatch"] == "sha256 PCR 4 differ from the reference"
    assert "grubx64.efi" in details["eventlog.unknown_boot_application"]
    with attestor.services.session() as session:
        certs = [a.certificate_serial for a in queries.attestations_for(session, config.device_id)]
    assert certs[0] is None and good.serial in certs  # newest first: refused, nothing issued
    assert (config.state_dir / "cert.pem").read_text().strip()  # old credentials kept


def test_unknown_device_is_refused(attestor: LiveAttestor, device: Device) -> None:
    """A device id the attestor never enrolled: no signature can be checked for it (401),
    an enrolled device may not act under it (403), and an operator finds nothing (404)."""
    from agent.client import DeviceSigner

    config = enroll_and_learn(attestor, device)
    assert config.device_id
    unknown = "d" + "0" * 31
    with attestor.client(config, device.tpm) as client:
        # Genuine evidence from an enrolled TPM, presented under an unknown device id.
        evidence = collect_evidence(config, device.tpm, config.device_id,
                                    client.challenge(config.device_id))
        with pytest.raises(AttestorError) as foreign:
            client.attest(unknown, evidence.body)
        client.signer = DeviceSigner(unknown, client.signer.sign)  # type: ignore[union-attr]
        with pytest.raises(AttestorError) as impostor:
            client.challenge(unknown)
    assert (foreign.value.status, _refusal(foreign)) == (403, ["auth.forbidden"])
    assert (impostor.value.status, _refusal(impostor)) == (401, ["auth.invalid"])
    response = httpx.get(f"{attestor.url}/v1/devices/{unknown}",
                         headers={"Authorization": f"Bearer {attestor.token('auditor')}"})
    assert response.status_code == 404 and response.json()["code"] == "device.unknown"
    with attestor.services.session() as session:
        events = queries.audit_events(session)
    assert any(e.action == "auth" and e.outcome == "refused" and e.subject
               and unknown in e.subject for e in events)


def test_event_log_of_another_boot_is_refused(attestor: LiveAttestor, device: Device) -> None:
    """The PCRs are the good boot's; the log the agent sends is a tampered boot's."""
    from agent.sim.boot import boot_events, encode_log

    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, config.device_id,
                                    client.challenge(config.device_id))
        other_log = encode_log(boot_events(tamper="bootloader"), ("sha256",))
        body = dict(evidence.body, event_log=base64.b64encode(other_log).decode())
        with pytest.raises(AttestorError) as refused:
            client.attest(config.device_id, body)
    assert _refusal(refused) == ["eventlog.replay_mismatch"]
    assert "PCR4" in str(refused.value.checks)


def test_missing_event_log_is_refused(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, config.device_id,
                                    client.challenge(config.device_id))
        with pytest.raises(AttestorError) as refused:
            client.attest(config.device_id, dict(evidence.body, event_log=None))
    assert _refusal(refused) == ["eventlog.missing"]


def test_device_that_is_not_active_gets_nothing(attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.services.session() as session, session.begin():
        queries.get_device(session, config.device_id).state = "quarantined"
    with attestor.client(config, device.tpm) as client, pytest.raises(AttestorError) as refused:
        attest_once(config, device.tpm, client, now())
    assert _refusal(refused) == ["device.not_active"]
