"""A parsed binary IMA list keeps its entries as offsets and replays in place: the same
entries, and the same replay, as the entries built one by one.

Differential: lists of ima-ng, ima-sig, ima-buf and 'ima' entries, with violations,
forged template hashes and byte mutations, replayed in place and as a plain list of
:class:`ImaEntry` (the path every other caller takes).
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.ima import binary_entry, template_data
from identity.errors import IdentityError
from identity.ima import replay as replay_module
from identity.ima.log import ImaEntries, parse_binary
from identity.ima.replay import ImaReplay, replay_ima


def _field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


KIND = st.sampled_from(["ima-ng", "ima-ng", "ima-sig", "ima-sig-none", "ima-buf", "ima",
                        "violation", "forged"])
LISTS = st.lists(st.tuples(KIND, st.text("ab/._-", min_size=1, max_size=8),
                           st.sampled_from([10, 10, 10, 11])), min_size=1, max_size=10)


def _entry(kind: str, path: str, pcr: int, bank: str) -> bytes:
    digest = hashlib.sha256(path.encode()).digest()
    ng = template_data("/" + path, "sha256", digest)
    if kind == "ima":
        name = path.encode()
        digest = hashlib.sha256(name).digest()[:20]
        return binary_entry(digest + struct.pack("<I", len(name)) + name, "ima", pcr, bank)
    if kind in ("ima-sig", "ima-sig-none"):
        sig = b"\x03\x02\x04" + bytes(6) + b"s" * 8 if kind == "ima-sig" else b""
        return binary_entry(ng + _field(sig), "ima-sig", pcr, bank)
    if kind == "ima-buf":
        return binary_entry(_field(b"sha256:\x00" + digest) + _field(b"kexec-cmdline\x00")
                            + _field(path.encode()), "ima-buf", pcr, bank)
    raw = bytearray(binary_entry(ng, "ima-ng", pcr, bank))
    if kind == "ima-ng":
        return bytes(raw)
    size = hashlib.new(bank).digest_size
    raw[4:4 + size] = bytes(size) if kind == "violation" else b"\x01" * size
    return bytes(raw)


def _outcome(entries: object, bank: str, list_bank: str, quoted: bool) -> object:
    try:
        plain = replay_ima(entries, [bank], list_bank=list_bank)  # type: ignore[arg-type]
        if not quoted:
            return plain
        return replay_ima(entries, [bank], quoted={bank: plain.state.pcrs[bank]},  # type: ignore[arg-type]
                          list_bank=list_bank)
    except IdentityError as exc:
        return type(exc), str(exc)


def _same_replays(entries: ImaEntries, list_bank: str) -> None:
    built = list(entries)
    assert entries == built and len(entries) == len(built)
    assert list(entries[1:]) == built[1:] and entries[:-1] == built[:-1]
    for bank in ("sha1", "sha256"):
        for quoted in (False, True):
            assert _outcome(entries, bank, list_bank, quoted) == \
                _outcome(built, bank, list_bank, quoted)


@settings(max_examples=150, deadline=None)
@given(LISTS, st.sampled_from(["sha1", "sha256"]), st.data())
def test_in_place_replay_is_the_built_entries_replay(
        spec: list[tuple[str, str, int]], list_bank: str, data: st.DataObject) -> None:
    blob = bytearray(b"".join(_entry(k, p, pcr, list_bank) for k, p, pcr in spec))
    for _ in range(data.draw(st.integers(0, 2))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        listing = parse_binary(bytes(blob), list_bank)
    except IdentityError:
        return
    _same_replays(listing.entries, list_bank)


def test_a_parsed_list_replays_without_building_entries(monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    blob = b"".join(_entry(k, str(i), 10, "sha256")
                    for i, k in enumerate(["ima-ng", "ima-sig", "violation", "forged"]))
    listing = parse_binary(blob, "sha256")
    expected = replay_ima(list(listing.entries), ["sha256"], list_bank="sha256")
    monkeypatch.setattr(replay_module, "_replay_one_bank", None)
    monkeypatch.setattr(ImaEntries, "_entry", None)
    result = replay_ima(listing.entries, ["sha256"], list_bank="sha256")
    assert isinstance(result, ImaReplay) and result == expected
    assert result.violations == 1 and result.template_hash_failures == [3]


def test_malformed_entries_are_refused_at_parse_time() -> None:
    good = _entry("ima-sig", "a", 10, "sha1")
    # The signature field claims one byte more than the template data holds.
    bad = bytearray(good)
    bad[-17 - 4:-17] = struct.pack("<I", 18)
    with pytest.raises(IdentityError, match="exceeds the template data"):
        parse_binary(good + bytes(bad), "sha1")
