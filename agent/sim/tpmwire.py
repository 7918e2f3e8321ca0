"""Marshalling, with ``struct``, of the TPM 2.0 structures the simulator signs.

TPM 2.0 Library Part 2: TPMS_ATTEST (10.12.12), TPMT_PUBLIC (12.2.4) of an ECC
key, TPMT_SIGNATURE (11.3.4), the Name of an object (Part 1, 16). Why not
tpm2-pytss here (STYLE.md rule 10): building and marshalling its objects cost
the fleet simulator about 1 ms of CPU a cycle, which the throughput bench's load
generator takes from the attestor on the same machine. tpm2-pytss stays the
reference: tests/agent/test_sim_wire.py proves these bytes identical to its
marshalling for the same inputs, and the PCR selection is still marshalled by it
(once per selection).
"""

from __future__ import annotations

import hashlib
import struct
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec

from identity.pcr import PcrSelection

# TPM_ALG_ID (Part 2, 6.3) and TPM_ECC_CURVE (6.4)
ALG_SHA1, ALG_SHA256, ALG_SHA384, ALG_SHA512 = 0x0004, 0x000B, 0x000C, 0x000D
ALG_RSASSA, ALG_RSAPSS, ALG_ECDSA, ALG_ECC, ALG_NULL = 0x0014, 0x0016, 0x0018, 0x0023, 0x0010
HASH_ALGS = {"sha1": ALG_SHA1, "sha256": ALG_SHA256, "sha384": ALG_SHA384,
             "sha512": ALG_SHA512}
_HASH_NAMES = {alg: name for name, alg in HASH_ALGS.items()}
CURVES = {"secp192r1": 0x0001, "secp224r1": 0x0002, "secp256r1": 0x0003, "secp384r1": 0x0004,
          "secp521r1": 0x0005}
# sizeof the TPM2B buffers as tpm2-tss defines them (tpm2-pytss refuses more)
MAX_NAME, MAX_DATA, MAX_DIGEST = 68, 64, 64

_HEADER = struct.Struct(">IH")  # magic, type
_CLOCK_FIRMWARE = struct.Struct(">QIIBQ")  # clock, resetCount, restartCount, safe, firmware
# type, nameAlg, objectAttributes, authPolicy size, symmetric, scheme and its hash, curve, kdf
_ECC_AREA = struct.Struct(">HHIHHHHHH")


def tpm2b(data: bytes, limit: int | None = None) -> bytes:
    """A TPM2B: two-byte big-endian size, then the bytes."""
    if limit is not None and len(data) > limit:
        raise ValueError(f"{len(data)} bytes do not fit a TPM2B of at most {limit}")
    return len(data).to_bytes(2, "big") + data


def attest(magic: int, st: int, signer_name: bytes, extra: bytes, clock: int, reset_count: int,
           restart_count: int, safe: bool, firmware: int, attested: bytes) -> bytes:
    """A marshalled TPMS_ATTEST; ``attested`` is the marshalled TPMU_ATTEST member."""
    return b"".join((_HEADER.pack(magic, st), tpm2b(signer_name, MAX_NAME),
                     tpm2b(extra, MAX_DATA),
                     _CLOCK_FIRMWARE.pack(clock, reset_count, restart_count, int(safe),
                                          firmware), attested))


@lru_cache(maxsize=64)
def pcr_selection(selection: PcrSelection) -> bytes:
    """The marshalled TPML_PCR_SELECTION (by tpm2-pytss, once per selection)."""
    return bytes(selection.to_tpml().marshal())


def quote_info(selection: PcrSelection, pcr_digest: bytes) -> bytes:
    """A marshalled TPMS_QUOTE_INFO."""
    return pcr_selection(selection) + tpm2b(pcr_digest, MAX_DIGEST)


def certify_info(name: bytes, qualified_name: bytes) -> bytes:
    """A marshalled TPMS_CERTIFY_INFO."""
    return tpm2b(name, MAX_NAME) + tpm2b(qualified_name, MAX_NAME)


def _unpadded(value: int) -> bytes:
    # tpm2-pytss's from_pem writes ECC coordinates without leading zero bytes
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def ecc_public(key: ec.EllipticCurvePublicKey, attributes: int, hash_alg: int,
               name_alg: int = ALG_SHA256) -> bytes:
    """The TPM2B_PUBLIC that ``TPM2B_PUBLIC.from_pem`` gives for ``key`` with these
    attributes and an ECDSA scheme: no policy, no symmetric algorithm, no KDF."""
    curve = CURVES[key.curve.name]
    numbers = key.public_numbers()
    area = b"".join((_ECC_AREA.pack(ALG_ECC, name_alg, attributes, 0, ALG_NULL, ALG_ECDSA,
                                    hash_alg, curve, ALG_NULL),
                     tpm2b(_unpadded(numbers.x)), tpm2b(_unpadded(numbers.y))))
    return tpm2b(area)


def object_name(public: bytes) -> bytes:
    """The Name of the object whose TPM2B_PUBLIC is ``public``: nameAlg, then the
    nameAlg digest of the TPMT_PUBLIC."""
    area = public[2:]
    name_alg = int.from_bytes(area[2:4], "big")
    if len(area) != int.from_bytes(public[:2], "big") or name_alg not in _HASH_NAMES:
        raise ValueError("not a TPM2B_PUBLIC with a known name algorithm")
    return area[2:4] + hashlib.new(_HASH_NAMES[name_alg], area).digest()


def ecdsa_signature(hash_alg: int, r: bytes, s: bytes) -> bytes:
    """A marshalled TPMT_SIGNATURE of the ECDSA scheme."""
    return struct.pack(">HH", ALG_ECDSA, hash_alg) + tpm2b(r) + tpm2b(s)


def rsa_signature(sig_alg: int, hash_alg: int, signature: bytes) -> bytes:
    """A marshalled TPMT_SIGNATURE of the RSASSA or RSAPSS scheme."""
    return struct.pack(">HH", sig_alg, hash_alg) + tpm2b(signature)
