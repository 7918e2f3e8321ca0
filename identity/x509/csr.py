"""Certificate signing requests for keys that cannot leave a TPM.

`cryptography` signs a CSR only with a key object it holds, so the device side
builds the CertificationRequestInfo with asn1crypto, has the TPM sign its
digest, and assembles the request. The server side parses and checks it with
`cryptography`. The subject a device asks for is informational only: names
in issued certificates always come from the device record.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from identity.checks import CheckRunner
from identity.errors import CsrKeyMismatch, CsrKeyWeak, CsrMalformed, CsrSignatureInvalid
from identity.roca import roca_vulnerable
from identity.tpm.keys import PublicKey

MAX_CSR_SIZE = 16 * 1024
_SIG_ALGS = {("ecdsa", "sha256"): "sha256_ecdsa", ("ecdsa", "sha384"): "sha384_ecdsa",
             ("rsassa", "sha256"): "sha256_rsa", ("rsassa", "sha384"): "sha384_rsa"}


def csr_info(public: PublicKey, common_name: str) -> bytes:
    """DER of the CertificationRequestInfo to be signed (by the TPM)."""
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.build({"common_name": common_name}),
            "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
            "attributes": [],
        }
    )
    der: bytes = info.dump()
    return der


def assemble_csr(info: bytes, scheme: str, hash_name: str, signature: bytes) -> bytes:
    """The DER CSR from its signed info and a DER signature (ECDSA) or raw one (RSA)."""
    try:
        alg = _SIG_ALGS[(scheme, hash_name)]
    except KeyError:
        raise ValueError(f"no CSR signature algorithm for {scheme}-{hash_name}") from None
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": asn1_csr.CertificationRequestInfo.load(info),
            "signature_algorithm": {"algorithm": alg},
            "signature": signature,
        }
    )
    der: bytes = request.dump()
    return der


@dataclass(frozen=True, slots=True)
class CheckedCsr:
    public_key: PublicKey
    subject: str
    pem: str = ""  # the request as the device sent it (for an external CA's sign endpoint)


# Signature algorithms whose check is done here with the key already parsed (the same
# verification ``is_signature_valid`` does, without parsing the key a second time);
# every other algorithm is left to ``is_signature_valid``.
_ECDSA_HASHES: dict[x509.ObjectIdentifier, ec.ECDSA] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}


def _signature_valid(csr: x509.CertificateSigningRequest, key: object) -> bool:
    """``csr.is_signature_valid`` (differentially tested in tests/identity/test_x509.py)."""
    ecdsa = _ECDSA_HASHES.get(csr.signature_algorithm_oid)
    if ecdsa is None or not isinstance(key, ec.EllipticCurvePublicKey):
        return csr.is_signature_valid
    try:
        key.verify(csr.signature, csr.tbs_certrequest_bytes, ecdsa)
    except InvalidSignature:
        return False
    return True


def check_csr(data: bytes, expected_key: PublicKey | None = None) -> CheckedCsr:
    """Parse a CSR (DER or PEM), check its signature and key; match ``expected_key``."""
    if len(data) > MAX_CSR_SIZE:
        raise CsrMalformed(f"CSR of {len(data)} bytes is too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # e.g. an unknown curve
        raise CsrMalformed(f"CSR does not parse: {exc}") from exc
    if not _signature_valid(csr, key):
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
    if expected_key is not None and not same_key(key, expected_key):
        raise CsrKeyMismatch("the CSR's key is not the TPM-certified key")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return CheckedCsr(key, csr.subject.rfc4514_string(), pem)


def same_key(a: PublicKey, b: PublicKey) -> bool:
    """The same public key: what comparing their SubjectPublicKeyInfo DER says (key type,
    curve or modulus and exponent, point), without encoding either."""
    return bool(a == b)


def verify_csr(runner: CheckRunner, data: bytes,
               expected_key: PublicKey | None = None) -> CheckedCsr | None:
    """:func:`check_csr` as the appraisal's check ``csr``; the checked request, or None."""
    return runner.run("csr", lambda: check_csr(data, expected_key))
