"""Strict unmarshalling of TPM 2.0 structures with tpm2-pytss types.

Every parser consumes its whole input: trailing bytes are a forgery signal, not
padding to ignore. tpm2-pytss's own unmarshal errors become
:class:`TpmStructureMalformed` with the structure named.
"""

from __future__ import annotations

from typing import Any, TypeVar

from tpm2_pytss import (
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMT_SIGNATURE,
    TSS2_Exception,
)

from identity.errors import TpmStructureMalformed

T = TypeVar("T")

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

# Upper bound on any marshalled structure we accept (TPM2B_PUBLIC of RSA-4096
# is ~600 bytes; TPMS_ATTEST of a quote is a few hundred).
MAX_STRUCTURE = 4096


def _unmarshal(cls: Any, data: bytes, what: str) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TpmStructureMalformed(f"{what}: expected bytes")
    data = bytes(data)
    if not data:
        raise TpmStructureMalformed(f"{what}: empty")
    if len(data) > MAX_STRUCTURE:
        raise TpmStructureMalformed(f"{what}: {len(data)} bytes is too long")
    try:
        value, consumed = cls.unmarshal(data)
    except (TSS2_Exception, ValueError, TypeError) as exc:
        raise TpmStructureMalformed(f"{what}: {exc}") from exc
    if consumed != len(data):
        raise TpmStructureMalformed(
            f"{what}: {len(data) - consumed} trailing bytes after the structure"
        )
    return value


def parse_public(data: bytes) -> TPM2B_PUBLIC:
    """A marshalled TPM2B_PUBLIC (size-prefixed TPMT_PUBLIC)."""
    pub: TPM2B_PUBLIC = _unmarshal(TPM2B_PUBLIC, data, "TPM2B_PUBLIC")
    return pub


def parse_attest(data: bytes) -> TPMS_ATTEST:
    """A marshalled TPMS_ATTEST: exactly the bytes the TPM signed."""
    att: TPMS_ATTEST = _unmarshal(TPMS_ATTEST, data, "TPMS_ATTEST")
    return att


def parse_signature(data: bytes) -> TPMT_SIGNATURE:
    sig: TPMT_SIGNATURE = _unmarshal(TPMT_SIGNATURE, data, "TPMT_SIGNATURE")
    return sig


def object_name(public: TPM2B_PUBLIC) -> bytes:
    """The object's Name: nameAlg || H_nameAlg(TPMT_PUBLIC), computed here."""
    name_alg = int(public.publicArea.nameAlg)
    if HASH_ALGS.get(name_alg) not in {"sha256", "sha384", "sha512"}:
        raise TpmStructureMalformed(f"unsupported nameAlg 0x{name_alg:04x}")
    try:
        return bytes(public.get_name())
    except (TSS2_Exception, ValueError) as exc:
        raise TpmStructureMalformed(f"cannot compute Name: {exc}") from exc
