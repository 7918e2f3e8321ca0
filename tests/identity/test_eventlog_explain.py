"""Explaining a PCR that differs from its reference with the boot events behind it, on
the boot simulator's logs (the same logs the swtpm devices produce)."""

from __future__ import annotations

from agent.sim.boot import boot_events, encode_log
from identity.eventlog.explain import explain_pcrs
from identity.eventlog.tcg import EventLog, parse_event_log

BANKS = ("sha256",)


def log_of(tamper: str | None = None) -> EventLog:
    return parse_event_log(encode_log(boot_events(tamper=tamper), BANKS))


def test_a_modified_boot_loader_is_the_same_path_with_a_new_digest() -> None:
    [item] = explain_pcrs("sha256", [4], {4: "aa"}, {4: "bb"}, log_of("bootloader"), log_of())
    assert (item.pcr, item.reference, item.quoted, item.note) == (4, "aa", "bb", "")
    [change] = item.changes
    assert change.kind == "changed"
    assert change.type == "EV_EFI_BOOT_SERVICES_APPLICATION"
    assert change.label == "\\EFI\\debian\\grubx64.efi"
    assert change.reference_digest and change.reference_digest != change.digest


def test_an_extra_boot_application_is_a_new_event() -> None:
    [item] = explain_pcrs("sha256", [4], {}, {}, log_of("unknown-app"), log_of())
    assert [(c.kind, c.label) for c in item.changes] == [("new", "\\EFI\\BOOT\\fbx64.efi")]


def test_a_secure_boot_change_names_the_variable() -> None:
    [item] = explain_pcrs("sha256", [7], {}, {}, log_of("secureboot-off"), log_of())
    [change] = item.changes
    assert change.kind == "changed" and change.type == "EV_EFI_VARIABLE_DRIVER_CONFIG"
    assert "SecureBoot" in change.label


def test_an_event_the_reference_boot_had_and_this_one_lacks_is_missing() -> None:
    [item] = explain_pcrs("sha256", [4], {}, {}, log_of(), log_of("unknown-app"))
    assert [(c.kind, c.label) for c in item.changes] == [("missing", "\\EFI\\BOOT\\fbx64.efi")]


def test_without_a_reference_log_every_event_of_the_pcr_is_listed() -> None:
    log = log_of("bootloader")
    [item] = explain_pcrs("sha256", [4], {}, {}, log, None)
    assert item.note.startswith("no known-good boot log")
    assert [c.seq for c in item.changes] == [e.seq for e in log.events if e.pcr == 4]
    assert {c.kind for c in item.changes} == {"measured"}


def test_no_log_and_no_difference_are_said_so() -> None:
    [missing] = explain_pcrs("sha256", [0], {}, {}, None, log_of())
    assert missing.note == "the refused attestation kept no verified event log"
    [same] = explain_pcrs("sha256", [0], {}, {}, log_of(), log_of())
    assert same.changes == [] and same.note.startswith("the same events")
