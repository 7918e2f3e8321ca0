"""The OEM tool on swtpm: `edgeproof-oem init-ca / provision / manifest`, what it leaves
in the TPM, and the IAK/IDevID certificates read extension by extension."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID
from typer.testing import CliRunner

from agent.oem.cli import app
from agent.sim.swtpm import Manufacturer
from agent.tpm.devid import read_nv
from identity.devid.evidence import fingerprint, spki_sha256
from identity.devid.keys import (
    DEVID_CHAIN_NV,
    IAK_CERT_NV,
    IAK_HANDLE,
    IDEVID_CERT_NV,
    IDEVID_HANDLE,
    check_iak_public,
    check_idevid_public,
)
from identity.devid.manifest import verify_manifest
from identity.devid.profile import profile_problems, verify_chain
from identity.errors import ManifestInvalid
from identity.tpm.ak import FIXED_PARENT, FIXED_TPM, RESTRICTED, SIGN
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public
from tests.harness import Device

pytestmark = [pytest.mark.tpm]
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def provisioned(device: Device, manufacturer: Manufacturer, tmp_path: Path) -> Path:
    """The OEM CLI run against ``device``'s TPM: CA, provisioning, signed manifest."""
    ca, batch = tmp_path / "oem", tmp_path / "batch-2026-12"
    runner = CliRunner()
    done = runner.invoke(app, ["init-ca", "--ca-dir", str(ca), "--organization", "Acme"])
    assert done.exit_code == 0, done.output
    with device.released():
        done = runner.invoke(app, [
            "provision", "--ca-dir", str(ca), "--tcti", device.tcti, "--serial", device.serial,
            "--batch", str(batch), "--ek-ca", str(manufacturer.root_certificate),
            "--ek-ca", str(manufacturer.intermediate_certificate)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["manifest", "--ca-dir", str(ca), "--batch", str(batch),
                               "--out", str(tmp_path / "manifest.json")])
    assert done.exit_code == 0, done.output
    return tmp_path


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(oid)


class _Hwn(core.Sequence):  # an independent decoder of RFC 4108's structure
    _fields = [("hw_type", core.ObjectIdentifier), ("hw_serial_num", core.OctetString)]


class _PermId(core.Sequence):  # RFC 4043
    _fields = [("identifier_value", core.UTF8String, {"optional": True}),
               ("assigner", core.ObjectIdentifier, {"optional": True})]


def _common_fields(cert: x509.Certificate, issuing: x509.Certificate, serial: str) -> None:
    assert cert.version == x509.Version.v3
    assert cert.issuer == issuing.subject
    assert [(a.oid, a.value) for a in cert.subject] == [
        (NameOID.ORGANIZATION_NAME, "Acme"), (NameOID.SERIAL_NUMBER, serial),
        (NameOID.COMMON_NAME, cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
         .value)]
    assert cert.not_valid_after_utc == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    assert 64 <= cert.serial_number.bit_length() <= 160
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value == x509.BasicConstraints(ca=False, path_length=None)
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value == x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)
    ski = _ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    aki = _ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == _ext(issuing, ExtensionOID.SUBJECT_KEY_IDENTIFIER) \
        .value.digest  # type: ignore[attr-defined]


