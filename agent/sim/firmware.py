"""The simulated platform's Secure Boot databases: PK, KEK, db (X.509) and dbx (hashes).

Deterministic (Ed25519 keys from fixed seeds, fixed validity and serials), so
every boot of every simulated device of a product line measures the same
bytes, as real firmware NVRAM would.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import struct
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from identity.eventlog.uefi import EFI_CERT_SHA256, EFI_CERT_X509

OWNER = uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")  # Microsoft's owner GUID, as in db
NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2049, 1, 1, tzinfo=dt.UTC)


@functools.cache
def certificate(name: str) -> bytes:
    """A deterministic self-signed Ed25519 certificate (DER) named ``name``."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"edgeproof-sim/" + name.encode()).digest())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeproof simulated"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big"))
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .sign(key, None))
    return cert.public_bytes(serialization.Encoding.DER)


def signature_list(kind: uuid.UUID, entries: list[bytes]) -> bytes:
    """One EFI_SIGNATURE_LIST of same-size EFI_SIGNATURE_DATA entries."""
    if not entries:
        return b""
    size = 16 + len(entries[0])
    body = b"".join(OWNER.bytes_le + e for e in entries)
    return kind.bytes_le + struct.pack("<III", 28 + len(body), 0, size) + body


def database(name: str, *, stale_dbx: bool = False) -> bytes:
    """The variable data of PK, KEK, db or dbx."""
    if name == "dbx":
        count = 2 if stale_dbx else 4  # a stale dbx lacks the newest revocations
        revoked = [hashlib.sha256(f"revoked boot loader {i}".encode()).digest()
                   for i in range(count)]
        return signature_list(EFI_CERT_SHA256, revoked)
    names = {"PK": ["Simulated Platform Key"], "KEK": ["Simulated KEK CA"],
             "db": ["Simulated UEFI CA", "Simulated Windows PCA"]}[name]
    return b"".join(signature_list(EFI_CERT_X509, [certificate(n)]) for n in names)


def db_entry(name: str = "Simulated UEFI CA") -> bytes:
    """The EFI_SIGNATURE_DATA that verified a boot application (its authority event)."""
    return OWNER.bytes_le + certificate(name)
