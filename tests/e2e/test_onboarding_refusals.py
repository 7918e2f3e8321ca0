"""Each onboarding refusal, produced on swtpm by a realistic forgery, with its own code."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from agent.oem.ca import OemAuthority
from agent.onboard import onboard
from agent.sim.swtpm import Manufacturer
from agent.tpm.devid import create_devid_key
from identity.devid.evidence import spki_sha256
from identity.devid.hwname import HARDWARE_MODULE_NAME
from identity.devid.keys import BASE_ATTRIBUTES, IAK_HANDLE, KeyTemplate
from identity.devid.profile import issue
from identity.messages import SignedAttest
from identity.tpm.ak import FIXED_PARENT, FIXED_TPM, RESTRICTED, SENSITIVE_DATA_ORIGIN
from tests.e2e.onboarding import (
    ask_challenge,
    codes,
    evidence,
    factory,
    import_manifest,
    import_roots,
    import_serials,
    now,
    oem,
    post,
    refused,
)
from tests.harness import Device, LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.adversarial]
DER = serialization.Encoding.DER




def test_idevid_of_another_device(attestor: LiveAttestor, owned: Device, other_device: Device,
                                  manufacturer: Manufacturer, authority: OemAuthority,
                                  tmp_path: Path) -> None:
    """Device A's TPM claims device B's identity with B's (public) IDevID certificate."""
    factory(other_device, manufacturer, authority, tmp_path / "batch")
    assert import_manifest(attestor, authority, tmp_path / "batch").status_code == 201
    from agent.onboard import oem_identity

    _, b_idevid, _ = oem_identity(other_device.tpm)
    _, request = evidence(attestor, owned, idevid_cert=b_idevid)
    assert "devid.tpm_mismatch" in refused(attestor, request)


def test_iak_certificate_from_an_untrusted_ca(attestor: LiveAttestor, owned: Device,
                                              tmp_path: Path) -> None:
    """An IAK certificate for the device's own IAK, but signed by a rogue 'OEM'."""
    rogue = oem(tmp_path / "rogue", "Acme Devices")
    iak = x509.load_der_x509_certificate(evidence_certs(owned)[0])
    forged = issue(rogue.issuing, iak.public_key(), kind="iak",  # type: ignore[arg-type]
                   serial=owned.serial, organization="Acme Devices", now=now(),
                   ek_digest=ek_digest(owned)).public_bytes(DER)
    _, request = evidence(attestor, owned, iak_cert=forged)
    assert "devid.chain_untrusted" in refused(attestor, request)


def test_expired_iak_certificate(attestor: LiveAttestor, owned: Device,
                                 authority: OemAuthority) -> None:
    iak = x509.load_der_x509_certificate(evidence_certs(owned)[0])
    short = issue(authority.issuing, iak.public_key(), kind="iak",  # type: ignore[arg-type]
                  serial=owned.serial, organization=authority.organization, now=now(),
                  not_after=now() + dt.timedelta(minutes=5),
                  ek_digest=ek_digest(owned)).public_bytes(DER)
    attestor.clock.offset = dt.timedelta(hours=1)
    _, request = evidence(attestor, owned, iak_cert=short)
    assert "devid.chain_untrusted" in refused(attestor, request)


def _sloppy_idevid(authority: OemAuthority, owned: Device,
                   sans: list[x509.GeneralName] | None) -> bytes:
    """What a misconfigured factory line issues: the IDevID profile, but its SAN lacks a
    (well-formed) HardwareModuleName."""
    good = x509.load_der_x509_certificate(evidence_certs(owned)[1])
    builder = (x509.CertificateBuilder().subject_name(good.subject)
               .issuer_name(good.issuer).public_key(good.public_key())  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number())
               .not_valid_before(good.not_valid_before_utc)
               .not_valid_after(good.not_valid_after_utc))
    for ext in good.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            if sans is not None:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
            continue
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(authority.issuing.key, hashes.SHA256()).public_bytes(DER)


