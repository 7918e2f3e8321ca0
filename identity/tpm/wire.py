"""Strict decoders for the TPM 2.0 structures on the verification path.

TPM 2.0 Library Part 2: TPMT_PUBLIC (12.2.4), TPMS_ATTEST (10.12.12),
TPMT_SIGNATURE (11.3.4). Why not tpm2-pytss here: its objects build Python
wrappers on every attribute access, and reading one parsed TPMS_ATTEST costs
~300 µs, four times the ECDSA verification it exists for (docs/benchmarks.md).
These decoders read the same big-endian wire format with ``struct``, consume
the whole input, bound every size by the TPM's own maxima, and are checked
against tpm2-pytss (which stays the marshaller and the reference) by
differential tests on genuine swtpm output and on mutations of it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from identity.errors import TpmStructureMalformed, UnsupportedAlgorithm

# TPM_ALG_ID (Part 2, 6.3)
RSA, KEYEDHASH, NULL, ECC, SYMCIPHER = 0x0001, 0x0008, 0x0010, 0x0023, 0x0025
RSASSA, RSAES, RSAPSS, OAEP = 0x0014, 0x0015, 0x0016, 0x0017
ECDSA, ECDH, ECDAA, SM2, ECSCHNORR, ECMQV = 0x0018, 0x0019, 0x001A, 0x001B, 0x001C, 0x001D
HMAC, XOR, KDF1_SP800_56A, KDF2, KDF1_SP800_108, MGF1 = (
    0x0005, 0x000A, 0x0020, 0x0021, 0x0022, 0x0007)
HASH_SIZES = {0x0004: 20, 0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}

# TPM_ST attestation types (Part 2, 6.9)
ST_CERTIFY, ST_QUOTE, ST_SESSION_AUDIT, ST_COMMAND_AUDIT = 0x8017, 0x8018, 0x8016, 0x8015
ST_TIME, ST_CREATION, ST_NV, ST_NV_DIGEST = 0x8019, 0x801A, 0x8014, 0x801C

# Buffer maxima as tpm2-tss defines them (sizeof the TPM2B's buffer).
MAX_DIGEST = 64
MAX_NAME = 68
MAX_DATA = 64
MAX_RSA_KEY = 512
MAX_ECC_PARAM = 128
MAX_NV_BUFFER = 2048
MAX_POLICY = 64
PCR_SELECT_MAX = 4
HASH_COUNT = 16


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TpmStructureMalformed(f"{what}: expected bytes")
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def fail(self, why: str) -> TpmStructureMalformed:
        return TpmStructureMalformed(f"{self.what}: {why} at offset {self.pos}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def fixed(self, fmt: struct.Struct) -> tuple[int, ...]:
        """Several fixed-size fields at once (the hot path's headers)."""
        if self.pos + fmt.size > len(self.data):
            raise self.fail(f"needs {fmt.size} bytes, {len(self.data) - self.pos} left")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def tpm2b(self, maximum: int) -> bytes:
        data, pos = self.data, self.pos
        if pos + 2 > len(data):
            raise self.fail("needs 2 bytes for a size")
        size = data[pos] << 8 | data[pos + 1]
        end = pos + 2 + size
        if size > maximum:
            raise self.fail(f"size {size} exceeds {maximum}")
        if end > len(data):
            raise self.fail(f"needs {size} bytes, {len(data) - pos - 2} left")
        self.pos = end
        return data[pos + 2:end]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise TpmStructureMalformed(
                f"{self.what}: {len(self.data) - self.pos} trailing bytes after the structure")


# TPMT_PUBLIC -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Public:
    """A decoded TPMT_PUBLIC; ``area`` is its exact bytes (what the Name hashes)."""

    area: bytes
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: int  # TPM_ALG_NULL for signing keys
    scheme: int
    scheme_hash: int  # TPM_ALG_NULL when the scheme has no hash
    key_bits: int  # RSA modulus bits, or 0
    exponent: int  # RSA (0 means 65537), or 0
    curve: int  # ECC curve id, or 0
    rsa_modulus: bytes = b""
    ecc_x: bytes = b""
    ecc_y: bytes = b""


def _scheme(r: _Reader) -> tuple[int, int]:
    """TPMT_*_SCHEME: (scheme, hash) with the details its selector implies."""
    scheme = r.u16()
    if scheme in (NULL, RSAES):
        return scheme, NULL
    if scheme in (RSASSA, RSAPSS, ECDSA, SM2, ECSCHNORR, OAEP, ECDH, ECMQV, HMAC):
        return scheme, r.u16()
    if scheme == ECDAA:
        hash_alg = r.u16()
        r.u16()  # count
        return scheme, hash_alg
    if scheme == XOR:
        hash_alg = r.u16()
        r.u16()  # kdf
        return scheme, hash_alg
    raise r.fail(f"unknown scheme 0x{scheme:04x}")


SYMMETRIC = {0x0006, 0x0013, 0x0026}  # AES, SM4, CAMELLIA


def _sym_def_object(r: _Reader) -> int:
    alg = r.u16()
    if alg in SYMMETRIC:
        r.u16()  # keyBits
        r.u16()  # mode
    elif alg != NULL:
        raise r.fail(f"unknown symmetric algorithm 0x{alg:04x}")
    return alg


def decode_public_area(data: bytes, what: str = "TPMT_PUBLIC") -> Public:
    r = _Reader(data, what)
    kind = r.u16()
    name_alg = r.u16()
    attributes = r.u32()
    policy = r.tpm2b(MAX_POLICY)
    if kind == RSA:
        symmetric = _sym_def_object(r)
        scheme, scheme_hash = _scheme(r)
        key_bits = r.u16()
        exponent = r.u32()
        modulus = r.tpm2b(MAX_RSA_KEY)
        r.end()
        return Public(r.data, kind, name_alg, attributes, policy, symmetric, scheme,
                      scheme_hash, key_bits, exponent, 0, rsa_modulus=modulus)
    if kind == ECC:
        symmetric = _sym_def_object(r)
        scheme, scheme_hash = _scheme(r)
        curve = r.u16()
        kdf = r.u16()
        if kdf != NULL:
            r.u16()  # kdf hash
        x = r.tpm2b(MAX_ECC_PARAM)
        y = r.tpm2b(MAX_ECC_PARAM)
        r.end()
        return Public(r.data, kind, name_alg, attributes, policy, symmetric, scheme,
                      scheme_hash, 0, 0, curve, ecc_x=x, ecc_y=y)
    if kind in (KEYEDHASH, SYMCIPHER):
        raise UnsupportedAlgorithm(f"{what}: object type 0x{kind:04x} is not an asymmetric key")
    raise r.fail(f"unknown object type 0x{kind:04x}")


def decode_public(data: bytes) -> Public:
    """A TPM2B_PUBLIC: a size, then exactly that many bytes of TPMT_PUBLIC."""
    r = _Reader(data, "TPM2B_PUBLIC")
    size = r.u16()
    area = r.take(size)
    r.end()
    if size == 0:
        raise TpmStructureMalformed("TPM2B_PUBLIC: empty public area")
    return decode_public_area(area)


# TPMT_SIGNATURE ----------------------------------------------------------------


class Signature(NamedTuple):
    alg: int
    hash_alg: int
    r: bytes = b""  # ECC schemes
    s: bytes = b""  # ECC schemes
    raw: bytes = b""  # RSA schemes; the HMAC digest


_ALG_HASH_SIZE = struct.Struct(">HHH")


def decode_signature_fast(data: bytes) -> Signature | None:
    """The common case, ECDSA with two 32-byte integers (P-256); None for anything else."""
    if len(data) == 72 and data[:2] == b"\x00\x18":
        alg, hash_alg, r_size = _ALG_HASH_SIZE.unpack_from(data)
        if r_size == 32 and data[38:40] == b"\x00\x20":
            return Signature(alg, hash_alg, r=data[6:38], s=data[40:72])
    return None


def decode_signature(data: bytes) -> Signature:
    fast = decode_signature_fast(data)
    if fast is not None:
        return fast
    r = _Reader(data, "TPMT_SIGNATURE")
    alg = r.u16()
    if alg in (RSASSA, RSAPSS):
        hash_alg = r.u16()
        sig = Signature(alg, hash_alg, raw=r.tpm2b(MAX_RSA_KEY))
    elif alg in (ECDSA, ECDAA, SM2, ECSCHNORR):
        hash_alg = r.u16()
        sig = Signature(alg, hash_alg, r=r.tpm2b(MAX_ECC_PARAM), s=r.tpm2b(MAX_ECC_PARAM))
    elif alg == HMAC:
        hash_alg = r.u16()
        size = HASH_SIZES.get(hash_alg)
        if size is None:
            raise r.fail(f"unknown HMAC hash 0x{hash_alg:04x}")
        sig = Signature(alg, hash_alg, raw=r.take(size))
    elif alg == NULL:
        sig = Signature(alg, NULL)
    else:
        raise r.fail(f"unknown signature algorithm 0x{alg:04x}")
    r.end()
    return sig


# TPMS_ATTEST -------------------------------------------------------------------


class Attest(NamedTuple):
    """A decoded TPMS_ATTEST (a NamedTuple: built on every attestation, so kept cheap)."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    pcr_select: tuple[tuple[int, bytes], ...] = ()  # quote: (hash alg, bitmap)
    pcr_digest: bytes = b""  # quote
    certified_name: bytes = b""  # certify
    certified_qualified_name: bytes = b""  # certify


def _pcr_selection(r: _Reader) -> tuple[tuple[int, bytes], ...]:
    count = r.u32()
    if count > HASH_COUNT:
        raise r.fail(f"{count} PCR selections exceed {HASH_COUNT}")
    out = []
    for _ in range(count):
        alg = r.u16()
        size = r.u8()
        if size > PCR_SELECT_MAX:
            raise r.fail(f"PCR bitmap of {size} bytes exceeds {PCR_SELECT_MAX}")
        out.append((alg, r.take(size)))
    return tuple(out)


_MAGIC_TYPE = struct.Struct(">IH")
_CLOCK_FIRMWARE = struct.Struct(">QIIBQ")


def quote_fast(data: bytes) -> Attest | None:
    """The common case, a well-formed quote, without the reader's call overhead.

    Returns None for anything irregular; the strict path then names the problem.
    """
    n = len(data)
    if n < 8:
        return None
    magic, st, size = _MAGIC_TYPE_SIZE.unpack_from(data)
    if st != ST_QUOTE or size > MAX_NAME:
        return None
    pos = 8 + size
    signer = data[8:pos]
    if pos + 2 > n:
        return None
    size = data[pos] << 8 | data[pos + 1]
    if size > MAX_DATA or pos + 2 + size + _CLOCK_FIRMWARE.size + 4 > n:
        return None
    extra = data[pos + 2:pos + 2 + size]
    pos += 2 + size
    clock, reset, restart, safe, firmware, count = _CLOCK_FIRMWARE_COUNT.unpack_from(data, pos)
    pos += _CLOCK_FIRMWARE_COUNT.size
    if safe > 1 or count > HASH_COUNT:
        return None
    selections = []
    for _ in range(count):
        if pos + 3 > n:
            return None
        alg, bitmap_size = data[pos] << 8 | data[pos + 1], data[pos + 2]
        if bitmap_size > PCR_SELECT_MAX or pos + 3 + bitmap_size > n:
            return None
        selections.append((alg, data[pos + 3:pos + 3 + bitmap_size]))
        pos += 3 + bitmap_size
    if pos + 2 > n:
        return None
    size = data[pos] << 8 | data[pos + 1]
    if size > MAX_DIGEST or pos + 2 + size != n:
        return None
    return Attest(magic, st, signer, extra, clock, reset, restart, bool(safe), firmware,
                  tuple(selections), data[pos + 2:])


_MAGIC_TYPE_SIZE = struct.Struct(">IHH")
_CLOCK_FIRMWARE_COUNT = struct.Struct(">QIIBQI")


def decode_attest(data: bytes) -> Attest:
    fast = quote_fast(bytes(data)) if isinstance(data, bytes | bytearray) else None
    if fast is not None:
        return fast
    r = _Reader(data, "TPMS_ATTEST")
    magic, st = r.fixed(_MAGIC_TYPE)
    signer = r.tpm2b(MAX_NAME)
    extra = r.tpm2b(MAX_DATA)
    clock, reset, restart, safe, firmware = r.fixed(_CLOCK_FIRMWARE)
    if safe > 1:
        raise r.fail(f"clockInfo.safe is {safe}, not YES or NO")
    head = (magic, st, signer, extra, clock, reset, restart, bool(safe), firmware)
    if st == ST_QUOTE:
        select = _pcr_selection(r)
        digest = r.tpm2b(MAX_DIGEST)
        r.end()
        return Attest(*head, pcr_select=select, pcr_digest=digest)
    if st == ST_CERTIFY:
        name, qualified = r.tpm2b(MAX_NAME), r.tpm2b(MAX_NAME)
        r.end()
        return Attest(*head, certified_name=name, certified_qualified_name=qualified)
    # The other attestation types are decoded only to be complete and strict.
    if st == ST_CREATION:
        r.tpm2b(MAX_NAME), r.tpm2b(MAX_DIGEST)
    elif st == ST_COMMAND_AUDIT:
        r.u64(), r.u16(), r.tpm2b(MAX_DIGEST), r.tpm2b(MAX_DIGEST)
    elif st == ST_SESSION_AUDIT:
        r.u8(), r.tpm2b(MAX_DIGEST)
    elif st == ST_TIME:
        r.u64(), r.u64(), r.u32(), r.u32(), r.u8(), r.u64()
    elif st == ST_NV:
        r.tpm2b(MAX_NAME), r.u16(), r.tpm2b(MAX_NV_BUFFER)
    elif st == ST_NV_DIGEST:
        r.tpm2b(MAX_NAME), r.tpm2b(MAX_DIGEST)
    else:
        raise r.fail(f"unknown attestation type 0x{st:04x}")
    r.end()
    return Attest(*head)
