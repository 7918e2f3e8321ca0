"""`attestor trust add` while attestors run: the vendor's TPMs enroll at the next request,
on every replica, without a restart; a corrupt file added beside changes nothing else."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.sim.swtpm import Manufacturer
from tests.attestor.test_replicas import Replica
from tests.harness import Device, LiveAttestor, enrollment_body

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def trust_add(data_dir: Path, *files: Path) -> None:
    """The operator's command, as a separate process."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "attestor.cli", "trust", "add", "-d", str(data_dir), "--dev",
         *map(str, files)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def start_enrollment(url: str, body: dict[str, object], headers: dict[str, str]
                     ) -> httpx.Response:
    return httpx.post(f"{url}/v1/enrollments", json=body, headers=headers, timeout=60)


def refused_for(response: httpx.Response) -> list[str]:
    assert response.status_code >= 400, response.text
    return list(response.json()["codes"])


def finish_enrollment(url: str, started: httpx.Response, device: Device) -> None:
    assert started.status_code < 300, started.text
    challenge = started.json()
    secret = device.tpm.activate_credential(base64.b64decode(challenge["credential_blob"]),
                                            base64.b64decode(challenge["encrypted_secret"]))
    done = httpx.post(f"{url}/v1/enrollments/{challenge['enrollment_id']}/activation",
                      json={"secret": base64.b64encode(secret).decode()}, timeout=60)
    assert done.status_code < 300, done.text


@pytest.fixture
def vendor_device(tmp_path: Path, rogue_manufacturer: Manufacturer) -> Iterator[Device]:
    """A TPM from a vendor the attestor does not trust yet."""
    device = Device(rogue_manufacturer, tmp_path / "vendor-device")
    try:
        yield device
    finally:
        device.close()


@pytest.fixture
def untrusting(tmp_path: Path) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", []).start()
    try:
        yield live
    finally:
        live.stop()


def test_a_vendor_root_added_while_running_is_trusted_without_restart(
        untrusting: LiveAttestor, vendor_device: Device, rogue_manufacturer: Manufacturer
) -> None:
    body = enrollment_body(vendor_device.tpm)
    headers = untrusting.enroller_headers
    refused = start_enrollment(untrusting.url, body, headers)
    assert refused_for(refused) == ["ek.chain_untrusted"]

    trust_add(untrusting.settings.data_dir, rogue_manufacturer.root_certificate,
              rogue_manufacturer.intermediate_certificate)
    finish_enrollment(untrusting.url, start_enrollment(untrusting.url, body, headers),
                      vendor_device)


def test_a_corrupt_root_added_while_running_changes_nothing_else(
        attestor: LiveAttestor, device: Device) -> None:
    trusted = attestor.settings.trust_dir
    (trusted / "new-vendor.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n"
                                             b"-----END CERTIFICATE-----\n")
    finish_enrollment(attestor.url, start_enrollment(
        attestor.url, enrollment_body(device.tpm), attestor.enroller_headers), device)
    failures = attestor.services.metrics.registry.get_sample_value(
        "edgeproof_trust_store_load_failures_total", {"reason": "invalid"})
    assert failures == 1
    assert [name for name, _ in attestor.services.trust.rejected] == ["new-vendor.pem"]


@pytest.mark.pg
def test_every_replica_trusts_a_vendor_root_added_while_running(
        tmp_path: Path, pg_url: str, vendor_device: Device,
        rogue_manufacturer: Manufacturer) -> None:
    setup = LiveAttestor(tmp_path / "attestor", [], database_url=pg_url)
    pair = [Replica(tmp_path / "attestor", pg_url, tmp_path / f"replica-{n}.log")
            for n in "ab"]
    try:
        for replica in pair:
            replica.wait_ready()
        body = enrollment_body(vendor_device.tpm)
        headers = setup.enroller_headers
        for replica in pair:
            assert refused_for(start_enrollment(replica.url, body, headers)) == [
                "ek.chain_untrusted"]
        trust_add(tmp_path / "attestor", rogue_manufacturer.root_certificate,
                  rogue_manufacturer.intermediate_certificate)
        started = [start_enrollment(replica.url, body, headers) for replica in pair]
        assert [r.status_code for r in started] == [201, 201], [r.text for r in started]
        finish_enrollment(pair[1].url, started[1], vendor_device)
    finally:
        for replica in pair:
            replica.stop()
        setup.services.engine.dispose()