@pytest.mark.parametrize(("sans", "code"), [
    (None, "devid.hwname_missing"),
    ([x509.DNSName("sn-1.devices.example")], "devid.hwname_missing"),
    # hwSerialNum as UTF8String instead of OCTET STRING: an encoder's classic slip
    ([x509.OtherName(HARDWARE_MODULE_NAME, bytes.fromhex("300d06056781050102") +
                     b"\x0c\x04SN-1")], "devid.hwname_malformed"),
])
def test_hardware_module_name_missing_or_malformed(
        attestor: LiveAttestor, owned: Device, authority: OemAuthority,
        sans: list[x509.GeneralName] | None, code: str) -> None:
    _, _, chain = owned_identity(owned)
    answer = ask_challenge(attestor, _sloppy_idevid(authority, owned, sans), chain)
    assert answer.status_code == 403 and codes(answer) == [code], answer.text


def test_serial_not_owned(attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
                          authority: OemAuthority, tmp_path: Path) -> None:
    """A genuine device of the same OEM, from a batch this owner never bought."""
    factory(device, manufacturer, authority, tmp_path / "someone-elses-batch")
    import_roots(attestor, authority)
    _, idevid, chain = owned_identity(device)
    answer = ask_challenge(attestor, idevid, chain)
    assert codes(answer) == ["onboarding.serial_not_owned"]
    with pytest.raises(Exception, match="serial_not_owned"):
        onboard(device.config(attestor.url), device.tpm, attestor.client(api_key=None), now())


def test_ownership_revoked(attestor: LiveAttestor, owned: Device) -> None:
    answer = httpx.post(f"{attestor.url}/v1/ownership/{owned.serial}/revoke",
                        headers=attestor.headers("admin"))
    assert answer.status_code == 200 and answer.json()["state"] == "revoked"
    _, idevid, chain = owned_identity(owned)
    assert codes(ask_challenge(attestor, idevid, chain)) == ["onboarding.ownership_revoked"]


@pytest.mark.parametrize("attributes", [
    BASE_ATTRIBUTES,  # not restricted: it could sign forged TPMS_ATTEST structures
    (BASE_ATTRIBUTES | RESTRICTED) & ~(FIXED_TPM | FIXED_PARENT),  # duplicable
])
def test_iak_attributes_wrong(attestor: LiveAttestor, owned: Device, authority: OemAuthority,
                              attributes: int) -> None:
    """A factory line that certified a key made from the wrong template as the IAK."""
    if not attributes & FIXED_TPM:
        attributes |= SENSITIVE_DATA_ORIGIN
    public = create_devid_key(owned.tpm, KeyTemplate("bad IAK", "ecc256:ecdsa-sha256:null",
                                                     attributes, b"IAK"), IAK_HANDLE)
    from identity.tpm.keys import public_key
    from identity.tpm.structures import parse_public

    cert = issue(authority.issuing, public_key(parse_public(public)), kind="iak",
                 serial=owned.serial, organization=authority.organization, now=now(),
                 ek_digest=ek_digest(owned)).public_bytes(DER)
    _, request = evidence(attestor, owned, iak_cert=cert)
    assert "devid.iak_attributes_invalid" in refused(attestor, request)


def test_idevid_certified_by_another_iak(attestor: LiveAttestor, owned: Device,
                                         other_device: Device, manufacturer: Manufacturer,
                                         authority: OemAuthority, tmp_path: Path) -> None:
    """The certify of the IDevID comes from another genuine TPM's IAK."""
    factory(other_device, manufacturer, authority, tmp_path / "other-batch")
    challenge, request = evidence(attestor, owned)
    from agent.onboard import build_request
    from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE

    other_device.tpm.ensure_srk(SRK_HANDLE)
    other_device.tpm.create_ak(AK_HANDLE, SRK_HANDLE)
    other_device.tpm.create_devid(DEVID_HANDLE, SRK_HANDLE)
    theirs = build_request(other_device.tpm, challenge, b"", b"", [], ek_public=b"",  # type: ignore[arg-type]
                           srk_public=None, lak_handle=AK_HANDLE, ldevid_handle=DEVID_HANDLE)
    forged = msgspec.structs.replace(request, idevid_certify=SignedAttest(  # type: ignore[type-var]
        attest=theirs.idevid_certify.attest, signature=theirs.idevid_certify.signature))
    found = refused(attestor, forged)
    assert "devid.idevid_certify_invalid" in found and "certify.signature_invalid" in found


