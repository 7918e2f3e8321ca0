"""EK certificate chains and the TCG EK profile, on swtpm-manufactured and real certificates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.swtpm import Manufacturer, SwtpmProcess
from agent.tpm.device import Tpm
from identity.ekcert import (
    TrustStore,
    check_ek_matches,
    check_ek_profile,
    verify_ek_certificate,
)
from identity.errors import EkChainUntrusted, EkKeyMismatch, EkProfileInvalid
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Ek:
    certificate: bytes
    public: bytes


def _read_ek(maker: Manufacturer, directory: Path) -> Ek:
    maker.manufacture(directory)
    with SwtpmProcess(directory) as proc, Tpm(proc.tcti) as tpm:
        endorsement = tpm.endorsement()
    assert endorsement.certificate is not None
    return Ek(endorsement.certificate, endorsement.public)


@pytest.fixture(scope="module")
def eks(manufacturer: Manufacturer, rogue_manufacturer: Manufacturer,
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ek]:
    base = tmp_path_factory.mktemp("eks")
    return {"a": _read_ek(manufacturer, base / "a"), "b": _read_ek(manufacturer, base / "b"),
            "rogue": _read_ek(rogue_manufacturer, base / "rogue")}


def store_of(maker: Manufacturer) -> TrustStore:
    return TrustStore.from_blobs([
        ("root", maker.root_certificate.read_bytes()),
        ("intermediate", maker.intermediate_certificate.read_bytes()),
    ])


pytestmark = [pytest.mark.tpm, pytest.mark.adversarial]


def test_swtpm_ek_chains_to_its_manufacturer(eks: dict[str, Ek],
                                             manufacturer: Manufacturer) -> None:
    info = verify_ek_certificate(eks["a"].certificate, store_of(manufacturer), now())
    assert (info.manufacturer, info.model) == ("id:00001014", "swtpm")
    assert len(info.chain) == 3
    check_ek_matches(info, public_key(parse_public(eks["a"].public)))


def test_ek_from_unknown_manufacturer_is_untrusted(eks: dict[str, Ek],
                                                   manufacturer: Manufacturer) -> None:
    with pytest.raises(EkChainUntrusted):
        verify_ek_certificate(eks["rogue"].certificate, store_of(manufacturer), now())


def test_ek_before_its_validity_is_untrusted(eks: dict[str, Ek],
                                            manufacturer: Manufacturer) -> None:
    with pytest.raises(EkChainUntrusted):
        verify_ek_certificate(eks["a"].certificate, store_of(manufacturer),
                              now() - dt.timedelta(days=365 * 40))  # EK certs run to 9999


def test_empty_trust_store_trusts_nothing(eks: dict[str, Ek]) -> None:
    with pytest.raises(EkChainUntrusted, match="no root"):
        verify_ek_certificate(eks["a"].certificate, TrustStore((), ()), now())


def test_ek_public_of_another_tpm_does_not_match(eks: dict[str, Ek],
                                                 manufacturer: Manufacturer) -> None:
    info = verify_ek_certificate(eks["a"].certificate, store_of(manufacturer), now())
    with pytest.raises(EkKeyMismatch):
        check_ek_matches(info, public_key(parse_public(eks["b"].public)))


def test_certificate_misissued_by_the_vendor_ca_is_not_an_ek(
    eks: dict[str, Ek], manufacturer: Manufacturer
) -> None:
    """Signed by the trusted intermediate, but a TLS certificate, not an EK credential."""
    issuer = x509.load_pem_x509_certificate(manufacturer.intermediate_certificate.read_bytes())
    key = serialization.load_pem_private_key((manufacturer.ca_dir / "signkey.pem").read_bytes(),
                                             None)
    ek = x509.load_der_x509_certificate(eks["a"].certificate)
    forged = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(issuer.subject)
        .public_key(ek.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(days=1))
        .not_valid_after(now() + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ek.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                       critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    with pytest.raises(EkProfileInvalid, match="tcg-kp-EKCertificate"):
        verify_ek_certificate(forged.public_bytes(serialization.Encoding.DER),
                              store_of(manufacturer), now())


@pytest.mark.corpus
def test_every_vendor_certificate_loads_and_non_der_roots_are_reencoded(corpus: Path) -> None:
    files = sorted((corpus / "tpm-vendor-roots").iterdir())
    store = TrustStore.from_blobs([(f.name, f.read_bytes()) for f in files])
    assert store.rejected == ()
    assert len(store.roots) + len(store.intermediates) == len(files)
    assert set(store.normalized) == {f.name for f in files if f.name.startswith(("NUVO", "NTC"))}
    nuvoton = [r for r in store.roots if "Nuvoton" in r.subject.rfc4514_string()]
    assert len(nuvoton) == len(store.normalized)


@pytest.mark.corpus
def test_vendor_intermediates_chain_to_vendor_roots(corpus: Path) -> None:
    files = sorted((corpus / "tpm-vendor-roots").iterdir())
    store = TrustStore.from_blobs([(f.name, f.read_bytes()) for f in files])
    infineon = [c for c in store.intermediates
                if "Infineon OPTIGA(TM) RSA Manufacturing CA 022" in c.subject.rfc4514_string()]
    root = next(r for r in store.roots if "Infineon OPTIGA(TM) RSA Root" in
                r.subject.rfc4514_string())
    infineon[0].verify_directly_issued_by(root)


def test_garbage_in_the_trust_store_is_reported_not_fatal(manufacturer: Manufacturer) -> None:
    store = TrustStore.from_blobs([("junk.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                b"-----END CERTIFICATE-----\n"),
                                   ("root.pem", manufacturer.root_certificate.read_bytes())])
    assert len(store.roots) == 1 and [name for name, _ in store.rejected] == ["junk.pem"]


@pytest.mark.corpus
def test_real_ek_certificates_pass_the_profile_and_ak_certificates_do_not(corpus: Path) -> None:
    """Google vTPM certificates: EK ("enc") ones pass, AK ("sign") ones are not EKs."""
    for path in sorted((corpus / "ek-certs").iterdir()):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if "_enc_" in path.name:
            # The privacy-CA issued ones carry no TCG SAN (ek_require_san = false for them).
            check_ek_profile(cert, require_san=path.name.startswith("uca"))
        else:
            with pytest.raises(EkProfileInvalid, match="key usage"):
                check_ek_profile(cert, require_san=False)


@pytest.mark.corpus
def test_real_cloud_ek_certificate_carries_the_tcg_san(corpus: Path) -> None:
    cert = x509.load_pem_x509_certificate(
        (corpus / "ek-certs" / "uca_tpm_ecc_enc_cert.pem").read_bytes())
    assert check_ek_profile(cert, require_san=True) == ("id:474F4F47", "vTPM", "id:20160511")


@pytest.mark.corpus
def test_real_certificate_without_the_tcg_san_is_refused_when_required(corpus: Path) -> None:
    cert = x509.load_pem_x509_certificate(
        (corpus / "ek-certs" / "pca_tpm_rsa_enc_cert.pem").read_bytes())
    assert check_ek_profile(cert, require_san=False) == (None, None, None)
    with pytest.raises(EkProfileInvalid, match="SAN"):
        check_ek_profile(cert, require_san=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_ek_certificate_parser_only_raises_typed_errors(data: bytes) -> None:
    try:
        verify_ek_certificate(data, TrustStore((), ()), now())
    except (EkProfileInvalid, EkChainUntrusted):
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_trust_store_never_fails_wholesale(data: bytes) -> None:
    store = TrustStore.from_blobs([("fuzzed", data)])
    assert len(store.roots) + len(store.intermediates) + len(store.rejected) >= 1
