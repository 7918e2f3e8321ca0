"""ROCA-vulnerable RSA moduli are refused wherever an RSA key is accepted."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss import TPM2_ALG, TPM2B_PUBLIC, TPMT_ASYM_SCHEME

from agent.sim.softtpm import AK_ATTRS
from identity.ekcert import TrustStore, verify_ek_certificate
from identity.errors import AttestationKeyInvalid, EkKeyWeak
from identity.roca import roca_vulnerable
from identity.tpm.ak import check_attestation_key
from tests.identity.roca_keys import roca_modulus

pytestmark = pytest.mark.adversarial


def test_fingerprint_matches_roca_moduli_and_not_ordinary_ones() -> None:
    assert roca_vulnerable(roca_modulus())
    for _ in range(10):
        assert not roca_vulnerable(rsa.generate_private_key(65537, 2048).public_key()
                                   .public_numbers().n)


def _roca_public() -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(65537, roca_modulus()).public_key()


def test_roca_ak_is_refused() -> None:
    pem = _roca_public().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    scheme = TPMT_ASYM_SCHEME(scheme=TPM2_ALG.RSASSA)
    scheme.details.rsassa.hashAlg = TPM2_ALG.SHA256
    public = bytes(TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRS, scheme=scheme).marshal())
    with pytest.raises(AttestationKeyInvalid, match="ROCA") as refused:
        check_attestation_key(public)
    assert refused.value.code == "ak.weak_key"


def test_ek_certificate_with_roca_key_is_refused() -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "vendor root")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ca_key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    san = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:49465800"),
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.2"), "SLB9670"),
        x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.3"), "id:00070055")]))])
    ek = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name)
          .public_key(_roca_public()).serial_number(2)
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
          .add_extension(san, critical=True)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
              ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    with pytest.raises(EkKeyWeak, match="ROCA"):
        verify_ek_certificate(ek.public_bytes(serialization.Encoding.DER),
                              TrustStore((root,), ()), now)
