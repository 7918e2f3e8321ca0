"""Frozen, plain-Python views of parsed TPMS_ATTEST and TPMT_SIGNATURE.

tpm2-pytss parses and validates the wire format; but every attribute access on
its objects builds new wrapper objects (a union member costs 15-30 µs here), so
the hot path reads each field exactly once into these views and works on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from identity.errors import UnsupportedAlgorithm
from identity.pcr import PcrSelection
from identity.tpm.structures import HASH_ALGS, parse_attest, parse_signature

ALG_RSASSA = 0x0014
ALG_RSAPSS = 0x0016
ALG_ECDSA = 0x0018
TPM_ST_ATTEST_CERTIFY = 0x8017
TPM_ST_ATTEST_QUOTE = 0x8018


@dataclass(frozen=True, slots=True)
class SignatureView:
    alg: int
    hash_name: str
    r: bytes = b""  # ECDSA
    s: bytes = b""  # ECDSA
    raw: bytes = b""  # RSA


@dataclass(frozen=True, slots=True)
class AttestView:
    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    pcr_selection: PcrSelection | None = None  # quotes
    pcr_digest: bytes = b""  # quotes
    certified_name: bytes = b""  # certify


def read_signature(data: bytes) -> SignatureView:
    """Parse a marshalled TPMT_SIGNATURE (strictly) and read its fields once."""
    sig = parse_signature(data)
    alg = int(sig.sigAlg)
    union = sig.signature
    if alg == ALG_ECDSA:
        ecc = union.ecdsa
        return SignatureView(alg, HASH_ALGS.get(int(ecc.hash), "unknown"),
                             r=bytes(ecc.signatureR), s=bytes(ecc.signatureS))
    if alg in (ALG_RSASSA, ALG_RSAPSS):
        rsa = union.rsassa  # same layout as rsapss
        return SignatureView(alg, HASH_ALGS.get(int(rsa.hash), "unknown"), raw=bytes(rsa.sig))
    raise UnsupportedAlgorithm(f"signature algorithm 0x{alg:04x}")


def read_attest(data: bytes) -> AttestView:
    """Parse a marshalled TPMS_ATTEST (strictly) and read the fields we check once."""
    att = parse_attest(data)
    st = int(att.type)
    clock = att.clockInfo
    view = AttestView(
        magic=int(att.magic), type=st, qualified_signer=bytes(att.qualifiedSigner),
        extra_data=bytes(att.extraData), clock=int(clock.clock),
        reset_count=int(clock.resetCount), restart_count=int(clock.restartCount),
        safe=bool(clock.safe), firmware_version=int(att.firmwareVersion),
    )
    if st == TPM_ST_ATTEST_QUOTE:
        # Decode now: sub-objects must not outlive the parsed structure they point into.
        quote = att.attested.quote
        return replace(view, pcr_selection=PcrSelection.from_tpml(quote.pcrSelect),
                       pcr_digest=bytes(quote.pcrDigest))
    if st == TPM_ST_ATTEST_CERTIFY:
        return replace(view, certified_name=bytes(att.attested.certify.name))
    return view