def test_iak_and_idevid_certificates_field_by_field(provisioned: Path, device: Device) -> None:
    iak_der, idevid_der = read_nv(device.tpm, IAK_CERT_NV), read_nv(device.tpm, IDEVID_CERT_NV)
    chain = read_nv(device.tpm, DEVID_CHAIN_NV)
    assert iak_der and idevid_der and chain
    iak, idevid = x509.load_der_x509_certificate(iak_der), x509.load_der_x509_certificate(
        idevid_der)
    issuing = x509.load_der_x509_certificate(chain)
    root = x509.load_pem_x509_certificate((provisioned / "oem" / "root.pem").read_bytes())
    for cert in (iak, idevid):  # cryptography's X.509 verifier, to the OEM root
        assert verify_chain(cert, [root], [issuing], now(), "test")[-1] == root
        _common_fields(cert, issuing, device.serial)
    assert profile_problems(iak, "iak") == [] and profile_problems(idevid, "idevid") == []

    # IAK: tcg-kp-AIKCertificate, three verified-TPM policies, HardwareModuleName + EK id
    eku = _ext(iak, ExtensionOID.EXTENDED_KEY_USAGE)
    assert not eku.critical and list(eku.value) == [  # type: ignore[call-overload]
        x509.ObjectIdentifier("2.23.133.8.3")]
    policies = [p.policy_identifier.dotted_string for p in _ext(
        iak, ExtensionOID.CERTIFICATE_POLICIES).value]  # type: ignore[attr-defined]
    assert policies == ["2.23.133.11.1.1", "2.23.133.11.1.2", "2.23.133.11.1.3"]
    san = _ext(iak, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert not san.critical
    names = {n.type_id.dotted_string: n.value for n in san.value  # type: ignore[attr-defined]
             if isinstance(n, x509.OtherName)}
    assert len(list(san.value)) == 2  # type: ignore[call-overload]
    hwn = _Hwn.load(names["1.3.6.1.5.5.7.8.4"])
    assert hwn["hw_type"].dotted == "2.23.133.1.2"
    assert hwn["hw_serial_num"].native == device.serial.encode()
    perm = _PermId.load(names["1.3.6.1.5.5.7.8.3"])
    assert perm["assigner"].dotted == "2.23.133.12.1"
    ek_key = public_key(parse_public(device.tpm.endorsement().public))
    assert perm["identifier_value"].native == spki_sha256(ek_key)

    # IDevID: no EKU, two policies, the same HardwareModuleName only
    with pytest.raises(x509.ExtensionNotFound):
        _ext(idevid, ExtensionOID.EXTENDED_KEY_USAGE)
    policies = [p.policy_identifier.dotted_string for p in _ext(
        idevid, ExtensionOID.CERTIFICATE_POLICIES).value]  # type: ignore[attr-defined]
    assert policies == ["2.23.133.11.1.1", "2.23.133.11.1.2"]
    only = list(_ext(idevid, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value)  # type: ignore[call-overload]
    assert len(only) == 1 and only[0].value == names["1.3.6.1.5.5.7.8.4"]

    # The certified keys are the TPM's, at the spec's handles, with the spec's attributes.
    iak_key = check_iak_public(device.tpm.read_public(IAK_HANDLE))
    idevid_key = check_idevid_public(device.tpm.read_public(IDEVID_HANDLE))
    assert iak_key.attributes & (RESTRICTED | SIGN | FIXED_TPM | FIXED_PARENT) == (
        RESTRICTED | SIGN | FIXED_TPM | FIXED_PARENT)
    assert not idevid_key.attributes & RESTRICTED
    assert spki_sha256(iak_key.key) == spki_sha256(iak.public_key())  # type: ignore[arg-type]
    assert spki_sha256(idevid_key.key) == spki_sha256(idevid.public_key())  # type: ignore[arg-type]


def test_signed_manifest_lists_the_batch(provisioned: Path, device: Device) -> None:
    root = x509.load_pem_x509_certificate((provisioned / "oem" / "root.pem").read_bytes())
    data = (provisioned / "manifest.json").read_bytes()
    manifest = verify_manifest(data, [root], now())
    idevid = read_nv(device.tpm, IDEVID_CERT_NV)
    assert idevid is not None
    assert [(e.serial, e.idevid_sha256) for e in manifest.devices] == [
        (device.serial, fingerprint(idevid))]
    assert manifest.batch == "batch-2026-12" and manifest.oem == "Acme"

    # a serial added to the signed payload: the signature no longer holds
    outer = json.loads(data)
    import base64

    body = json.loads(base64.b64decode(outer["manifest"]))
    body["devices"].append({"serial": "SN-STOLEN", "idevid_sha256": "0" * 64})
    outer["manifest"] = base64.b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(ManifestInvalid, match="signature"):
        verify_manifest(json.dumps(outer).encode(), [root], now())
    # a manifest signed by a CA the owner never imported
    with pytest.raises(ManifestInvalid, match="signer"):
        verify_manifest(data, [x509.load_der_x509_certificate(read_nv(  # type: ignore[arg-type]
            device.tpm, IAK_CERT_NV))], now())


def test_provisioning_refuses_a_tpm_from_an_untrusted_vendor(
        device: Device, rogue_manufacturer: Manufacturer, tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["init-ca", "--ca-dir", str(tmp_path / "oem"), "--organization", "Acme"])
    with device.released():
        done = runner.invoke(app, [
            "provision", "--ca-dir", str(tmp_path / "oem"), "--tcti", device.tcti,
            "--serial", device.serial, "--batch", str(tmp_path / "b"),
            "--ek-ca", str(rogue_manufacturer.root_certificate)])
    assert done.exit_code == 3 and "ek.chain_untrusted" in done.output
    assert not (tmp_path / "b").exists()
