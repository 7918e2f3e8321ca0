"""The agent checks what it is given before it installs it."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from identity.tpm.keys import PublicKey


class IssuedCertificateInvalid(Exception):
    pass


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_issued(cert_pem: str, chain_pem: str, ca_pem: str, key: PublicKey,
                 now: dt.datetime) -> x509.Certificate:
    """The certificate is for our key and chains to the attestor's CA at ``now``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem.strip() else []
        roots = x509.load_pem_x509_certificates(ca_pem.encode())
    except ValueError as exc:
        raise IssuedCertificateInvalid(f"issued certificate does not parse: {exc}") from exc
    if _spki(cert.public_key()) != _spki(key):
        raise IssuedCertificateInvalid("issued certificate is not for the TPM key we asked for")
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verifier.verify(cert, chain)
    except VerificationError as exc:
        raise IssuedCertificateInvalid(f"certificate does not chain to the CA: {exc}") from exc
    return cert
