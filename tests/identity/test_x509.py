"""CSRs for TPM-resident keys and the certificate profiles."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.errors import CsrKeyMismatch, CsrKeyWeak, CsrMalformed, CsrSignatureInvalid
from identity.x509.csr import assemble_csr, check_csr, csr_info
from identity.x509.profiles import (
    SigningCa,
    device_identity_certificate,
    issuing_ca,
    root_ca,
    workload_certificate,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def signed_csr(key: ec.EllipticCurvePrivateKey,
               signer: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    info = csr_info(key.public_key(), "device-1")
    signature = (signer or key).sign(info, ec.ECDSA(hashes.SHA256()))
    return assemble_csr(info, "ecdsa", "sha256", signature)


def test_csr_built_outside_cryptography_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    checked = check_csr(signed_csr(key), expected_key=key.public_key())
    assert checked.subject == "CN=device-1"
    der = signed_csr(key)
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    check_csr(pem)


def test_csr_signed_by_another_key_is_refused() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CsrSignatureInvalid):
        check_csr(signed_csr(key, signer=other))


def test_csr_for_a_key_other_than_the_certified_one_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certified = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CsrKeyMismatch):
        check_csr(signed_csr(key), expected_key=certified.public_key())


def test_weak_csr_keys_are_refused() -> None:
    weak_ec = ec.generate_private_key(ec.SECP192R1())
    with pytest.raises(CsrKeyWeak):
        check_csr(signed_csr(weak_ec))
    weak_rsa = rsa.generate_private_key(65537, 1024)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(weak_rsa, hashes.SHA256()))
    with pytest.raises(CsrKeyWeak):
        check_csr(csr.public_bytes(serialization.Encoding.DER))


def test_garbage_csr_is_malformed() -> None:
    for data in (b"", b"\x30\x03\x02\x01\x00", b"x" * 20000):
        with pytest.raises(CsrMalformed):
            check_csr(data)


def test_csr_naming_an_unknown_curve_is_malformed() -> None:
    """A CSR whose key names a curve no library knows (prime256v1's OID with its last arc
    changed, the signature left as it was) is refused as malformed, not a server error."""
    der = signed_csr(ec.generate_private_key(ec.SECP256R1()))
    prime256v1 = bytes.fromhex("06082a8648ce3d030107")
    assert der.count(prime256v1) == 1
    with pytest.raises(CsrMalformed):
        check_csr(der.replace(prime256v1, prime256v1[:-1] + b"\x63"))


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, SigningCa]:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = root_ca(root_key, "test root", NOW, 3650)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issuing_ca(SigningCa(root_key, root), key, "test issuing", NOW, 365)
    return root, SigningCa(key, cert)


def test_workload_certificate_profile(ca: tuple[x509.Certificate, SigningCa]) -> None:
    root, issuing = ca
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    cert = workload_certificate(issuing, leaf_key.public_key(), device_id="d1",
                                trust_domain="fleet.example", now=NOW,
                                ttl=dt.timedelta(minutes=1))
    assert cert.not_valid_after_utc - NOW == dt.timedelta(minutes=1)
    verified = (PolicyBuilder().store(Store([root])).time(NOW).build_client_verifier()
                .verify(cert, [issuing.cert]))
    assert verified.subjects is not None
    assert [s.value for s in verified.subjects] == ["spiffe://fleet.example/device/d1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in list(eku)


def test_leaf_never_outlives_its_issuer(ca: tuple[x509.Certificate, SigningCa]) -> None:
    _, issuing = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = device_identity_certificate(issuing, key.public_key(), device_id="d1", serial="S1",
                                       trust_domain="t", now=NOW, days=100000)
    assert cert.not_valid_after_utc == issuing.cert.not_valid_after_utc
    assert "2.5.4.5=S1" in cert.subject.rfc4514_string()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_csr_parser_only_raises_typed_errors(data: bytes) -> None:
    try:
        check_csr(data)
    except (CsrMalformed, CsrSignatureInvalid, CsrKeyWeak):
        pass
