"""The fleet simulator's CSRs from a DER template (per device), not asn1crypto.

identity.x509.csr builds the CertificationRequestInfo with asn1crypto because a
TPM key signs only a digest; that costs about 1 ms a CSR, and the simulator makes
one a cycle with a software key. Only the SubjectPublicKeyInfo changes from one
workload key to the next (a P-256 one is always 91 bytes), so the info is the
device's template with the key spliced in, and the request is three DER fields.
tests/agent/test_sim_csr.py proves the bytes identical to csr_info and assemble_csr.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity.x509.csr import csr_info

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# AlgorithmIdentifier { ecdsa-with-SHA256 (1.2.840.10045.4.3.2) }, no parameters (RFC 5758)
ECDSA_SHA256_ALGORITHM = bytes.fromhex("300a06082a8648ce3d040302")


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def der(tag: int, content: bytes) -> bytes:
    """A DER TLV (definite length, short or long form)."""
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + content


@dataclass(frozen=True)
class CsrTemplate:
    """A device's CertificationRequestInfo around a P-256 key's SubjectPublicKeyInfo."""

    common_name: str
    prefix: bytes
    suffix: bytes
    spki_size: int

    @classmethod
    def of(cls, common_name: str) -> CsrTemplate:
        sample = ec.generate_private_key(ec.SECP256R1()).public_key()
        spki = _spki(sample)
        info = csr_info(sample, common_name)
        at = info.index(spki)
        return cls(common_name, info[:at], info[at + len(spki):], len(spki))

    def info(self, key: ec.EllipticCurvePublicKey) -> bytes:
        """What ``csr_info(key, common_name)`` returns, for a P-256 ``key``."""
        spki = _spki(key)
        if len(spki) != self.spki_size:
            raise ValueError("the CSR template is for P-256 keys (uncompressed points)")
        return self.prefix + spki + self.suffix


def csr_der(info: bytes, signature: bytes) -> bytes:
    """What ``assemble_csr(info, "ecdsa", "sha256", signature)`` returns."""
    return der(0x30, info + ECDSA_SHA256_ALGORITHM + der(0x03, b"\x00" + signature))
