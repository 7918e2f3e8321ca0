"""Zero-touch onboarding end to end on swtpm over real HTTP: OEM provisioning, signed
batch manifest, owner import, first boot with no API key, first attestation, certificate."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography import x509

from agent.attest import attest_once
from agent.client import AttestorError
from agent.onboard import onboard
from agent.sim.swtpm import Manufacturer
from attestor.db import queries
from tests.e2e.onboarding import factory, import_manifest, import_roots, now, oem
from tests.harness import Device, LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True


@pytest.mark.parametrize("algorithm", ["ecc256", "rsa2048"])
def test_oem_to_first_attestation_without_a_station(
        attestor: LiveAttestor, device: Device, manufacturer: Manufacturer, tmp_path: Path,
        algorithm: str, database: str) -> None:
    authority = oem(tmp_path / "oem")
    provisioned = factory(device, manufacturer, authority, tmp_path / "batch-7", algorithm)
    import_roots(attestor, authority, issuing=algorithm == "ecc256")  # RSA: chain from NV
    imported = import_manifest(attestor, authority, tmp_path / "batch-7", "gateways")
    assert imported.status_code == 201, imported.text
    assert imported.json() == {"created": 1, "updated": 0, "already_onboarded": [],
                               "kept_revoked": [], "kept_conflicting": []}

    config = device.config(attestor.url)
    with attestor.client(api_key=None) as client:  # no station, no API key
        enrolled, answer = onboard(config, device.tpm, client, now())
    assert answer.serial == device.serial and answer.device_class == "gateways"
    ldevid = x509.load_pem_x509_certificate((config.state_dir / "devid.pem").read_bytes())
    assert ldevid.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value \
        == device.serial
    with attestor.services.session() as session:
        record = queries.get_device(session, enrolled.device_id)
        actions = [(e.action, e.outcome) for e in queries.audit_events(session)]
    assert record.device_class == "gateways" and record.serial == device.serial
    assert ("ownership.import", "success") in actions
    assert ("onboarding.complete", "success") in actions
    listed = httpx.get(f"{attestor.url}/v1/ownership", headers=attestor.headers("auditor"))
    row = listed.json()[0]
    assert (row["state"], row["device_id"]) == ("onboarded", enrolled.device_id)
    assert row["idevid_sha256"] == provisioned.idevid_sha256

    # The normal first attestation follows, signed with the LDevID, quoted by the LAK.
    with attestor.client(config, device.tpm, api_key=None) as client:
        with pytest.raises(AttestorError) as refused:
            attest_once(config, device.tpm, client, now())
        assert refused.value.codes == ["policy.no_reference"]
        attestor.learn(enrolled.device_id)
        attest_once(config, device.tpm, client, now())
    cert = x509.load_pem_x509_certificate((config.state_dir / "cert.pem").read_bytes())
    assert enrolled.device_id in cert.subject.rfc4514_string()
