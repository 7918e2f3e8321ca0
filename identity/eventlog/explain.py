"""Why a PCR differs from its reference: the measured-boot events that account for it.

Given the refused boot's log and a reference log (a known-good boot whose PCR held the
reference value), each PCR that differs is explained by the events measured into it
that the reference boot did not measure (``new``), that it measured with another
digest (``changed``: the same component, e.g. the same boot application path, with a
new digest) or that are gone (``missing``). Events are named as boot-log tools name
them (``EV_EFI_BOOT_SERVICES_APPLICATION \\EFI\\debian\\grubx64.efi``), through
:func:`identity.eventlog.describe.describe_event`. Pure: parsed logs in, records out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from identity.errors import EventLogMalformed
from identity.eventlog import events as ev
from identity.eventlog.describe import describe_event
from identity.eventlog.tcg import Event, EventLog
from identity.eventlog.uefi import decode_image_load, decode_variable

_IMAGES = {ev.EV_EFI_BOOT_SERVICES_APPLICATION, ev.EV_EFI_BOOT_SERVICES_DRIVER,
           ev.EV_EFI_RUNTIME_SERVICES_DRIVER}
_VARIABLES = {ev.EV_EFI_VARIABLE_DRIVER_CONFIG, ev.EV_EFI_VARIABLE_BOOT,
              ev.EV_EFI_VARIABLE_BOOT2, ev.EV_EFI_VARIABLE_AUTHORITY}


@dataclass(frozen=True)
class EventChange:
    kind: str  # "new", "changed", "missing" or "measured" (no reference log to compare)
    seq: int  # the event's index in its log (the refused one; the reference's if missing)
    type: str  # EV_* name
    label: str  # what was measured: a device path, a variable, a string
    digest: str  # in the explained bank, hex
    reference_digest: str | None = None  # for "changed": what the reference boot measured


@dataclass
class PcrExplanation:
    pcr: int
    bank: str
    reference: str | None  # the policy's value
    quoted: str | None
    changes: list[EventChange] = field(default_factory=list)
    note: str = ""


def _label(event: Event) -> str:
    if event.type in _IMAGES:
        try:
            return decode_image_load(event.data).device_path or "(no path)"
        except EventLogMalformed:
            pass
    detail = describe_event(event).get("detail", "")
    return str(detail).split("\n", 1)[0]


def _component(event: Event) -> str:
    """What an event measures, without its value: pairs a changed event with its
    reference (an image by its path, a UEFI variable by its GUID and name)."""
    if event.type in _VARIABLES:
        try:
            var = decode_variable(event.data)
            return f"{var.guid} {var.name}"
        except EventLogMalformed:
            pass
    return _label(event)


def _measured(log: EventLog, pcr: int) -> list[Event]:
    return [e for e in log.events if e.pcr == pcr and e.type != ev.EV_NO_ACTION]


def _change(kind: str, event: Event, bank: str, reference: str | None = None) -> EventChange:
    digest = event.digests.get(bank, b"").hex()
    return EventChange(kind, event.seq, ev.name_of(event.type), _label(event), digest, reference)


def _diff(bank: str, found: list[Event], reference: list[Event]) -> list[EventChange]:
    def key(e: Event) -> tuple[int, bytes]:
        return e.type, e.digests.get(bank, b"")

    unmatched_reference = list(reference)
    new: list[Event] = []
    for event in found:
        match = next((r for r in unmatched_reference if key(r) == key(event)), None)
        if match is None:
            new.append(event)
        else:
            unmatched_reference.remove(match)
    changes: list[EventChange] = []
    for event in new:
        same = next((r for r in unmatched_reference
                     if r.type == event.type and _component(r) == _component(event)), None)
        if same is not None:
            unmatched_reference.remove(same)
            changes.append(_change("changed", event, bank,
                                   same.digests.get(bank, b"").hex()))
        else:
            changes.append(_change("new", event, bank))
    changes += [_change("missing", r, bank) for r in unmatched_reference]
    return changes


def explain_pcrs(bank: str, pcrs: Iterable[int], reference_values: Mapping[int, str],
                 quoted_values: Mapping[int, str], log: EventLog | None,
                 reference_log: EventLog | None) -> list[PcrExplanation]:
    """One explanation per PCR in ``pcrs`` (those that differ from the reference)."""
    out: list[PcrExplanation] = []
    for pcr in sorted(set(pcrs)):
        item = PcrExplanation(pcr, bank, reference_values.get(pcr), quoted_values.get(pcr))
        if log is None:
            item.note = "the refused attestation kept no verified event log"
        elif reference_log is None:
            item.note = ("no known-good boot log with this reference value is stored: "
                         "every event measured into this PCR is listed")
            item.changes = [_change("measured", e, bank) for e in _measured(log, pcr)]
        else:
            item.changes = _diff(bank, _measured(log, pcr), _measured(reference_log, pcr))
            if not item.changes:
                item.note = "the same events were measured as in the reference boot"
        out.append(item)
    return out
