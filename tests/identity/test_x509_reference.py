"""CSR checking and leaf certificates decide and encode exactly as before issue 15.

``check_csr`` verifies an ECDSA request with the key it already parsed and compares keys
without encoding them; leaf certificates reuse their constant extensions and the
issuer's key identifier. The former implementations are kept here as references: the
same outcome (checked request, or the same error and detail) on genuine, re-signed,
tampered and mislabelled requests, and the same to-be-signed bytes for every profile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.errors import (
    CsrKeyMismatch,
    CsrKeyWeak,
    CsrMalformed,
    CsrSignatureInvalid,
    IdentityError,
)
from identity.roca import roca_vulnerable
from identity.tpm.keys import PublicKey
from identity.x509 import profiles
from identity.x509.csr import CheckedCsr, assemble_csr, check_csr, csr_info, same_key

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def old_check_csr(data: bytes, expected_key: PublicKey | None = None) -> CheckedCsr:
    """check_csr before issue 15."""
    if len(data) > 16 * 1024:
        raise CsrMalformed(f"CSR of {len(data)} bytes is too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        key = csr.public_key()
    # UnsupportedAlgorithm: the one change made since (an unknown curve was a 500)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CsrMalformed(f"CSR does not parse: {exc}") from exc
    if not csr.is_signature_valid:
        raise CsrSignatureInvalid("the CSR is not signed by the key it names")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrKeyWeak(f"RSA-{key.key_size} is below 2048 bits")
        if roca_vulnerable(key.public_numbers().n):
            raise CsrKeyWeak("RSA modulus is from the ROCA-vulnerable generator")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            raise CsrKeyWeak(f"curve {key.curve.name} is below P-256")
    else:
        raise CsrKeyWeak("only RSA and ECC keys are accepted")
    if expected_key is not None and _spki(key) != _spki(expected_key):
        raise CsrKeyMismatch("the CSR's key is not the TPM-certified key")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return CheckedCsr(key, csr.subject.rfc4514_string(), pem)


def _outcome(fn: Callable[[], CheckedCsr]) -> tuple[str, str, str, bytes]:
    try:
        checked = fn()
    except IdentityError as exc:
        return type(exc).__name__, exc.code, exc.detail, b""
    except Exception as exc:  # noqa: BLE001 - e.g. UnsupportedAlgorithm for an odd curve
        return type(exc).__name__, "", str(exc), b""
    return "ok", checked.subject, checked.pem, _spki(checked.public_key)


def assert_same(data: bytes, expected: PublicKey | None = None) -> None:
    assert _outcome(lambda: check_csr(data, expected)) == _outcome(
        lambda: old_check_csr(data, expected))


P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
P192 = ec.generate_private_key(ec.SECP192R1())
RSA2048 = rsa.generate_private_key(65537, 2048)
RSA1024 = rsa.generate_private_key(65537, 1024)
ED = ed25519.Ed25519PrivateKey.generate()
EC_KEYS = [P256, P384, P521, P192]
ALL_PUBLIC: list[PublicKey] = [k.public_key() for k in (*EC_KEYS, RSA2048, RSA1024)]


def _built(key: object, hash_: hashes.HashAlgorithm | None) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name.from_rfc4514_string("CN=dev-1,O=fleet"))
           .sign(key, hash_))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.DER)


def _tpm_style(key: ec.EllipticCurvePrivateKey, hash_name: str,
               signer: ec.EllipticCurvePrivateKey | None = None,
               sign_hash: str | None = None) -> bytes:
    info = csr_info(key.public_key(), "device-1")
    algo = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[sign_hash or hash_name]
    return assemble_csr(info, "ecdsa", hash_name, (signer or key).sign(info, ec.ECDSA(algo)))


def _relabelled(der: bytes, algorithm: str, parameters: object = None) -> bytes:
    request = asn1_csr.CertificationRequest.load(der)
    spec: dict[str, object] = {"algorithm": algorithm}
    if parameters is not None:
        spec["parameters"] = parameters
    return asn1_csr.CertificationRequest({
        "certification_request_info": request["certification_request_info"].copy(),
        "signature_algorithm": spec, "signature": request["signature"].native,
    }).dump(force=True)


GENUINE = [
    *[_built(k, h) for k in EC_KEYS for h in (hashes.SHA256(), hashes.SHA384(),
                                             hashes.SHA512(), hashes.SHA224())],
    _built(RSA2048, hashes.SHA256()), _built(RSA1024, hashes.SHA256()), _built(ED, None),
    _tpm_style(P256, "sha256"), _tpm_style(P384, "sha384"),
]
FORGED = [
    _tpm_style(P256, "sha256", signer=ec.generate_private_key(ec.SECP256R1())),
    _tpm_style(P256, "sha384", sign_hash="sha256"),  # labelled SHA-384, signed SHA-256
    _tpm_style(P384, "sha256", sign_hash="sha384"),
    _relabelled(_built(P256, hashes.SHA256()), "sha256_rsa"),  # EC key, RSA algorithm
    _relabelled(_built(RSA2048, hashes.SHA256()), "sha256_ecdsa"),  # RSA key, ECDSA alg
    _relabelled(_built(P256, hashes.SHA256()), "sha384_ecdsa"),
    _relabelled(_built(P256, hashes.SHA256()), "sha256_ecdsa", parameters=core.Null()),
    _relabelled(_built(P256, hashes.SHA256()), "sha256_ecdsa",
                parameters=core.OctetString(b"x")),
    _relabelled(_built(ED, None), "sha256_ecdsa"),
]


@pytest.mark.parametrize("data", GENUINE + FORGED)
@pytest.mark.parametrize("pem", [False, True])
def test_check_csr_as_before(data: bytes, pem: bool) -> None:
    if pem:
        data = b"-----BEGIN CERTIFICATE REQUEST-----\n" + __import__("base64").encodebytes(
            data) + b"-----END CERTIFICATE REQUEST-----\n"
    assert_same(data)
    for expected in ALL_PUBLIC:
        assert_same(data, expected)


def test_forgeries_are_refused() -> None:
    for data in FORGED:
        with pytest.raises(IdentityError):
            check_csr(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(GENUINE[:8] + FORGED[:3]), st.integers(0, 400), st.integers(1, 255))
def test_check_csr_tampered_bytes(data: bytes, where: int, flip: int) -> None:
    """A flipped byte anywhere: the same refusal (or the same acceptance) as before."""
    tampered = bytearray(data)
    tampered[where % len(data)] ^= flip
    assert_same(bytes(tampered), P256.public_key())


def test_same_key_is_spki_equality() -> None:
    again = [serialization.load_der_public_key(_spki(k)) for k in ALL_PUBLIC]
    for a in ALL_PUBLIC + again:
        for b in ALL_PUBLIC + again:
            assert same_key(a, b) == (_spki(a) == _spki(b))  # type: ignore[arg-type]
    other_e = rsa.RSAPublicNumbers(3, RSA2048.public_key().public_numbers().n).public_key()
    assert not same_key(other_e, RSA2048.public_key())


# -- leaf certificates ----------------------------------------------------------------------


def old_leaf(issuer: profiles.SigningCa, subject: x509.Name, public: PublicKey,
             sans: list[x509.GeneralName], not_before: dt.datetime, not_after: dt.datetime,
             ekus: list[x509.ObjectIdentifier], serial: int | None = None) -> x509.Certificate:
    """profiles._leaf before issue 15 (every extension built per certificate)."""
    not_after = min(not_after, issuer.cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer.cert.subject).public_key(public)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(profiles._key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def _issuers() -> list[profiles.SigningCa]:
    out = []
    for _ in range(2):
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = profiles.root_ca(root_key, "test root", NOW, 3650)
        key = ec.generate_private_key(ec.SECP256R1())
        out.append(profiles.SigningCa(key, profiles.issuing_ca(
            profiles.SigningCa(root_key, root), key, "test issuing", NOW, 365)))
    return out


ISSUERS = _issuers()


@pytest.mark.parametrize("profile", ["workload", "workload_dns", "device", "tls"])
def test_leaf_profiles_encode_as_before(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for issuer in ISSUERS * 2:  # twice: the cached identifier is the right issuer's
        for public in (P256.public_key(), P384.public_key(), RSA2048.public_key()):
            def build(issuer: profiles.SigningCa = issuer,
                      public: PublicKey = public) -> x509.Certificate:
                if profile.startswith("workload"):
                    return profiles.workload_certificate(
                        issuer, public, device_id="dev-1", trust_domain="fleet.example",
                        now=NOW, ttl=dt.timedelta(hours=1), serial=0x1234,
                        dns_names=("a.example", "b.example") if profile == "workload_dns"
                        else ())
                if profile == "device":
                    return profiles.device_identity_certificate(
                        issuer, public, device_id="dev-1", serial="SN-1",
                        trust_domain="fleet.example", now=NOW, days=30, cert_serial=0x99)
                return profiles.tls_server_certificate(
                    issuer, public, dns_names=("attestor.example",), ip_addresses=(),
                    now=NOW, days=30)

            monkeypatch.setattr(x509, "random_serial_number", lambda: 0x7777)  # tls
            new = build()
            with monkeypatch.context() as patched:
                patched.setattr(profiles, "_leaf", old_leaf)
                old = build()
            assert new.tbs_certificate_bytes == old.tbs_certificate_bytes
            new.verify_directly_issued_by(issuer.cert)


def test_extended_key_usages_are_not_shared_across_lists() -> None:
    one = profiles._extended_key_usage([ExtendedKeyUsageOID.CLIENT_AUTH])
    two = profiles._extended_key_usage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                        ExtendedKeyUsageOID.SERVER_AUTH])
    assert list(one) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert list(two) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