def test_replayed_onboarding(attestor: LiveAttestor, owned: Device) -> None:
    _, request = evidence(attestor, owned)
    first = post(attestor, "/v1/onboarding", request)
    assert first.status_code == 201, first.text
    assert refused(attestor, request) == ["onboarding.challenge_replayed"]


def test_onboarding_twice_needs_a_release(attestor: LiveAttestor, owned: Device) -> None:
    config = owned.config(attestor.url)
    with attestor.client(api_key=None) as client:
        first, _ = onboard(config, owned.tpm, client, now())
        shutil.rmtree(config.state_dir)  # the device is re-imaged, or cloned
        again = owned.config(attestor.url)
        with pytest.raises(Exception, match="already_onboarded"):
            onboard(again, owned.tpm, client, now())
        released = httpx.post(f"{attestor.url}/v1/ownership/{owned.serial}/release",
                              headers=attestor.headers("admin"))
        assert released.json()["state"] == "owned"
        second, _ = onboard(again, owned.tpm, client, now())
    assert second.device_id == first.device_id
    with attestor.services.session() as session:
        from attestor.db import queries

        entries = [(e.action, e.outcome, list(e.reasons))
                   for e in queries.audit_events(session)]
    assert ("onboarding.challenge", "refused", ["onboarding.already_onboarded"]) in entries
    assert ("ownership.release", "success", []) in entries


# helpers -------------------------------------------------------------------------------

def owned_identity(device: Device) -> tuple[bytes, bytes, list[bytes]]:
    from agent.onboard import oem_identity

    return oem_identity(device.tpm)


def evidence_certs(device: Device) -> tuple[bytes, bytes]:
    iak, idevid, _ = owned_identity(device)
    return iak, idevid


def ek_digest(device: Device) -> str:
    from identity.tpm.keys import public_key
    from identity.tpm.structures import parse_public

    return spki_sha256(public_key(parse_public(device.tpm.endorsement().public)))



def test_idevid_signature_by_another_key(attestor: LiveAttestor, owned: Device) -> None:
    """The nonce and new keys 'signed' with the new LDevID instead of the IDevID."""
    from agent.tpm.device import DEVID_HANDLE
    from agent.tpm.devid import sign
    from identity.devid.evidence import idevid_binding
    from identity.tpm.structures import object_name, parse_public

    challenge, request = evidence(attestor, owned)
    names = [object_name(parse_public(p)) for p in (request.lak_public,  # type: ignore[attr-defined]
                                                    request.ldevid_public)]  # type: ignore[attr-defined]
    wrong = sign(owned.tpm, DEVID_HANDLE, idevid_binding(challenge.nonce, *names))  # type: ignore[attr-defined]
    forged = msgspec.structs.replace(request, idevid_signature=wrong)  # type: ignore[type-var]
    assert refused(attestor, forged) == ["devid.idevid_signature_invalid"]


