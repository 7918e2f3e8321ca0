"""IMA template-hash verification, PCR10 replay and the boot aggregate.

A violation (an entry whose template hash is all zeros: a file changed while
open) extends 0xFF... instead, as the kernel does. A list that runs ahead of the
quote is accepted up to the entry whose running value equals the quoted PCR10;
later entries wait for the next attestation. :class:`ImaState` (entries seen and
the running value) lets a renewal send only the new entries.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from identity.errors import ImaBootAggregateMismatch, ImaReplayMismatch, ImaStateInvalid
from identity.ima.log import IMA_NAME_PADDED, ImaEntry
from identity.tpm.structures import DIGEST_SIZES

IMA_PCR = 10
_ZERO20 = b"\x00" * 20
_NEW: dict[str, Callable[[bytes], Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


class ImaState(NamedTuple):
    """Where the last accepted replay ended: entries consumed and PCR10 per bank."""

    entries: int
    pcr10: dict[str, bytes]

    @classmethod
    def initial(cls, banks: Sequence[str]) -> ImaState:
        return cls(0, {bank: b"\x00" * DIGEST_SIZES[bank] for bank in banks})

    def as_dict(self) -> dict[str, object]:
        return {"entries": self.entries, "pcr10": {b: v.hex() for b, v in self.pcr10.items()}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ImaState:
        try:
            return cls(int(raw["entries"]),
                       {str(b): bytes.fromhex(v) for b, v in dict(raw["pcr10"]).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ImaStateInvalid(f"stored IMA state is unreadable: {exc}") from exc


class ImaReplay(NamedTuple):
    accepted: int  # entries of this batch covered by the quote
    pending: int  # entries after the quoted value (measured after the quote)
    violations: int
    template_hash_failures: list[int]  # indexes within the batch
    state: ImaState


def template_data_for_hash(entry: ImaEntry) -> bytes:
    """The bytes the kernel hashes: for 'ima', the digest and the name padded to 256."""
    if entry.template == "ima":
        return entry.digest + entry.data[20:].ljust(IMA_NAME_PADDED, b"\x00")
    return entry.data


def template_hash_ok(entry: ImaEntry) -> bool:
    expected = hashlib.sha1(template_data_for_hash(entry)).digest()  # noqa: S324 - list format
    return entry.violation or expected == entry.template_hash


def replay_ima(entries: Sequence[ImaEntry], banks: Sequence[str],
               start: ImaState | None = None,
               quoted: Mapping[str, bytes] | None = None,
               *, check_template_hashes: bool | None = None) -> ImaReplay:
    """Replay ``entries`` (the ones after ``start``) into PCR10 for each bank.

    With ``quoted`` (bank -> quoted PCR10), stop at the last entry whose running
    value equals it; no such point raises :class:`ImaReplayMismatch`.
    ``check_template_hashes`` (default: when the SHA-1 bank is replayed) recomputes
    each SHA-1 template hash. A SHA-1 replay extends those hashes and needs them
    checked; any other bank hashes the template data itself, so the quote already
    proves the data and the SHA-1 field is unused.
    """
    verify = "sha1" in banks if check_template_hashes is None else check_template_hashes
    state = start or ImaState.initial(banks)
    for bank in banks:
        if bank not in _NEW:
            raise ImaStateInvalid(f"IMA replay in {bank} is not supported")
        if bank not in state.pcr10:
            raise ImaStateInvalid(f"no running {bank} PCR10 value in the stored IMA state")
    running = [state.pcr10[bank] for bank in banks]
    news = [_NEW[bank] for bank in banks]
    ff = [b"\xff" * DIGEST_SIZES[bank] for bank in banks]
    sha1_at = banks.index("sha1") if "sha1" in banks else -1
    others = [j for j in range(len(banks)) if j != sha1_at]
    target: tuple[int, bytes] | None = None
    if quoted:
        bank = next(iter(quoted))
        target = (list(banks).index(bank), quoted[bank])
    matched_at = 0 if target is not None and running[target[0]] == target[1] else -1
    sha1 = hashlib.sha1
    zero = _ZERO20
    violations, failures = 0, []
    if len(banks) == 1 and sha1_at < 0 and not verify:
        return _replay_one_bank(entries, banks[0], state, running[0], target, matched_at)
    for i, entry in enumerate(entries):
        if entry.pcr != IMA_PCR:
            continue
        if entry.template_hash == zero:
            violations += 1
            for j, new in enumerate(news):
                running[j] = new(running[j] + ff[j]).digest()
        else:
            data = entry.data if entry.template != "ima" else template_data_for_hash(entry)
            if verify and sha1(data).digest() != entry.template_hash:  # noqa: S324 - format
                failures.append(i)
            if sha1_at >= 0:
                running[sha1_at] = sha1(running[sha1_at] + entry.template_hash).digest()  # noqa: S324
            for j in others:
                new = news[j]
                running[j] = new(running[j] + new(data).digest()).digest()
        if target is not None and running[target[0]] == target[1]:
            matched_at = i + 1
    final = dict(zip(banks, running, strict=True))
    if quoted is not None:
        if matched_at < 0:
            raise ImaReplayMismatch("no prefix of the IMA list replays to the quoted PCR10")
        if matched_at != len(entries):
            # Re-run to the matched point for the state (cheap: rare, and only a prefix).
            return _prefix(entries, banks, state, matched_at, violations, failures)
    return ImaReplay(len(entries), 0, violations, failures,
                     ImaState(state.entries + len(entries), final))


def _replay_one_bank(entries: Sequence[ImaEntry], bank: str, state: ImaState, value: bytes,
                     target: tuple[int, bytes] | None, matched_at: int) -> ImaReplay:
    """The common case (one non-SHA-1 bank, as the attestor replays) in a tight loop."""
    new = _NEW[bank]
    ff = b"\xff" * DIGEST_SIZES[bank]
    want = target[1] if target is not None else None
    zero = _ZERO20
    violations = 0
    for i, entry in enumerate(entries):
        if entry.pcr != IMA_PCR:
            continue
        if entry.template_hash == zero:
            violations += 1
            value = new(value + ff).digest()
        else:
            data = entry.data if entry.template != "ima" else template_data_for_hash(entry)
            value = new(value + new(data).digest()).digest()
        if value == want:
            matched_at = i + 1
    if target is not None:
        if matched_at < 0:
            raise ImaReplayMismatch("no prefix of the IMA list replays to the quoted PCR10")
        if matched_at != len(entries):
            return _prefix(entries, [bank], state, matched_at, violations, [])
    return ImaReplay(len(entries), 0, violations, [],
                     ImaState(state.entries + len(entries), {bank: value}))


def _prefix(entries: Sequence[ImaEntry], banks: Sequence[str], state: ImaState, upto: int,
            violations: int, failures: list[int]) -> ImaReplay:
    head = replay_ima(entries[:upto], banks, state, check_template_hashes=False)
    return ImaReplay(upto, len(entries) - upto, head.violations,
                     [f for f in failures if f < upto], head.state)


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
