"""Event-log integrity rules: each attack on a log that still replays, refused by its rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agent.sim.boot import SimEvent, boot_events, encode_log
from identity.checks import CheckRunner
from identity.eventlog import events as ev
from identity.eventlog.integrity import check_integrity
from identity.eventlog.tcg import encode_agile_event, encode_spec_id_event, parse_event_log

pytestmark = pytest.mark.adversarial


def codes(events: list[SimEvent]) -> list[str]:
    runner = CheckRunner()
    check_integrity(runner, parse_event_log(encode_log(events, ("sha256",))))
    return runner.reason_codes


def test_the_simulated_good_boot_passes_every_rule() -> None:
    assert codes(boot_events()) == []


@pytest.mark.corpus
def test_real_machines_logs_pass_every_rule(corpus: Path) -> None:
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((corpus / folder / "manifest.json").read_text())
        for name in manifest:
            if name == "short_no_action_eventlog":
                continue
            runner = CheckRunner()
            check_integrity(runner, parse_event_log((corpus / folder / name).read_bytes()))
            assert runner.passed, (name, runner.reason_codes)


def _forged(events: list[SimEvent], data: bytes, measured: bytes, pcr: int, etype: int,
            at: int | None = None) -> list[SimEvent]:
    forged = list(events)
    forged.insert(len(forged) if at is None else at, SimEvent(pcr, etype, data, measured))
    return forged


def test_separator_whose_digest_is_not_its_data() -> None:
    events = boot_events()
    i = next(n for n, e in enumerate(events) if e.type == ev.EV_SEPARATOR and e.pcr == 7)
    events[i] = SimEvent(7, ev.EV_SEPARATOR, b"\x00\x00\x00\x00", b"something else")
    assert codes(events) == ["eventlog.digest_mismatch"]


def test_efi_action_whose_digest_is_not_its_text() -> None:
    events = boot_events()
    i = next(n for n, e in enumerate(events) if e.data == ev.EXIT_BOOT_SERVICES_INVOCATION)
    events[i] = SimEvent(5, ev.EV_EFI_ACTION, ev.EXIT_BOOT_SERVICES_INVOCATION, b"hidden code")
    assert codes(events) == ["eventlog.digest_mismatch"]


def test_secure_boot_variable_whose_digest_is_not_its_data() -> None:
    """The log claims SecureBoot=1 while the PCR holds the measurement of SecureBoot=0."""
    from agent.sim.boot import variable_data
    from identity.eventlog.uefi import EFI_GLOBAL_VARIABLE

    events = boot_events()
    i = next(n for n, e in enumerate(events) if b"S\x00e\x00c\x00u\x00r\x00e\x00B" in e.data)
    claimed = variable_data(EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x01")
    actual = variable_data(EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x00")
    events[i] = SimEvent(7, ev.EV_EFI_VARIABLE_DRIVER_CONFIG, claimed, actual)
    assert codes(events) == ["eventlog.digest_mismatch"]


def test_measurement_relabelled_as_no_action() -> None:
    log = bytearray(encode_spec_id_event(("sha256",)))
    log += encode_agile_event(0, ev.EV_S_CRTM_VERSION, {"sha256": hashlib.sha256(b"v").digest()},
                              b"v")
    log += encode_agile_event(4, ev.EV_NO_ACTION, {"sha256": hashlib.sha256(b"grub").digest()},
                              b"grub")
    runner = CheckRunner()
    check_integrity(runner, parse_event_log(bytes(log)))
    assert runner.reason_codes == ["eventlog.event_type_unexpected"]


def test_event_type_that_does_not_belong_on_its_pcr() -> None:
    events = _forged(boot_events(), b"code", b"code", 7, ev.EV_EFI_BOOT_SERVICES_DRIVER, at=3)
    assert codes(events) == ["eventlog.event_type_unexpected"]


def test_second_separator() -> None:
    events = _forged(boot_events(), b"\x00" * 4, b"\x00" * 4, 4, ev.EV_SEPARATOR)
    assert codes(events) == ["eventlog.duplicate_separator"]


def test_event_after_the_separator() -> None:
    events = _forged(boot_events(), b"late", b"late", 0, ev.EV_POST_CODE)
    assert codes(events) == ["eventlog.event_after_separator"]


def test_configuration_after_the_separator() -> None:
    events = _forged(boot_events(), b"cfg", b"cfg", 1, ev.EV_EFI_HANDOFF_TABLES)
    assert codes(events) == ["eventlog.config_after_separator"]


def test_every_broken_rule_is_reported_together() -> None:
    events = _forged(boot_events(), b"\x00" * 4, b"\x00" * 4, 4, ev.EV_SEPARATOR)
    events = _forged(events, b"late", b"late", 0, ev.EV_POST_CODE)
    assert set(codes(events)) == {"eventlog.duplicate_separator",
                                  "eventlog.event_after_separator"}
