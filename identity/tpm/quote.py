"""Verification of a TPM2_Quote (TPM 2.0 Library Part 2 10.12, Part 3 18.4).

Every check runs and is reported; the caller issues nothing unless all pass.
PCR indices come only from the signed ``pcrSelect``; values the device sends
are trusted only once they hash to the signed ``pcrDigest``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from identity.checks import Check, CheckRunner
from identity.errors import (
    ClockRollback,
    EvidenceError,
    FirmwareDenied,
    IdentityError,
    PcrDigestMismatch,
    PcrSelectionMismatch,
    QuoteMagicInvalid,
    QuoteNonceMismatch,
    QuoteSchemeMismatch,
    QuoteSignatureInvalid,
    QuoteSignerMismatch,
    QuoteTypeInvalid,
    ResetCountRollback,
)
from identity.pcr import PcrSelection, PcrValues, check_values_match_selection, pcr_digest
from identity.tpm.ak import TpmKey
from identity.tpm.keys import signature_scheme, verify_tpm_signature
from identity.tpm.structures import (
    DIGEST_SIZES,
    HASH_ALGS,
    HASH_IDS,
    MAX_STRUCTURE,
    parse_attest,
    parse_signature,
)
from identity.tpm.wire import ST_CERTIFY as TPM_ST_ATTEST_CERTIFY
from identity.tpm.wire import ST_QUOTE as TPM_ST_ATTEST_QUOTE
from identity.tpm.wire import Attest, decode_signature_fast, quote_fast

__all__ = ["TPM_ST_ATTEST_CERTIFY", "TPM_ST_ATTEST_QUOTE", "verify_quote"]
TPM_GENERATED_VALUE = 0xFF544347
TPM_RH_OWNER = 0x40000001


class ClockState(NamedTuple):
    """TPMS_CLOCK_INFO of the last accepted quote of an AK."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool

    @classmethod
    def from_attest(cls, att: Attest) -> ClockState:
        return cls(att.clock, att.reset_count, att.restart_count, att.safe)


class QuoteResult(NamedTuple):
    passed: bool  # every quote.* check passed
    selection: PcrSelection | None
    clock: ClockState
    firmware_version: int
    reset_since_last: bool


def qualified_name(parent_qualified_name: bytes, name: bytes) -> bytes:
    """QN(child) = nameAlg || H_nameAlg(QN(parent) || Name(child)) (Part 1, 16)."""
    alg = int.from_bytes(name[:2], "big")
    hash_name = {v: k for k, v in HASH_IDS.items()}.get(alg)
    if hash_name is None:
        raise ValueError(f"unknown nameAlg 0x{alg:04x}")
    return name[:2] + hashlib.new(hash_name, parent_qualified_name + name).digest()


def owner_child_qualified_name(parent_name: bytes, name: bytes) -> bytes:
    """QN of a key whose parent is a primary key in the owner hierarchy."""
    owner_qn = TPM_RH_OWNER.to_bytes(4, "big")
    return qualified_name(qualified_name(owner_qn, parent_name), name)


@dataclass(frozen=True, slots=True)
class AttestErrors:
    """The reason codes a signed TPMS_ATTEST check raises, per structure kind."""

    scheme: type[EvidenceError]
    signature: type[EvidenceError]
    magic: type[EvidenceError]


QUOTE_ERRORS = AttestErrors(QuoteSchemeMismatch, QuoteSignatureInvalid, QuoteMagicInvalid)


