"""identity.devid on vectors: HardwareModuleName codec, profile checks, manifests, CSV."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from identity.devid.hwname import (
    HW_TYPE_TPM2,
    HardwareModuleName,
    ek_identifier,
    hardware_module_name,
    tpm_device,
)
from identity.devid.manifest import ManifestEntry, parse_serial_csv, sign_manifest, verify_manifest
from identity.devid.profile import (
    OemCa,
    check_devid_certificate,
    issue,
    profile_problems,
)
from identity.errors import (
    DevIdChainUntrusted,
    DevIdProfileInvalid,
    HardwareModuleNameMalformed,
    HardwareModuleNameMissing,
    ManifestInvalid,
)
from identity.x509.profiles import SigningCa, issuing_ca, root_ca

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DER = serialization.Encoding.DER


def test_hardware_module_name_der() -> None:
    name = tpm_device("SN-1")
    # SEQUENCE { OID 2.23.133.1.2, OCTET STRING "SN-1" }
    assert name.to_der().hex() == "300d060567810501020404534e2d31"
    assert HardwareModuleName.from_der(name.to_der()) == HardwareModuleName(HW_TYPE_TPM2,
                                                                            b"SN-1")


@pytest.mark.parametrize("der", [
    "300d060567810501020404534e2d3100",  # trailing byte
    "30810d060567810501020404534e2d31",  # long-form length: BER, not DER
    "300d06056781050102" "0c04534e2d31",  # hwSerialNum as UTF8String
    "3007060567810501020400",  # empty serial
    "3000",  # nothing inside
])
def test_malformed_hardware_module_names(der: str) -> None:
    with pytest.raises(HardwareModuleNameMalformed):
        HardwareModuleName.from_der(bytes.fromhex(der))


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_are_refused_as_malformed(data: bytes) -> None:
    try:
        name = HardwareModuleName.from_der(data)
    except HardwareModuleNameMalformed:
        return
    assert name.to_der() == data  # whatever parses is canonical


@given(st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 64))
def test_round_trip(serial: str) -> None:
    name = tpm_device(serial)
    assert HardwareModuleName.from_der(name.to_der()) == name


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, OemCa]:
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root = root_ca(root_key, "OEM root", NOW - dt.timedelta(days=1), 3650)
    inter = issuing_ca(SigningCa(root_key, root), key, "OEM issuing", NOW - dt.timedelta(days=1),
                       3650)
    return root, OemCa(key, inter)


def _leaf(ca: tuple[x509.Certificate, OemCa], kind: str, **kw: object) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return issue(ca[1], key, kind=kind, serial="SN-9", organization="OEM", now=NOW,
                 **kw)  # type: ignore[arg-type]


def test_profiles_hold_and_differ(ca: tuple[x509.Certificate, OemCa]) -> None:
    iak, idevid = _leaf(ca, "iak", ek_digest="ab" * 32), _leaf(ca, "idevid")
    assert profile_problems(iak, "iak") == [] and profile_problems(idevid, "idevid") == []
    # An IDevID certificate is never an IAK certificate, and back.
    assert "extendedKeyUsage lacks tcg-kp-AIKCertificate" in profile_problems(idevid, "iak")
    assert "an IDevID certificate carries tcg-kp-AIKCertificate" in profile_problems(iak,
                                                                                    "idevid")
    assert ek_identifier(iak) == "ab" * 32 and ek_identifier(idevid) is None
    assert hardware_module_name(iak) == hardware_module_name(idevid) == tpm_device("SN-9")
    found = check_devid_certificate(iak.public_bytes(DER),
                                    "iak", [ca[0]], [ca[1].cert], NOW)
    assert found.serial == "SN-9" and found.chain[-1] == ca[0]


def test_a_ca_certificate_is_no_idevid(ca: tuple[x509.Certificate, OemCa]) -> None:
    assert "it is a CA certificate" in profile_problems(ca[1].cert, "idevid")


def test_chain_and_time(ca: tuple[x509.Certificate, OemCa]) -> None:
    der = _leaf(ca, "idevid", not_after=NOW + dt.timedelta(days=1)).public_bytes(
        DER)
    with pytest.raises(DevIdChainUntrusted):  # the intermediate is not presented
        check_devid_certificate(der, "idevid", [ca[0]], [], NOW)
    with pytest.raises(DevIdChainUntrusted, match="valid"):  # expired
        check_devid_certificate(der, "idevid", [ca[0]], [ca[1].cert],
                                NOW + dt.timedelta(days=2))
    with pytest.raises(DevIdProfileInvalid):
        check_devid_certificate(b"\x30\x03\x02\x01\x00", "idevid", [ca[0]], [], NOW)


def test_missing_hardware_module_name(ca: tuple[x509.Certificate, OemCa]) -> None:
    cert = _leaf(ca, "idevid")
    without = x509.CertificateBuilder(
        cert.issuer, cert.subject, cert.public_key(), cert.serial_number,  # type: ignore[arg-type]
        cert.not_valid_before_utc, cert.not_valid_after_utc,
        [e for e in cert.extensions if e.oid != x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME],
    ).sign(ca[1].key, hashes.SHA256())
    with pytest.raises(HardwareModuleNameMissing):
        hardware_module_name(without)


def test_manifest_round_trip_and_refusals(ca: tuple[x509.Certificate, OemCa]) -> None:
    entries = [ManifestEntry("SN-1", "a" * 64), ManifestEntry("SN-2", "b" * 64)]
    data = sign_manifest(ca[1].key, ca[1].cert, oem="OEM", batch="b1", issued_at=NOW,
                         devices=entries)
    manifest = verify_manifest(data, [ca[0]], NOW)
    assert manifest.devices == tuple(entries) and manifest.batch == "b1"
    other = root_ca(ec.generate_private_key(ec.SECP256R1()), "OEM root", NOW, 10)
    with pytest.raises(ManifestInvalid, match="signer"):  # another root of the same name
        verify_manifest(data, [other], NOW)
    with pytest.raises(ManifestInvalid, match="signer"):  # signed before the signer was valid
        verify_manifest(data, [ca[0]], NOW - dt.timedelta(days=3))
    twice = sign_manifest(ca[1].key, ca[1].cert, oem="OEM", batch="b1", issued_at=NOW,
                          devices=[entries[0], entries[0]])
    with pytest.raises(ManifestInvalid, match="twice"):
        verify_manifest(twice, [ca[0]], NOW)
    with pytest.raises(ManifestInvalid, match="parse"):
        verify_manifest(b"{not json", [ca[0]], NOW)


def test_serial_csv() -> None:
    assert [e.serial for e in parse_serial_csv("serial,model\nSN-1,x\n\nSN-2\n")] == [
        "SN-1", "SN-2"]
    with pytest.raises(ManifestInvalid):
        parse_serial_csv("SN-1\nSN-1\n")
    with pytest.raises(ManifestInvalid):
        parse_serial_csv("SN\x00-1\n")
