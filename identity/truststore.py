"""TPM-vendor CA certificates: loading, including vendors' not-quite-DER roots.

Some vendors publish roots whose names break DER (a multi-valued RDN whose SET
members are not sorted: several Nuvoton roots). `cryptography` refuses those.
A trust anchor is trusted by configuration, not by its self-signature, so such
a root is re-encoded with canonical DER names and kept, and the store says so.
A non-DER intermediate cannot be re-encoded (its issuer's signature covers the
original bytes): it is reported, never fatal for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Roots and intermediates; what could not be loaded, and what was re-encoded."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    rejected: tuple[tuple[str, str], ...] = ()
    normalized: tuple[str, ...] = ()

    @classmethod
    def from_blobs(cls, blobs: Iterable[tuple[str, bytes]]) -> TrustStore:
        """Load certificates from (source, PEM-or-DER bytes); self-signed ones are roots."""
        roots: list[x509.Certificate] = []
        inter: list[x509.Certificate] = []
        rejected: list[tuple[str, str]] = []
        normalized: list[str] = []
        for source, data in blobs:
            try:
                certs = load_certificates(data)
            except ValueError as strict_error:
                try:
                    root = canonical_root(data)
                except ValueError as exc:
                    rejected.append((source, f"{strict_error}; {exc}"))
                    continue
                roots.append(root)
                normalized.append(source)
                continue
            for cert in certs:
                (roots if self_signed(cert) else inter).append(cert)
        return cls(tuple(roots), tuple(inter), tuple(rejected), tuple(normalized))


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM certificates, or DER ones back to back (as TPM NV chain indices hold them)."""
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
    else:
        certs = [x509.load_der_x509_certificate(der) for der in split_der(data)]
    if not certs:
        raise ValueError("no certificate found")
    return certs


def split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER SEQUENCEs; trailing zero padding (NV areas) is ignored."""
    out, pos = [], 0
    while pos < len(data) and any(data[pos:]):
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise ValueError(f"no DER SEQUENCE at offset {pos}")
        first = data[pos + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            count = first & 0x7F
            if not 1 <= count <= 4 or pos + 2 + count > len(data):
                raise ValueError(f"bad DER length at offset {pos}")
            length = int.from_bytes(data[pos + 2:pos + 2 + count], "big")
            header = 2 + count
        end = pos + header + length
        if end > len(data):
            raise ValueError(f"DER SEQUENCE at offset {pos} runs past the end")
        out.append(data[pos:end])
        pos = end
    return out


def self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _canonical_name(name: asn1_x509.Name) -> asn1_x509.Name:
    rdns = []
    for rdn in name.chosen:
        members = sorted((attr.dump(force=True) for attr in rdn), key=lambda der: der)
        rdns.append(asn1_x509.RelativeDistinguishedName(
            [asn1_x509.NameTypeAndValue.load(der) for der in members]))
    return asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns))


def canonical_root(data: bytes) -> x509.Certificate:
    """A self-issued CA certificate re-encoded with DER-sorted name SETs.

    Only for trust anchors: the result's self-signature no longer verifies.
    """
    der = asn1_pem.unarmor(data)[2] if asn1_pem.detect(data) else data
    try:
        cert = asn1_x509.Certificate.load(der)
        tbs = cert["tbs_certificate"]
        if tbs["issuer"] != tbs["subject"] and tbs["issuer"].native != tbs["subject"].native:
            raise ValueError("not self-issued: only a root may be re-encoded")
        if not cert.ca:
            raise ValueError("not a CA certificate")
        tbs["issuer"] = _canonical_name(tbs["issuer"])
        tbs["subject"] = _canonical_name(tbs["subject"])
        return x509.load_der_x509_certificate(cert.dump(force=True))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"cannot re-encode as DER: {exc}") from exc
