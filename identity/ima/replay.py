"""IMA template-hash verification, PCR replay and the boot aggregate.

Entries go to the PCR their policy rule named (``pcr=``; 10 by default): every PCR
the list touches is replayed and must equal its quoted value. A violation (an entry
whose template hash is all zeros: a file changed while open) extends 0xFF...
instead, as the kernel does. A list that runs ahead of the quote is accepted up to
the entry after which every touched PCR equals its quoted value; later entries wait
for the next attestation. :class:`ImaState` (entries seen and the running values)
lets a renewal send only the new entries.

Kernels before 5.8 extended every bank with the SHA-1 template hash zero-padded to
the bank's size (``padded_sha1``; identity/quirks.py, ``ima.padded_sha1_extend``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from identity.checks import CheckRunner
from identity.errors import (
    EvidenceError,
    ImaBootAggregateMismatch,
    ImaPcrNotQuoted,
    ImaReplayMismatch,
    ImaStateInvalid,
    ImaTemplateHashMismatch,
)
from identity.ima.log import ImaEntries, ImaEntry, template_data_for_hash
from identity.tpm.structures import DIGEST_SIZES

IMA_PCR = 10
_Hash = Callable[[bytes], Any]
_NEW: dict[str, _Hash] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
PADDED_QUIRK = "ima.padded_sha1_extend"


class ImaState(NamedTuple):
    """Where the last accepted replay ended: entries consumed, and per bank the running
    value of every PCR the list has extended (a PCR absent is still at zero)."""

    entries: int
    pcrs: dict[str, dict[int, bytes]]

    @classmethod
    def initial(cls, banks: Sequence[str]) -> ImaState:
        return cls(0, {bank: {} for bank in banks})

    def value(self, bank: str, pcr: int) -> bytes:
        return self.pcrs[bank].get(pcr) or b"\x00" * DIGEST_SIZES[bank]

    @property
    def pcr10(self) -> dict[str, bytes]:
        return {bank: self.value(bank, IMA_PCR) for bank in self.pcrs}

    def as_dict(self) -> dict[str, object]:
        return {"entries": self.entries,
                "pcrs": {b: {str(i): v.hex() for i, v in sorted(values.items())}
                         for b, values in self.pcrs.items()}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImaState:
        """Also reads the earlier form, ``{"entries", "pcr10": {bank: hex}}``."""
        try:
            if "pcrs" in raw:
                pcrs = {str(b): {int(i): bytes.fromhex(v) for i, v in dict(values).items()}
                        for b, values in dict(raw["pcrs"]).items()}
            else:
                pcrs = {str(b): {IMA_PCR: bytes.fromhex(v)} for b, v in dict(raw["pcr10"]).items()}
            return cls(int(raw["entries"]), pcrs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ImaStateInvalid(f"stored IMA state is unreadable: {exc}") from exc


class ImaReplay(NamedTuple):
    accepted: int  # entries of this batch covered by the quote
    pending: int  # entries after the quoted value (measured after the quote)
    violations: int
    template_hash_failures: list[int]  # indexes within the batch
    state: ImaState


def template_hash_ok(entry: ImaEntry, bank: str = "sha1") -> bool:
    """The entry's template hash is its template data hashed in ``bank`` (the list's)."""
    expected = _NEW[bank](template_data_for_hash(entry)).digest()
    return entry.violation or expected == entry.template_hash


def replay_ima(entries: Sequence[ImaEntry], banks: Sequence[str],
               start: ImaState | None = None,
               quoted: Mapping[str, Mapping[int, bytes]] | None = None,
               *, check_template_hashes: bool | None = None, list_bank: str = "sha1",
               padded_sha1: bool = False) -> ImaReplay:
    """Replay ``entries`` (the ones after ``start``) into their PCRs for each bank.

    ``list_bank`` is the bank of the list's template hashes (SHA-1 unless it is a
    per-bank list). With ``quoted`` (bank -> PCR -> quoted value), stop at the last
    entry after which every PCR the list touches equals its quoted value; no such
    point raises :class:`ImaReplayMismatch`, a touched PCR the quote lacks
    :class:`ImaPcrNotQuoted`. ``check_template_hashes`` (default: when the list's own
    bank is replayed, or ``padded_sha1``) recomputes each template hash: a replay in
    the list's bank extends those hashes and needs them checked; any other bank
    hashes the template data itself, so the quote already proves the data.
    """
    if padded_sha1 and list_bank != "sha1":
        raise ImaStateInvalid("the pre-5.8 padded replay needs the SHA-1 list")
    direct = list_bank in banks
    verify = (direct or padded_sha1) if check_template_hashes is None else check_template_hashes
    state = start or ImaState.initial(banks)
    for bank in (*banks, list_bank):
        if bank not in _NEW:
            raise ImaStateInvalid(f"IMA replay in {bank} is not supported")
    for bank in banks:
        if bank not in state.pcrs:
            raise ImaStateInvalid(f"no running {bank} IMA PCR values in the stored IMA state")
    target_bank = next(iter(quoted)) if quoted else None
    if target_bank is not None and target_bank not in banks:
        raise ImaStateInvalid(f"the quoted {target_bank} bank is not replayed")
    if len(banks) == 1 and not padded_sha1 and set(state.pcrs[banks[0]]) <= {IMA_PCR}:
        want = quoted[banks[0]].get(IMA_PCR) if quoted else None
        if quoted is None or want is not None:
            if isinstance(entries, ImaEntries) and entries.plain:
                fast = _replay_in_place(entries, banks[0], state, want, verify, list_bank)
            else:
                fast = _replay_one_bank(entries, banks[0], state, want, verify, list_bank)
            if fast is not None:
                return fast
    return _replay(entries, banks, state, quoted, target_bank, verify, list_bank, padded_sha1)


def _one_bank_start(bank: str, state: ImaState, want: bytes | None, verify: bool,
                    list_bank: str) -> tuple[_Hash, _Hash | None, bool, bytes, bytes, bytes, int]:
    """What both one-bank replays start from: the bank's hash, the list's (None when
    template hashes are not verified), whether they are one, the violation extension,
    a violation's template hash, the PCR's start value and whether it already matches."""
    new = _NEW[bank]
    check = _NEW[list_bank] if verify else None
    value = state.value(bank, IMA_PCR)
    return (new, check, check is new, b"\xff" * DIGEST_SIZES[bank],
            b"\x00" * DIGEST_SIZES[list_bank], value,
            0 if want is not None and value == want else -1)


def _replay_one_bank(entries: Sequence[ImaEntry], bank: str, state: ImaState,
                     want: bytes | None, verify: bool, list_bank: str) -> ImaReplay | None:
    """The common case (one bank, every entry on PCR10, as the attestor replays) in a
    tight loop; None at the first entry on another PCR (the general replay takes it)."""
    new, check, same, ff, zero, value, matched_at = _one_bank_start(bank, state, want,
                                                                    verify, list_bank)
    violations, failures = 0, []
    ten = IMA_PCR
    for i, entry in enumerate(entries):
        if entry.pcr != ten:
            return None
        if entry.template_hash == zero:
            violations += 1
            value = new(value + ff).digest()
        elif check is None:
            data = entry.data if entry.template != "ima" else template_data_for_hash(entry)
            value = new(value + new(data).digest()).digest()
        else:
            data = entry.data if entry.template != "ima" else template_data_for_hash(entry)
            digest = new(data).digest()
            if (digest if same else check(data).digest()) != entry.template_hash:
                failures.append(i)
            value = new(value + digest).digest()
        if value == want:
            matched_at = i + 1
    return _finish(entries, [bank], state, {bank: {IMA_PCR: value}}, want is not None,
                   matched_at, violations, failures, list_bank)


def _replay_in_place(entries: ImaEntries, bank: str, state: ImaState, want: bytes | None,
                     verify: bool, list_bank: str) -> ImaReplay | None:
    """:func:`_replay_one_bank` on a parsed binary list's bytes: each entry's template
    data hashed where it lies, its template hash compared in place, no entry built."""
    lo, hi = entries.lo, entries.hi
    pcrs = entries.pcrs[lo:hi]
    if pcrs.count(IMA_PCR) != len(pcrs):
        return None
    new, check, same, ff, zero, value, matched_at = _one_bank_start(bank, state, want,
                                                                    verify, list_bank)
    violations, failures = 0, []
    data, starts = entries.data, entries.starts
    at_hash = [start + 4 for start in starts[lo:hi]]  # where each template hash lies
    for i, (hash_at, begin, end) in enumerate(zip(at_hash, entries.data_starts[lo:hi],
                                                 starts[lo + 1:hi + 1], strict=True)):
        if data.startswith(zero, hash_at):
            violations += 1
            value = new(value + ff).digest()
        else:
            body = data[begin:end]
            digest = new(body).digest()
            if check is not None and not data.startswith(
                    digest if same else check(body).digest(), hash_at):
                failures.append(i)
            value = new(value + digest).digest()
        if value == want:
            matched_at = i + 1
    return _finish(entries, [bank], state, {bank: {IMA_PCR: value}}, want is not None,
                   matched_at, violations, failures, list_bank)


def _replay(entries: Sequence[ImaEntry], banks: Sequence[str], state: ImaState,
            quoted: Mapping[str, Mapping[int, bytes]] | None, target_bank: str | None,
            verify: bool, list_bank: str, padded: bool) -> ImaReplay:
    """Any banks, any PCRs, the padded pre-5.8 form."""
    running = [dict(state.pcrs[bank]) for bank in banks]
    news = [_NEW[bank] for bank in banks]
    sizes = [DIGEST_SIZES[bank] for bank in banks]
    zeros = [b"\x00" * size for size in sizes]
    ffs = [(b"\xff" * 20).ljust(size, b"\x00") if padded else b"\xff" * size
           for size in sizes]
    check = _NEW[list_bank]
    list_zero = b"\x00" * DIGEST_SIZES[list_bank]
    # How each bank extends: the list's own hash (verified), the padded SHA-1 hash, or
    # the template data hashed in the bank.
    mode = ["direct" if bank == list_bank else "padded" if padded else "data" for bank in banks]
    t = banks.index(target_bank) if target_bank is not None else -1
    wanted: Mapping[int, bytes] = quoted[target_bank] if quoted and target_bank else {}
    mismatched: set[int] = set()
    if t >= 0:
        touched = {entry.pcr for entry in entries} | set(running[t])
        unquoted = sorted(touched - set(wanted))
        if unquoted:
            raise ImaPcrNotQuoted(
                f"the IMA list extends PCR {', '.join(map(str, unquoted))}, which the quote "
                f"does not cover in {target_bank} (an IMA policy pcr= rule): quote it (the "
                "policy's pcrs and ima.pcrs)")
        mismatched = {p for p in touched if running[t].get(p, zeros[t]) != wanted[p]}
    matched_at = 0 if t >= 0 and not mismatched else -1
    violations, failures = 0, []
    for i, entry in enumerate(entries):
        pcr = entry.pcr
        if entry.template_hash == list_zero:
            violations += 1
            for j, new in enumerate(news):
                running[j][pcr] = new(running[j].get(pcr, zeros[j]) + ffs[j]).digest()
        else:
            data = entry.data if entry.template != "ima" else template_data_for_hash(entry)
            if verify and check(data).digest() != entry.template_hash:
                failures.append(i)
            for j, new in enumerate(news):
                how = mode[j]
                extend = (entry.template_hash if how == "direct" else
                          entry.template_hash.ljust(sizes[j], b"\x00") if how == "padded" else
                          new(data).digest())
                running[j][pcr] = new(running[j].get(pcr, zeros[j]) + extend).digest()
        if t >= 0:
            if running[t][pcr] == wanted[pcr]:
                mismatched.discard(pcr)
            else:
                mismatched.add(pcr)
            if not mismatched:
                matched_at = i + 1
    final = dict(zip(banks, running, strict=True))
    return _finish(entries, banks, state, final, t >= 0, matched_at, violations, failures,
                   list_bank, padded)


def _finish(entries: Sequence[ImaEntry], banks: Sequence[str], state: ImaState,
            final: dict[str, dict[int, bytes]], quoted: bool, matched_at: int,
            violations: int, failures: list[int], list_bank: str,
            padded: bool = False) -> ImaReplay:
    if quoted:
        if matched_at < 0:
            raise ImaReplayMismatch("no prefix of the IMA list replays to the quoted PCRs")
        if matched_at != len(entries):
            # Re-run to the matched point for the state (cheap: rare, and only a prefix).
            head = replay_ima(entries[:matched_at], banks, state, check_template_hashes=False,
                              list_bank=list_bank, padded_sha1=padded)
            return ImaReplay(matched_at, len(entries) - matched_at, head.violations,
                             [f for f in failures if f < matched_at], head.state)
    pcrs = {bank: {**state.pcrs[bank], **final[bank]} for bank in banks}
    return ImaReplay(len(entries), 0, violations, failures,
                     ImaState(state.entries + len(entries), pcrs))


def check_boot_aggregate(entries: Sequence[ImaEntry], pcrs: Mapping[str, Mapping[int, bytes]],
                         ) -> None:
    """The first entry, ``boot_aggregate``, must be H(PCR0..7) of the quoted bank (and,
    for non-SHA-1 banks on kernels 5.8+, PCR8 and PCR9 too)."""
    if not entries or entries[0].path != "boot_aggregate":
        raise ImaBootAggregateMismatch("the IMA list does not start with boot_aggregate")
    first = entries[0]
    bank = first.digest_alg
    values = pcrs.get(bank)
    if values is None or any(i not in values for i in range(8)):
        raise ImaBootAggregateMismatch(f"PCRs 0-7 of the {bank} bank were not quoted")
    new = _NEW.get(bank)
    if new is None:
        raise ImaBootAggregateMismatch(f"boot_aggregate in unsupported hash {bank}")
    base = b"".join(values[i] for i in range(8))
    candidates = [new(base).digest()]
    if bank != "sha1" and 8 in values and 9 in values:
        candidates.append(new(base + values[8] + values[9]).digest())
    if not any(hmac.compare_digest(first.digest, c) for c in candidates):
        raise ImaBootAggregateMismatch("boot_aggregate is not the hash of the quoted PCRs 0-7")


def verify_ima_replay(runner: CheckRunner, entries: Sequence[ImaEntry], bank: str,
                      start: ImaState, pcrs: Mapping[str, Mapping[int, bytes]],
                      list_bank: str, first: int) -> ImaReplay | None:
    """The appraisal's checks ``ima.replay`` (with the boot aggregate when the list starts
    at ``first`` = 0) and ``ima.template_hashes``; the replay, or None if it failed. For a
    SHA-1 list that does not reach the quote, the pre-5.8 form (the SHA-1 template hash
    zero-padded into every bank) is tried, and accepted with a warning. ``pcrs``: every
    quoted bank's values (the boot aggregate may be over another bank than ``bank``)."""
    try:
        if first == 0:
            check_boot_aggregate(entries, pcrs)
        replayed = _replay_either(entries, bank, start, pcrs.get(bank, {}), list_bank, runner)
    except EvidenceError as exc:
        runner.fail("ima.replay", exc)
        return None
    runner.record("ima.replay", None)
    # An entry whose data does not hash to its template hash is a forged description of
    # a measurement (a replay of the template hashes alone would not notice): never a
    # mere warning.
    failures = replayed.template_hash_failures
    runner.record("ima.template_hashes", None if not failures else ImaTemplateHashMismatch(
        f"{len(failures)} entries' data do not hash to their {list_bank} template hash "
        f"(first: entry {first + failures[0]})"))
    return replayed


def _replay_either(entries: Sequence[ImaEntry], bank: str, start: ImaState,
                   quoted: Mapping[int, bytes], list_bank: str,
                   runner: CheckRunner) -> ImaReplay:
    try:
        return replay_ima(entries, [bank], start, {bank: quoted}, list_bank=list_bank)
    except ImaReplayMismatch:
        if list_bank != "sha1" or bank == "sha1":
            raise
        try:
            replayed = replay_ima(entries, [bank], start, {bank: quoted}, padded_sha1=True)
        except ImaReplayMismatch:
            raise ImaReplayMismatch("no prefix of the IMA list replays to the quoted PCRs "
                                    "(as kernels 5.8+ or earlier ones extend)") from None
    if not replayed.template_hash_failures:
        runner.warnings.append(f"{PADDED_QUIRK}: the kernel extends the SHA-1 template hash "
                               f"zero-padded into {bank} (before Linux 5.8); accepted")
    return replayed
