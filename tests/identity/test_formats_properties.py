"""Property tests for the real-world layouts: per-bank IMA lists on any PCRs, cut at any
byte, and event logs whose events carry any subset of the Spec ID's banks."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.ima import binary_entry, template_data
from identity.eventlog.replay import replay
from identity.eventlog.tcg import encode_agile_event, encode_spec_id_event, parse_event_log
from identity.ima.log import parse_binary
from identity.ima.replay import replay_ima

BANKS = ("sha1", "sha256", "sha384", "sha512")
ENTRIES = st.lists(st.tuples(st.text("abc/._-", min_size=1, max_size=12),
                             st.sampled_from([10, 10, 10, 11, 13])), min_size=1, max_size=12)


def _expected(entries: list[tuple[bytes, int]], bank: str) -> dict[int, bytes]:
    pcrs: dict[int, bytes] = {}
    zero = b"\x00" * hashlib.new(bank).digest_size
    for data, pcr in entries:
        pcrs[pcr] = hashlib.new(bank, pcrs.get(pcr, zero) + hashlib.new(bank, data).digest()
                                ).digest()
    return pcrs


@settings(max_examples=60, deadline=None)
@given(ENTRIES, st.sampled_from(BANKS), st.sampled_from(("sha1", "sha256")),
       st.integers(min_value=0, max_value=10_000))
def test_per_bank_lists_replay_every_pcr_they_touch(entries: list[tuple[str, int]],
                                                     list_bank: str, bank: str,
                                                     cut: int) -> None:
    datas = [(template_data("/" + p, "sha256", hashlib.sha256(p.encode()).digest()), pcr)
             for p, pcr in entries]
    blob = b"".join(binary_entry(d, pcr=pcr, bank=list_bank) for d, pcr in datas)
    listing = parse_binary(blob)
    assert listing.bank == list_bank and len(listing.entries) == len(datas)
    expected = _expected(datas, bank)
    result = replay_ima(listing.entries, [bank], quoted={bank: expected}, list_bank=list_bank)
    assert result.accepted == len(datas) and result.template_hash_failures == []
    assert result.state.pcrs[bank] == expected
    cut %= len(blob)
    partial = parse_binary(blob[:cut], list_bank)
    complete = sum(1 for end in listing.offsets[1:] if end <= cut)
    assert len(partial.entries) == complete and partial.entries == listing.entries[:complete]
    assert partial.trailing == cut - listing.offsets[complete]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=9),
                          st.sets(st.sampled_from(("sha1", "sha256", "sha384")))),
                min_size=1, max_size=15))
def test_each_bank_replays_the_pcrs_every_event_covers(
        events: list[tuple[int, set[str]]]) -> None:
    banks = ("sha1", "sha256", "sha384")
    blob = encode_spec_id_event(banks)
    for n, (pcr, present) in enumerate(events):
        data = f"event {n}".encode()
        blob += encode_agile_event(pcr, 0xD, {b: hashlib.new(b, data).digest()
                                               for b in banks if b in present}, data)
    log = parse_event_log(blob)
    result = replay(log)
    for bank in banks:
        lacking = {pcr for pcr, present in events if bank not in present}
        assert log.incomplete_pcrs(bank) == lacking
        covered = [(f"event {n}".encode(), pcr) for n, (pcr, _) in enumerate(events)
                   if pcr not in lacking]
        assert result.values[bank] == _expected(covered, bank)
