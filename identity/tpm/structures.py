"""Parsing entry points for TPM structures, and the algorithm tables.

Every parser consumes its whole input (trailing bytes are a forgery signal,
not padding) and raises :class:`TpmStructureMalformed` naming the structure.
The decoding itself is in :mod:`identity.tpm.wire`.
"""

from __future__ import annotations

import hashlib

from identity.errors import TpmStructureMalformed
from identity.tpm.wire import (
    Attest,
    Public,
    Signature,
    decode_attest,
    decode_public,
    decode_signature,
)

# TPM 2.0 Part 2, 6.3 (TPM_ALG_ID): hash algorithms by id and by name.
HASH_ALGS: dict[int, str] = {
    0x0004: "sha1",
    0x000B: "sha256",
    0x000C: "sha384",
    0x000D: "sha512",
    0x0012: "sm3_256",
}
HASH_IDS: dict[str, int] = {name: alg for alg, name in HASH_ALGS.items()}
DIGEST_SIZES: dict[str, int] = {
    "sha1": 20,
    "sha256": 32,
    "sha384": 48,
    "sha512": 64,
    "sm3_256": 32,
}
NAME_HASHES = {"sha256", "sha384", "sha512"}

# Upper bound on any marshalled structure we accept (TPM2B_PUBLIC of RSA-4096
# is ~600 bytes; TPMS_ATTEST of a quote is a few hundred).
MAX_STRUCTURE = 4096


def _bounded(data: bytes, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TpmStructureMalformed(f"{what}: expected bytes")
    if not data:
        raise TpmStructureMalformed(f"{what}: empty")
    if len(data) > MAX_STRUCTURE:
        raise TpmStructureMalformed(f"{what}: {len(data)} bytes is too long")
    return bytes(data)


def parse_public(data: bytes) -> Public:
    """A marshalled TPM2B_PUBLIC (size-prefixed TPMT_PUBLIC)."""
    return decode_public(_bounded(data, "TPM2B_PUBLIC"))


def parse_attest(data: bytes) -> Attest:
    """A marshalled TPMS_ATTEST: exactly the bytes the TPM signed."""
    return decode_attest(_bounded(data, "TPMS_ATTEST"))


def parse_signature(data: bytes) -> Signature:
    return decode_signature(_bounded(data, "TPMT_SIGNATURE"))


def object_name(public: Public) -> bytes:
    """The object's Name: nameAlg || H_nameAlg(TPMT_PUBLIC), computed here."""
    hash_name = HASH_ALGS.get(public.name_alg)
    if hash_name not in NAME_HASHES:
        raise TpmStructureMalformed(f"unsupported nameAlg 0x{public.name_alg:04x}")
    return public.name_alg.to_bytes(2, "big") + hashlib.new(hash_name, public.area).digest()
