"""PCR selections, PCR value sets and the quote's pcrDigest.

A selection is an ordered list of (bank, indices): order matters because the
TPM concatenates PCR values in the order of the TPML_PCR_SELECTION it signed.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tpm2_pytss import TPML_PCR_SELECTION, TPMS_PCR_SELECTION

from identity.errors import MalformedInput, TpmStructureMalformed
from identity.tpm.structures import DIGEST_SIZES, HASH_ALGS, HASH_IDS

MAX_PCR = 23  # PC Client TPMs have 24 PCRs per bank
_HASH_CONSTRUCTORS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256,
                      "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_BITS = tuple(tuple(bit for bit in range(8) if value >> bit & 1) for value in range(256))
PcrValues = Mapping[str, Mapping[int, bytes]]
"""bank name -> PCR index -> value."""


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """An ordered selection: ``((bank, (indices...)), ...)``, indices ascending."""

    banks: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, selection: Mapping[str, Iterable[int]]) -> PcrSelection:
        banks = []
        for bank, indices in selection.items():
            if bank not in HASH_IDS:
                raise MalformedInput(f"unknown PCR bank {bank!r}")
            idx = tuple(sorted(set(indices)))
            if any(i < 0 or i > MAX_PCR for i in idx):
                raise MalformedInput(f"PCR index out of range in bank {bank}")
            if idx:
                banks.append((bank, idx))
        return cls(tuple(banks))

    @classmethod
    def from_tpml(cls, tpml: TPML_PCR_SELECTION) -> PcrSelection:
        """From a tpm2-pytss TPML_PCR_SELECTION (as ESAPI returns it)."""
        pairs = []
        for i in range(int(tpml.count)):
            sel: TPMS_PCR_SELECTION = tpml.pcrSelections[i]
            pairs.append((int(sel.hash), bytes(sel.pcrSelect)[: int(sel.sizeofSelect)]))
        return cls.from_wire(tuple(pairs))

    @classmethod
    def from_wire(cls, selections: tuple[tuple[int, bytes], ...]) -> PcrSelection:
        """From a decoded TPML_PCR_SELECTION: (hash alg, bitmap) pairs, signed order."""
        return _from_wire(selections)

    @classmethod
    def _decode(cls, selections: tuple[tuple[int, bytes], ...]) -> PcrSelection:
        banks: list[tuple[str, tuple[int, ...]]] = []
        seen: set[str] = set()
        for alg, bitmap in selections:
            bank = HASH_ALGS.get(alg)
            if bank is None:
                raise TpmStructureMalformed(f"unknown PCR bank 0x{alg:04x}")
            if bank in seen:
                raise TpmStructureMalformed(f"PCR bank {bank} selected twice")
            seen.add(bank)
            idx = tuple(byte * 8 + bit for byte, value in enumerate(bitmap)
                        for bit in _BITS[value])
            if any(i > MAX_PCR for i in idx):
                raise TpmStructureMalformed(f"PCR index above {MAX_PCR} in bank {bank}")
            if idx:
                banks.append((bank, idx))
        return cls(tuple(banks))

    def to_tpml(self) -> TPML_PCR_SELECTION:
        spec = "+".join(f"{bank}:{','.join(map(str, idx))}" for bank, idx in self.banks)
        return TPML_PCR_SELECTION.parse(spec)

    def as_dict(self) -> dict[str, list[int]]:
        return {bank: list(idx) for bank, idx in self.banks}

    def covers(self, other: PcrSelection) -> list[str]:
        """What of ``other`` this selection lacks, as ``bank:index`` strings."""
        return list(_lacking(self, other))

    def __str__(self) -> str:
        return "+".join(f"{b}:{','.join(map(str, i))}" for b, i in self.banks) or "(empty)"


@functools.lru_cache(maxsize=256)
def _from_wire(selections: tuple[tuple[int, bytes], ...]) -> PcrSelection:
    # A fleet quotes a handful of distinct selections: decode each once.
    return PcrSelection._decode(selections)


@functools.lru_cache(maxsize=256)
def _index_set(indices: tuple[int, ...]) -> frozenset[int]:
    return frozenset(indices)


@functools.lru_cache(maxsize=256)
def _lacking(have: PcrSelection, want: PcrSelection) -> tuple[str, ...]:
    mine = {bank: set(idx) for bank, idx in have.banks}
    return tuple(f"{bank}:{i}" for bank, idx in want.banks for i in idx
                 if i not in mine.get(bank, ()))


def check_values_match_selection(selection: PcrSelection, values: PcrValues) -> list[str]:
    """Problems if ``values`` is not exactly the selected PCRs with the right sizes."""
    if len(values) == len(selection.banks):
        for bank, indices in selection.banks:
            got = values.get(bank)
            if got is None or got.keys() != _index_set(indices):
                break
            size = DIGEST_SIZES[bank]
            if any(len(v) != size for v in got.values()):
                break
        else:
            return []
    problems: list[str] = []
    selected = {bank: set(idx) for bank, idx in selection.banks}
    for bank in values:
        if bank not in selected:
            problems.append(f"values for unselected bank {bank}")
    for bank, idx in selected.items():
        got = values.get(bank, {})
        extra = set(got) - idx
        missing = idx - set(got)
        if extra:
            problems.append(f"{bank}: unselected PCRs {sorted(extra)}")
        if missing:
            problems.append(f"{bank}: missing PCRs {sorted(missing)}")
        for i in idx & set(got):
            if len(got[i]) != DIGEST_SIZES[bank]:
                problems.append(f"{bank}:{i} has {len(got[i])} bytes")
    return problems


def pcr_digest(selection: PcrSelection, values: PcrValues, hash_name: str) -> bytes:
    """H(concatenated values in selection order), H being the quote's signing hash."""
    h = _HASH_CONSTRUCTORS[hash_name]() if hash_name in _HASH_CONSTRUCTORS else hashlib.new(
        hash_name)
    for bank, idx in selection.banks:
        for i in idx:
            h.update(values[bank][i])
    return h.digest()


def parse_pcr_values(raw: Mapping[str, Mapping[str, str]]) -> dict[str, dict[int, bytes]]:
    """From the wire form ``{"sha256": {"0": "<hex>", ...}}``."""
    out: dict[str, dict[int, bytes]] = {}
    for bank, entries in raw.items():
        if bank not in HASH_IDS:
            raise MalformedInput(f"unknown PCR bank {bank!r}")
        bank_values: dict[int, bytes] = {}
        for key, hexval in entries.items():
            try:
                index = int(key)
                value = bytes.fromhex(hexval)
            except (ValueError, TypeError) as exc:
                raise MalformedInput(f"PCR {bank}:{key} is not index/hex") from exc
            if not 0 <= index <= MAX_PCR:
                raise MalformedInput(f"PCR index {index} out of range")
            if len(value) != DIGEST_SIZES[bank]:
                raise MalformedInput(f"PCR {bank}:{index} has {len(value)} bytes")
            bank_values[index] = value
        out[bank] = bank_values
    return out


def format_pcr_values(values: PcrValues) -> dict[str, dict[str, str]]:
    return {
        bank: {str(i): v.hex() for i, v in sorted(entries.items())}
        for bank, entries in values.items()
    }