def test_idevid_attributes_wrong(attestor: LiveAttestor, device: Device,
                                 manufacturer: Manufacturer, authority: OemAuthority,
                                 tmp_path: Path) -> None:
    """A factory line that certified a duplicable key as the IDevID (owned by a CSV of
    serials, which names no certificate: else the manifest's fingerprint refuses it
    first, as onboarding.serial_not_owned; and an import never drops a fingerprint)."""
    factory(device, manufacturer, authority, tmp_path / "batch")
    import_roots(attestor, authority)
    owned = device
    assert import_serials(attestor, authority, owned.serial).status_code == 201
    from identity.devid.keys import IDEVID_HANDLE
    from identity.tpm.keys import public_key
    from identity.tpm.structures import parse_public

    attributes = BASE_ATTRIBUTES & ~(FIXED_TPM | FIXED_PARENT)
    public = create_devid_key(owned.tpm, KeyTemplate("bad IDevID", "ecc256:ecdsa-sha256:null",
                                                     attributes, b"IDEVID"), IDEVID_HANDLE)
    cert = issue(authority.issuing, public_key(parse_public(public)), kind="idevid",
                 serial=owned.serial, organization=authority.organization,
                 now=now()).public_bytes(DER)
    _, request = evidence(attestor, owned, idevid_cert=cert)
    assert "devid.idevid_attributes_invalid" in refused(attestor, request)


def test_unknown_and_expired_challenges(attestor: LiveAttestor, owned: Device) -> None:
    _, request = evidence(attestor, owned)
    unknown = msgspec.structs.replace(request, challenge_id="x" * 24)  # type: ignore[type-var]
    assert refused(attestor, unknown) == ["onboarding.challenge_unknown"]
    attestor.clock.offset = dt.timedelta(hours=1)  # the device answers too late
    assert refused(attestor, request) == ["onboarding.challenge_expired"]


def test_idevid_certificate_not_the_one_in_the_manifest(
        attestor: LiveAttestor, owned: Device, authority: OemAuthority) -> None:
    """A second IDevID certificate for the same serial (a cloned serial, or a leaked OEM
    issuing key): the manifest names the first one's SHA-256, so it is not owned."""
    other_key = x509.load_der_x509_certificate(evidence_certs(owned)[0]).public_key()
    clone = issue(authority.issuing, other_key, kind="idevid",  # type: ignore[arg-type]
                  serial=owned.serial, organization=authority.organization,
                  now=now()).public_bytes(DER)
    _, _, chain = owned_identity(owned)
    answer = ask_challenge(attestor, clone, chain)
    assert codes(answer) == ["onboarding.serial_not_owned"] and "another IDevID" in answer.text


def test_edge_agent_onboard_command(attestor: LiveAttestor, owned: Device) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    args = ["onboard", "--attestor", attestor.url, "--tcti", owned.tcti, "--state-dir",
            str(owned.root / "state")]
    with owned.released():
        done = CliRunner().invoke(app, args)
    assert done.exit_code == 0 and "onboarded" in done.output, done.output
    assert (owned.root / "state" / "devid.pem").exists()
    with owned.released():
        again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already enrolled" in again.output


def test_iak_certificate_with_the_idevid_profile(attestor: LiveAttestor, owned: Device,
                                                 authority: OemAuthority) -> None:
    """The IAK's key, certified under the IDevID profile (no tcg-kp-AIKCertificate, no
    verifiedTPMRestricted): the OEM never vouched that it is an attestation key."""
    iak = x509.load_der_x509_certificate(evidence_certs(owned)[0])
    swapped = issue(authority.issuing, iak.public_key(), kind="idevid",  # type: ignore[arg-type]
                    serial=owned.serial, organization=authority.organization,
                    now=now()).public_bytes(DER)
    _, request = evidence(attestor, owned, iak_cert=swapped)
    assert "devid.profile_invalid" in refused(attestor, request)


def test_a_removed_manufacturer_root_is_no_longer_trusted(attestor: LiveAttestor,
                                                          owned: Device) -> None:
    admin = attestor.headers("admin")
    roots = httpx.get(f"{attestor.url}/v1/ownership/roots", headers=admin).json()
    for root in roots:
        gone = httpx.delete(f"{attestor.url}/v1/ownership/roots/{root['sha256']}",
                            headers=admin)
        assert gone.status_code == 204
    assert httpx.get(f"{attestor.url}/v1/ownership/roots", headers=admin).json() == []
    _, idevid, chain = owned_identity(owned)
    assert codes(ask_challenge(attestor, idevid, chain)) == ["devid.chain_untrusted"]
