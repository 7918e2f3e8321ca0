"""Integrity rules for a firmware event log, against known attacks and quirks.

Replay only proves the log's digests add up to the quoted PCRs; it says nothing
about whether the event data and types describing them are honest. These rules
close that gap: digests the spec defines as hashes of the event data are
recomputed; event types must fit their PCR (a measurement relabelled to a type
the verifier ignores is refused); one separator per firmware PCR; nothing but
the expected kinds of event after a PCR's separator; no configuration after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from identity.checks import CheckRunner
from identity.errors import (
    EventLogConfigAfterSeparator,
    EventLogDigestMismatch,
    EventLogDuplicateSeparator,
    EventLogEventAfterSeparator,
    EventLogEventTypeUnexpected,
    EvidenceError,
)
from identity.eventlog.events import (
    AFTER_SEPARATOR,
    ALLOWED_TYPES,
    CONFIG_TYPES,
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_NO_ACTION,
    EV_SEPARATOR,
    name_of,
)
from identity.eventlog.tcg import Event, EventLog

# Separator data: 0 normally, 0xFFFFFFFF when the firmware signals an error.
SEPARATOR_VALUES = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff")


def _data_digest_holds(event: Event) -> bool:
    """Digests the profile defines as hashes of the event data must be exactly that."""
    if event.type == EV_SEPARATOR and event.data not in SEPARATOR_VALUES:
        return False
    return all(digest == hashlib.new(bank, event.data).digest()
               for bank, digest in event.digests.items())


def _hashes_data(event: Event, firmware_phase: bool) -> bool:
    """Whether the profile defines this event's digest as the hash of its data.

    EV_EFI_VARIABLE_AUTHORITY events that shim and boot loaders log after the first
    boot application use their own serialisations (seen on real logs), so only the
    firmware's own are recomputed.
    """
    if event.type in (EV_SEPARATOR, EV_EFI_ACTION):
        return event.pcr <= 7
    if event.pcr != 7:
        return False
    return event.type == EV_EFI_VARIABLE_DRIVER_CONFIG or (
        event.type == EV_EFI_VARIABLE_AUTHORITY and firmware_phase)


def check_integrity(
    runner: CheckRunner,
    log: EventLog,
    *,
    allowed_after_separator: Mapping[int, Collection[int]] | None = None,
) -> None:
    """Record one check per rule (``eventlog.<rule>``), each failure naming its events."""
    after_allowed = allowed_after_separator if allowed_after_separator is not None \
        else AFTER_SEPARATOR
    failures: dict[str, list[EvidenceError]] = {
        "digests": [], "types": [], "separators": [], "after_separator": [], "config": []}
    separated: set[int] = set()
    firmware_phase = True
    for event in log.events:
        if event.type == EV_NO_ACTION:
            # Windows logs EV_NO_ACTION "on PCR -1" with data in the digest; only an
            # event that names a real PCR could be a relabelled measurement.
            if event.pcr <= 23 and any(any(d) for d in event.digests.values()):
                failures["types"].append(EventLogEventTypeUnexpected(
                    f"event {event.seq}: EV_NO_ACTION with a non-zero digest (a relabelled "
                    "measurement?)"))
            continue
        if event.pcr > 7:
            continue
        if event.type not in ALLOWED_TYPES[event.pcr]:
            failures["types"].append(EventLogEventTypeUnexpected(
                f"event {event.seq}: {name_of(event.type)} does not belong on PCR{event.pcr}"))
        if event.type == EV_EFI_BOOT_SERVICES_APPLICATION:
            firmware_phase = False
        if _hashes_data(event, firmware_phase) and not _data_digest_holds(event):
            failures["digests"].append(EventLogDigestMismatch(
                f"event {event.seq} ({name_of(event.type)} on PCR{event.pcr}): the digest is "
                "not the hash of the event data"))
        if event.type == EV_SEPARATOR:
            if event.pcr in separated:
                failures["separators"].append(EventLogDuplicateSeparator(
                    f"event {event.seq}: a second separator on PCR{event.pcr}"))
            separated.add(event.pcr)
        elif event.pcr in separated:
            if event.type in CONFIG_TYPES:
                failures["config"].append(EventLogConfigAfterSeparator(
                    f"event {event.seq}: {name_of(event.type)} on PCR{event.pcr} after its "
                    "separator: configuration changed after the boot was sealed"))
            elif event.type not in after_allowed.get(event.pcr, ()):
                failures["after_separator"].append(EventLogEventAfterSeparator(
                    f"event {event.seq}: {name_of(event.type)} on PCR{event.pcr} after its "
                    "separator"))
    for rule, found in failures.items():
        if found:
            first = found[0]
            runner.fail(f"eventlog.{rule}", type(first)(
                "; ".join(f.detail for f in found[:5])
                + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")))
        else:
            runner.record(f"eventlog.{rule}", None)