def check_signed_attest(
    runner: CheckRunner,
    key: TpmKey,
    attest: bytes,
    signature: bytes,
    what: str,
    errors: AttestErrors = QUOTE_ERRORS,
) -> Attest:
    """Parse, then check scheme pinning, signature and magic; return the attest's fields."""
    att = parse_attest(attest)
    sig = parse_signature(signature)
    scheme = signature_scheme(sig)
    pinned = key.scheme is not None and scheme == key.scheme
    runner.record(f"{what}.scheme", None if pinned else errors.scheme(
        f"{what} uses {scheme}, the key is pinned to {key.scheme}"))
    if pinned:
        runner.record(f"{what}.signature", None if verify_tpm_signature(key.key, sig, attest)
                      else errors.signature(f"{what} signature does not verify with the AK"))
    else:
        runner.skip(f"{what}.signature", "signature scheme not the pinned one")
    runner.record(f"{what}.magic", None if att.magic == TPM_GENERATED_VALUE else errors.magic(
        f"magic 0x{att.magic:08x} is not TPM_GENERATED_VALUE"))
    return att


def verify_quote(
    runner: CheckRunner,
    ak: TpmKey,
    attest: bytes,
    signature: bytes,
    *,
    nonce: bytes,
    pcr_values: PcrValues,
    required: PcrSelection,
    previous: ClockState | None = None,
    firmware_denied: Callable[[int], bool] | None = None,
    expected_signer: bytes | None = None,
) -> QuoteResult:
    """Verify a quote by the enrolled AK over ``pcr_values`` with ``nonce``, recording
    every ``quote.*`` check (and clock warnings) in ``runner``.

    ``previous`` is the clock state of the last accepted quote of this AK.
    ``expected_signer`` is the AK's qualified name when it can be computed.
    Malformed structures raise :class:`TpmStructureMalformed`.

    A regular quote whose every check passes is verified in one pass
    (:func:`_one_pass`); anything else, or any failed check, runs the check-by-check
    path, which records each outcome with its reason.
    """
    before = len(runner.checks)
    passed = _one_pass(ak, attest, signature, nonce, pcr_values, required, expected_signer)
    if passed is None:
        att, selection = _check_each(runner, ak, attest, signature, nonce, pcr_values,
                                     required, expected_signer)
    else:
        att, selection = passed
        runner.checks.extend(_PASSED_SIGNER if expected_signer is not None else _PASSED)
    clock = ClockState.from_attest(att)
    reset = _check_clock(runner, clock, previous)
    firmware = att.firmware_version
    if firmware_denied is not None:
        runner.record("quote.firmware", None if not firmware_denied(firmware) else FirmwareDenied(
            f"TPM firmware version 0x{firmware:016x} is denied"))
    return QuoteResult(all(c.passed for c in runner.checks[before:]), selection, clock,
                       firmware, reset)


_PASSED = tuple(Check(f"quote.{name}", True) for name in (
    "scheme", "signature", "magic", "type", "nonce", "pcr_selection", "pcr_values",
    "pcr_digest"))
_PASSED_SIGNER = (*_PASSED[:5], Check("quote.qualified_signer", True), *_PASSED[5:])


def _one_pass(ak: TpmKey, attest: bytes, signature: bytes, nonce: bytes,
              pcr_values: PcrValues, required: PcrSelection, expected_signer: bytes | None,
              ) -> tuple[Attest, PcrSelection] | None:
    """The quote's fields and signed selection if every check of :func:`_check_each`
    passes, read in one pass over the structures; None if any would not (or the input is
    irregular), without saying why: the caller then runs :func:`_check_each`.
    Differentially tested against it (tests/identity/test_quote_one_pass.py)."""
    scheme = ak.scheme
    if (scheme is None or scheme.hash_name not in _DIGESTS or type(attest) is not bytes
            or type(signature) is not bytes or not 0 < len(attest) <= MAX_STRUCTURE):
        return None
    att = quote_fast(attest)
    if att is None or att.magic != TPM_GENERATED_VALUE:
        return None
    # Signature: exactly the pinned scheme and hash, then the verification itself.
    sig = decode_signature_fast(signature)
    if sig is None:
        try:
            sig = parse_signature(signature)
        except IdentityError:
            return None
    if sig.alg != scheme.alg or HASH_ALGS.get(sig.hash_alg) != scheme.hash_name:
        return None
    if not verify_tpm_signature(ak.key, sig, attest):
        return None
    if not hmac.compare_digest(att.extra_data, nonce) or (
            expected_signer is not None
            and not hmac.compare_digest(att.qualified_signer, expected_signer)):
        return None
    try:
        selection = PcrSelection.from_wire(att.pcr_select)
    except IdentityError:
        return None
    if selection.covers(required):
        return None
    # The values are exactly the signed selection's PCRs, and hash to the signed digest.
    if len(pcr_values) != len(selection.banks):
        return None
    h = _DIGESTS[scheme.hash_name]()
    for bank, indices in selection.banks:
        got = pcr_values.get(bank)
        if got is None or len(got) != len(indices):
            return None
        size = DIGEST_SIZES[bank]
        for i in indices:
            value = got.get(i)
            if value is None or len(value) != size:
                return None
            h.update(value)
    if not hmac.compare_digest(h.digest(), att.pcr_digest):
        return None
    return att, selection


_DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _check_each(runner: CheckRunner, ak: TpmKey, attest: bytes, signature: bytes,
                nonce: bytes, pcr_values: PcrValues, required: PcrSelection,
                expected_signer: bytes | None) -> tuple[Attest, PcrSelection | None]:
    """Every check of the quote's structures, each recorded with its outcome."""
    att = check_signed_attest(runner, ak, attest, signature, "quote")
    is_quote = att.type == TPM_ST_ATTEST_QUOTE
    runner.record("quote.type", None if is_quote else QuoteTypeInvalid(
        f"type 0x{att.type:04x} is not TPM_ST_ATTEST_QUOTE"))
    runner.record("quote.nonce", None if hmac.compare_digest(att.extra_data, nonce)
                  else QuoteNonceMismatch("extraData is not the nonce this attestation was given"))
    if expected_signer is not None:
        runner.record("quote.qualified_signer",
                      None if hmac.compare_digest(att.qualified_signer, expected_signer)
                      else QuoteSignerMismatch("qualifiedSigner is not the enrolled AK"))

    selection: PcrSelection | None = None
    if is_quote:
        # PCR indices come only from here: the selection the TPM signed.
        selection = PcrSelection.from_wire(att.pcr_select)
        missing = selection.covers(required)
        runner.record("quote.pcr_selection", None if not missing else PcrSelectionMismatch(
            f"signed selection lacks {', '.join(missing)}"))
        problems = check_values_match_selection(selection, pcr_values)
        if runner.record("quote.pcr_values", None if not problems
                         else PcrSelectionMismatch("; ".join(problems))):
            hash_name = ak.scheme.hash_name if ak.scheme else "sha256"
            expected = pcr_digest(selection, pcr_values, hash_name)
            runner.record("quote.pcr_digest", None if hmac.compare_digest(
                expected, att.pcr_digest) else PcrDigestMismatch(
                "PCR values do not hash to the signed pcrDigest"))
        else:
            runner.skip("quote.pcr_digest", "PCR values do not match the signed selection")
    else:
        runner.skip("quote.pcr_digest", "not a quote structure")
    return att, selection


def _check_clock(runner: CheckRunner, now: ClockState, previous: ClockState | None) -> bool:
    """Counters never decrease; clock never goes back while ``safe``. True if reset."""
    if previous is None:
        return False
    counters_now = (now.reset_count, now.restart_count)
    counters_before = (previous.reset_count, previous.restart_count)
    runner.record("quote.reset_count", None if counters_now >= counters_before
                  else ResetCountRollback(f"resetCount/restartCount {counters_now} below "
                                          f"last accepted {counters_before}"))
    if not now.safe:
        # safe == 0 follows a power loss: Clock may legitimately have gone back.
        # Freshness comes from the nonce, so skip only this comparison.
        runner.warnings.append("clock.unsafe: TPM reports safe=0 (power loss); clock not compared")
    else:
        runner.record("quote.clock", None if now.clock >= previous.clock else ClockRollback(
            f"clock {now.clock} is before last accepted {previous.clock}"))
    return now.reset_count > previous.reset_count
