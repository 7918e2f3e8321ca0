"""The whole flow over real HTTP against swtpm: enroll, attest, certificate, renew."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store
from tpm2_pytss.tsskey import TSSPrivKey

from agent.attest import attest_once, collect_evidence, workload_public_key
from agent.client import AttestorError
from agent.enroll import provision
from agent.sim.swtpm import Manufacturer
from attestor.db import queries
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public
from tests.harness import Device, LiveAttestor, enroll_and_learn

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_enroll_attest_certificate_renew(attestor: LiveAttestor, device: Device) -> None:
    config = device.config(attestor.url)
    attestor.put_secret("wifi/psk", b"s3cret-value")
    with attestor.client() as client:
        enrolled = provision(config, device.tpm, client, now())

        # Enrollment checked the EK chain and activated the credential.
        with attestor.services.session() as session:
            record = queries.get_device(session, enrolled.device_id)
            actions = [(e.action, e.outcome) for e in queries.audit_events(session)]
        assert record.ek_certificate is not None
        assert ("enrollment.activate", "success") in actions
        devid = x509.load_pem_x509_certificate((config.state_dir / "devid.pem").read_bytes())
        devid_key = public_key(parse_public(device.tpm.read_public(config.devid_handle)))
        assert spki(devid.public_key()) == spki(devid_key)

        # No reference values yet: the quote verifies, the policy cannot pass.
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
        assert refused.value.codes == ["policy.no_reference"]
        attestor.learn(enrolled.device_id, grant=("wifi/psk",))

        issued = attest_once(config, device.tpm, client, now())
        cert = x509.load_pem_x509_certificate((config.state_dir / "cert.pem").read_bytes())
        chain = x509.load_pem_x509_certificates((config.state_dir / "chain.pem").read_bytes())
        root = x509.load_pem_x509_certificate(
            (attestor.settings.ca_dir / "root.pem").read_bytes())
        verified = (PolicyBuilder().store(Store([root])).time(now())
                    .build_client_verifier().verify(cert, chain))
        assert verified.subjects is not None
        assert [u.value for u in verified.subjects] == [
            f"spiffe://edgeproof.local/device/{enrolled.device_id}"]
        lifetime = cert.not_valid_after_utc - now()
        assert dt.timedelta(minutes=58) < lifetime <= dt.timedelta(hours=1)

        # The leaf's key is the TPM key the CSR named (key.pem wraps it for the TPM).
        tpm_key = TSSPrivKey.from_pem((config.state_dir / "key.pem").read_bytes())
        assert spki(cert.public_key()) == spki(workload_public_key(tpm_key))
        assert (config.state_dir / "key.pem").stat().st_mode & 0o777 == 0o600
        assert (config.state_dir / "secrets" / "wifi/psk").read_bytes() == b"s3cret-value"

        renewed = attest_once(config, device.tpm, client, now())
    assert renewed.serial != issued.serial
    cert2 = x509.load_pem_x509_certificate((config.state_dir / "cert.pem").read_bytes())
    assert f"{cert2.serial_number:x}" == renewed.serial


@pytest.mark.pg
def test_flow_on_postgresql(tmp_path: Path, manufacturer: Manufacturer, device: Device,
                            pg_url: str) -> None:
    """The same service on PostgreSQL: enrollment, learning, attestation, replay refused."""
    live = LiveAttestor(tmp_path / "attestor-pg", [manufacturer], database_url=pg_url).start()
    try:
        assert live.services.engine.dialect.name == "postgresql"
        config = enroll_and_learn(live, device)
        assert config.device_id
        with live.client(config, device.tpm) as client:
            challenge = client.challenge(config.device_id)
            evidence = collect_evidence(config, device.tpm, config.device_id, challenge)
            result = client.attest(config.device_id, evidence.body)
            assert result.verdict == "pass"
            with pytest.raises(AttestorError) as replay:
                client.attest(config.device_id, evidence.body)
        assert replay.value.codes == ["nonce.used"]
    finally:
        live.stop()
