"""Ownership bound to one manufacturer root, on swtpm: the owner trusts two OEMs (two
product lines) and owns a serial by a CSV for OEM A; OEM B (or whoever holds its issuing
key) makes a TPM into that serial. Trusting B's root must not let B's device onboard
it (docs/onboarding.md: root binding)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.oem.ca import OemAuthority
from agent.oem.provision import provision, record
from agent.sim.swtpm import Manufacturer
from attestor.db.ownership_models import Ownership
from identity.devid.evidence import spki_sha256
from identity.devid.manifest import certificate_sha256
from identity.devid.profile import issue
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public
from tests.e2e.onboarding import (
    ask_challenge,
    codes,
    evidence,
    factory,
    import_roots,
    import_serials,
    now,
    oem,
    post,
    vendors,
)
from tests.harness import Device, LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.adversarial]
BOTH_DATABASES = True
DER = serialization.Encoding.DER


@pytest.fixture
def two_oems(attestor: LiveAttestor, tmp_path: Path) -> tuple[OemAuthority, OemAuthority]:
    """OEM A and OEM B, both imported by the owner."""
    a, b = oem(tmp_path / "oem-a", "Acme Devices"), oem(tmp_path / "oem-b", "Rival Devices")
    import_roots(attestor, a)
    import_roots(attestor, b)
    return a, b


def _nv(device: Device) -> tuple[bytes, bytes, list[bytes]]:
    from agent.onboard import oem_identity

    return oem_identity(device.tpm)


def _onboarded(attestor: LiveAttestor, device: Device) -> None:
    _, request = evidence(attestor, device)
    answer = post(attestor, "/v1/onboarding", request)
    assert answer.status_code == 201, answer.text


def test_another_oems_device_cannot_onboard_a_serial_owned_for_oem_a(
        attestor: LiveAttestor, device: Device, other_device: Device,
        manufacturer: Manufacturer, two_oems: tuple[OemAuthority, OemAuthority],
        tmp_path: Path) -> None:
    """The CSV carries no IDevID fingerprint: before root binding, B's TPM naming the
    serial onboarded first (any imported root was trusted for every serial)."""
    a, b = two_oems
    record(tmp_path / "forged", provision(other_device.tpm, b, vendors(manufacturer),
                                          device.serial, now()))
    factory(device, manufacturer, a, tmp_path / "genuine")
    assert import_serials(attestor, a, device.serial).status_code == 201

    _, forged_idevid, chain = _nv(other_device)
    answer = ask_challenge(attestor, forged_idevid, chain)
    assert answer.status_code == 403, answer.text
    assert codes(answer) == ["onboarding.wrong_manufacturer"]
    assert certificate_sha256(a.root) in answer.json()["detail"]
    with attestor.services.session() as session:
        row = session.get(Ownership, device.serial)
        assert row is not None and row.state == "owned"
    _onboarded(attestor, device)  # the genuine device, provisioned by OEM A, onboards


def test_an_iak_certificate_from_another_oem_is_refused(
        attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
        two_oems: tuple[OemAuthority, OemAuthority], tmp_path: Path) -> None:
    """OEM A's IDevID gets the challenge, but the IAK certificate is OEM B's, issued
    for the same IAK, serial and EK: both chains must end at the record's root."""
    a, b = two_oems
    factory(device, manufacturer, a, tmp_path / "genuine")
    assert import_serials(attestor, a, device.serial).status_code == 201
    iak = x509.load_der_x509_certificate(_nv(device)[0])
    ek = public_key(parse_public(device.tpm.endorsement().public))
    forged = issue(b.issuing, iak.public_key(), kind="iak",  # type: ignore[arg-type]
                   serial=device.serial, organization="Rival Devices", now=now(),
                   ek_digest=spki_sha256(ek)).public_bytes(DER)
    _, request = evidence(attestor, device, iak_cert=forged)
    answer = post(attestor, "/v1/onboarding", request)
    assert answer.status_code == 403 and codes(answer) == ["onboarding.wrong_manufacturer"], \
        answer.text
    _onboarded(attestor, device)


def test_an_import_never_rebinds_a_serial_to_another_root(
        attestor: LiveAttestor, device: Device, other_device: Device,
        manufacturer: Manufacturer, two_oems: tuple[OemAuthority, OemAuthority],
        tmp_path: Path) -> None:
    a, b = two_oems
    record(tmp_path / "forged", provision(other_device.tpm, b, vendors(manufacturer),
                                          device.serial, now()))
    assert import_serials(attestor, a, device.serial).status_code == 201
    again = import_serials(attestor, b, device.serial)
    assert again.status_code == 201 and again.json()["kept_conflicting"] == [device.serial]
    _, forged_idevid, chain = _nv(other_device)
    assert codes(ask_challenge(attestor, forged_idevid, chain)) == [
        "onboarding.wrong_manufacturer"]


def test_a_record_from_before_root_binding_is_refused_until_imported_again(
        attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
        two_oems: tuple[OemAuthority, OemAuthority], tmp_path: Path) -> None:
    """Migration 0008 leaves records unbound when two roots were imported: they are
    refused with a reason that tells the owner what to do, not guessed."""
    a, _ = two_oems
    factory(device, manufacturer, a, tmp_path / "genuine")
    assert import_serials(attestor, a, device.serial).status_code == 201
    with attestor.services.session() as session, session.begin():
        row = session.get(Ownership, device.serial)
        assert row is not None
        row.root_sha256 = None  # as migration 0008 leaves it
        session.add(row)
    _, idevid, chain = _nv(device)
    answer = ask_challenge(attestor, idevid, chain)
    assert answer.status_code == 403 and codes(answer) == ["onboarding.manufacturer_unbound"]
    assert "import it again" in answer.json()["detail"]
    again = import_serials(attestor, a, device.serial)
    assert again.status_code == 201 and again.json()["updated"] == 1
    _onboarded(attestor, device)


def test_a_manifest_binds_its_serials_to_the_root_its_signer_chains_to(
        attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
        two_oems: tuple[OemAuthority, OemAuthority], tmp_path: Path) -> None:
    from tests.e2e.onboarding import import_manifest

    a, _ = two_oems
    factory(device, manufacturer, a, tmp_path / "genuine")
    assert import_manifest(attestor, a, tmp_path / "genuine").status_code == 201
    with attestor.services.session() as session:
        row = session.get(Ownership, device.serial)
        assert row is not None and row.root_sha256 == certificate_sha256(a.root)


