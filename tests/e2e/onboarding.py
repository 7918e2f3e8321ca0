"""Helpers for the onboarding tests: an OEM with its CA, provisioning a device's swtpm,
and the owner's imports through the real API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx

from agent.oem.ca import OemAuthority, init_ca
from agent.oem.provision import Provisioned, batch_manifest, provision, record
from agent.sim.swtpm import Manufacturer
from identity.truststore import TrustStore
from tests.harness import Device, LiveAttestor


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def oem(directory: Path, name: str = "Acme Devices") -> OemAuthority:
    # A CA made "now" must already be valid for the device's certificates made now.
    return init_ca(directory, name, now() - dt.timedelta(minutes=1))


def vendors(maker: Manufacturer) -> TrustStore:
    return TrustStore.from_blobs([("root", maker.root_certificate.read_bytes()),
                                  ("issuer", maker.intermediate_certificate.read_bytes())])


def factory(device: Device, maker: Manufacturer, authority: OemAuthority, batch: Path,
            algorithm: str = "ecc256") -> Provisioned:
    done = provision(device.tpm, authority, vendors(maker), device.serial, now(), algorithm)
    record(batch, done)
    return done


def import_roots(attestor: LiveAttestor, authority: OemAuthority) -> None:
    pem = (authority.directory / "root.pem").read_text() + \
        (authority.directory / "issuing.pem").read_text()
    answer = httpx.post(f"{attestor.url}/v1/ownership/roots", json={"certificates": pem},
                        headers=attestor.headers("admin"))
    assert answer.status_code == 201, answer.text


def import_manifest(attestor: LiveAttestor, authority: OemAuthority, batch: Path,
                    device_class: str = "default") -> httpx.Response:
    manifest = batch_manifest(authority, batch, now()).decode()
    return httpx.post(f"{attestor.url}/v1/ownership/manifests",
                      json={"manifest": manifest, "device_class": device_class},
                      headers=attestor.headers("admin"))
