"""TCG event logs: real machines' logs replay to the PCRs their TPMs reported;
malformed and hostile logs fail fast with a typed error."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.boot import boot_events, encode_log
from identity.errors import EventLogMalformed, EventLogReplayMismatch
from identity.eventlog.replay import check_replay_matches, replay
from identity.eventlog.tcg import (
    EV_NO_ACTION,
    encode_agile_event,
    encode_spec_id_event,
    parse_event_log,
)

# Logs whose quirks (option-ROM events with PCR index -1, firmware that skipped the
# Exit Boot Services events) the measured-boot appraisal issue handles.
QUIRKS = {"short_no_action_eventlog"}  # must be refused: see its own test


def corpus_logs(corpus: Path) -> list[tuple[Path, dict[str, dict[str, str]]]]:
    out = []
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((corpus / folder / "manifest.json").read_text())
        for name, meta in manifest.items():
            if name not in QUIRKS:
                out.append((corpus / folder / name, meta["expected_pcrs"]))
    return out


@pytest.mark.corpus
def test_real_logs_replay_to_the_reported_pcrs(corpus: Path) -> None:
    logs = corpus_logs(corpus)
    assert len(logs) >= 10
    for path, expected in logs:
        log = parse_event_log(path.read_bytes())
        replayed = replay(log, add_exit_boot_services=path.name == "ebs_event_missing_eventlog")
        for bank, pcrs in expected.items():
            for index, value in pcrs.items():
                assert replayed.values[bank].get(int(index), b"").hex() == value, (
                    f"{path.name} {bank}:{index}")
        quoted = {bank: {int(i): bytes.fromhex(v) for i, v in pcrs.items()}
                  for bank, pcrs in expected.items()}
        if quoted:
            warnings = check_replay_matches(log, quoted)
            assert bool(warnings) == (path.name == "ebs_event_missing_eventlog")


@pytest.mark.corpus
def test_legacy_sha1_log_is_recognised(corpus: Path) -> None:
    log = parse_event_log((corpus / "eventlogs" / "debian-10.bin").read_bytes())
    assert not log.crypto_agile and log.banks == ("sha1",)


@pytest.mark.corpus
def test_replay_names_the_pcr_that_differs(corpus: Path) -> None:
    path, expected = corpus_logs(corpus)[0]
    log = parse_event_log(path.read_bytes())
    quoted = {"sha256": {int(i): bytes.fromhex(v) for i, v in expected["sha256"].items()}}
    quoted["sha256"][4] = b"\x00" * 32
    with pytest.raises(EventLogReplayMismatch, match="PCR4, last extended by event"):
        check_replay_matches(log, quoted)


@pytest.mark.corpus
def test_a_log_that_runs_past_the_quote_names_the_first_unmeasured_event(corpus: Path) -> None:
    path, _ = corpus_logs(corpus)[0]
    log = parse_event_log(path.read_bytes())
    steps = replay(log, with_history=True).history["sha256"][4]
    quoted = {"sha256": {**replay(log).values["sha256"], 4: steps[0]}}
    with pytest.raises(EventLogReplayMismatch, match="runs past the quoted sha256 PCR4"):
        check_replay_matches(log, quoted)


@pytest.mark.corpus
def test_truncated_no_action_log_is_refused_cleanly(corpus: Path) -> None:
    data = (corpus / "eventlogs-edge" / "short_no_action_eventlog").read_bytes()
    with pytest.raises(EventLogMalformed, match="Spec ID"):
        parse_event_log(data)


@pytest.mark.corpus
def test_exit_boot_services_quirk_is_needed_and_reported(corpus: Path) -> None:
    log = parse_event_log((corpus / "eventlogs-edge" / "ebs_event_missing_eventlog").read_bytes())
    expected = bytes.fromhex("31245808d6d35849bc394f6343f2b3ff908ed5e3")
    assert replay(log).values["sha1"][5] != expected
    warnings = check_replay_matches(log, {"sha1": {5: expected}})
    assert warnings and warnings[0].startswith("eventlog.exit_boot_services_missing")


def test_simulated_boot_log_parses_and_replays() -> None:
    events = boot_events()
    log = parse_event_log(encode_log(events, ("sha1", "sha256")))
    assert log.crypto_agile and log.banks == ("sha1", "sha256")
    assert len(log.events) == len(events) + 2  # Spec ID and StartupLocality
    values = replay(log).values
    tampered_log = encode_log(boot_events(tamper="bootloader"), ("sha256",))
    tampered = replay(parse_event_log(tampered_log)).values
    assert [i for i in range(8) if values["sha256"][i] != tampered["sha256"][i]] == [4]


def test_truncated_log_fails_cleanly() -> None:
    data = encode_log(boot_events(), ("sha256",))
    for cut in (1, 10, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(EventLogMalformed):
            parse_event_log(data[:cut])


def test_huge_event_size_fails_fast() -> None:
    header = encode_spec_id_event(("sha256",))
    hostile = header + struct.pack("<III", 4, 0x80000007, 1) + struct.pack("<H", 0x000B) \
        + b"\x00" * 32 + struct.pack("<I", 0xFFFFFFF0)
    started = time.perf_counter()
    with pytest.raises(EventLogMalformed, match="eventSize"):
        parse_event_log(hostile)
    assert time.perf_counter() - started < 1  # not a timing benchmark: guards a hang


def test_huge_algorithm_count_fails_fast() -> None:
    body = b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 0xFFFFFFFF)
    log = struct.pack("<II", 0, EV_NO_ACTION) + b"\x00" * 20 + struct.pack("<I", len(body)) + body
    with pytest.raises(EventLogMalformed, match="algorithms"):
        parse_event_log(log)


def test_digest_of_a_bank_not_in_the_spec_id_event_is_refused() -> None:
    log = encode_spec_id_event(("sha256",)) + encode_agile_event(
        0, 0x8, {"sha1": b"\x00" * 20}, b"x")
    with pytest.raises(EventLogMalformed, match="not in Spec ID"):
        parse_event_log(log)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parser_only_ever_raises_its_typed_error(data: bytes) -> None:
    try:
        parse_event_log(data)
    except EventLogMalformed:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=8))
def test_mutated_valid_log_only_raises_its_typed_error(offset: int, patch: bytes) -> None:
    data = bytearray(encode_log(boot_events(), ("sha256",)))
    offset %= len(data)
    data[offset:offset + len(patch)] = patch
    try:
        log = parse_event_log(bytes(data))
        replay(log)
    except EventLogMalformed:
        pass


def test_pcr0_initial_values() -> None:
    """StartupLocality 3 starts PCR0 at ...03; an H-CRTM event at ...04."""
    import hashlib as _h

    from identity.eventlog.events import EV_EFI_HCRTM_EVENT, EV_S_CRTM_VERSION

    digest = _h.sha256(b"crtm").digest()
    for marker, start in (
        (encode_agile_event(0, EV_NO_ACTION, {"sha256": b"\x00" * 32},
                            b"StartupLocality\x00\x03"), b"\x00" * 31 + b"\x03"),
        (encode_agile_event(0, EV_EFI_HCRTM_EVENT, {"sha256": digest}, b"HCRTM"),
         b"\x00" * 31 + b"\x04"),
    ):
        log = parse_event_log(encode_spec_id_event(("sha256",)) + marker + encode_agile_event(
            0, EV_S_CRTM_VERSION, {"sha256": digest}, b"v"))
        expected = start
        for event in log.events[1:]:
            if event.type != EV_NO_ACTION:
                expected = _h.sha256(expected + event.digests["sha256"]).digest()
        assert replay(log).values["sha256"][0] == expected
