"""Replay of a TCG event log into PCR values, per bank, and comparison with quoted PCRs.

PCR0 starts at zero, at the StartupLocality value, or at 4 after an H-CRTM
event. Some firmware extends the two Exit Boot Services events into PCR5 without
logging them: when the log lacks them and PCR5 matches only with them, the
replay accepts it and reports the quirk instead of failing the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from identity.errors import EventLogMalformed, EventLogReplayMismatch
from identity.eventlog.events import (
    EV_EFI_ACTION,
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    EXIT_BOOT_SERVICES_INVOCATION,
    EXIT_BOOT_SERVICES_RETURNED,
)
from identity.eventlog.tcg import STARTUP_LOCALITY_SIGNATURE, EventLog
from identity.pcr import PcrValues
from identity.tpm.structures import DIGEST_SIZES

_CONSTRUCTORS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
                 "sha512": hashlib.sha512}
EBS_QUIRK = "eventlog.exit_boot_services_missing"


def _hasher(bank: str) -> Callable[[bytes], Any]:
    constructor = _CONSTRUCTORS.get(bank)
    if constructor is not None:
        return constructor
    return lambda data: hashlib.new(bank, data)


class Replay(NamedTuple):
    """Replayed PCR values per bank; per PCR, the events that extended it, in order."""

    values: dict[str, dict[int, bytes]]
    extended_by: dict[int, list[int]]
    history: dict[str, dict[int, list[bytes]]]  # value after each extending event


def _startup_locality(log: EventLog) -> bytes:
    """The last byte of PCR0's initial value: 4 after an H-CRTM event, else the
    StartupLocality event's locality, else 0."""
    locality = b"\x00"
    for event in log.events:
        if event.pcr != 0:
            continue
        if event.type == EV_EFI_HCRTM_EVENT:
            return b"\x04"
        if event.type == EV_NO_ACTION and event.data.startswith(STARTUP_LOCALITY_SIGNATURE):
            if len(event.data) != len(STARTUP_LOCALITY_SIGNATURE) + 1:
                raise EventLogMalformed(f"event {event.seq}: StartupLocality of wrong size")
            locality = event.data[-1:]
    return locality


def initial_pcr0(log: EventLog, size: int) -> bytes:
    """PCR0 starts at 0, at the StartupLocality value, or at 4 after an H-CRTM event."""
    return b"\x00" * (size - 1) + _startup_locality(log)


def has_exit_boot_services(log: EventLog) -> bool:
    return any(e.pcr == 5 and e.type == EV_EFI_ACTION and e.data == EXIT_BOOT_SERVICES_INVOCATION
               for e in log.events)


def replay(log: EventLog, banks: Iterable[str] | None = None, *,
           add_exit_boot_services: bool = False, with_history: bool = False) -> Replay:
    """Extend every measured event's digest into its PCR, for each bank asked.

    ``add_exit_boot_services`` appends the two Exit Boot Services events to PCR5,
    for firmware that measures them without logging them. ``with_history`` keeps
    every intermediate value (for diagnosing a mismatch; the fast path skips it).
    """
    wanted = tuple(banks) if banks is not None else log.banks
    values: dict[str, dict[int, bytes]] = {}
    history: dict[str, dict[int, list[bytes]]] = {}
    extended_by: dict[int, list[int]] = {}
    measured = [(e.pcr, e.digests) for e in log.events if e.type != EV_NO_ACTION]
    for event in log.events:
        if event.type != EV_NO_ACTION:
            extended_by.setdefault(event.pcr, []).append(event.seq)
    locality = _startup_locality(log)
    for bank in wanted:
        if bank not in log.banks:
            raise EventLogMalformed(f"the event log carries no {bank} bank")
        size = DIGEST_SIZES[bank]
        new = _hasher(bank)
        zero = b"\x00" * size
        pcrs: dict[int, bytes] = {0: zero[:-1] + locality}
        get = pcrs.get
        steps: dict[int, list[bytes]] = {}
        for pcr, digests in measured:
            pcrs[pcr] = value = new((get(pcr) or zero) + digests[bank]).digest()
            if with_history:
                steps.setdefault(pcr, []).append(value)
        if add_exit_boot_services:
            for text in (EXIT_BOOT_SERVICES_INVOCATION, EXIT_BOOT_SERVICES_RETURNED):
                pcrs[5] = new((get(5) or zero) + new(text).digest()).digest()
                steps.setdefault(5, []).append(pcrs[5])
        if 0 not in extended_by:
            del pcrs[0]  # PCR0 untouched by the log: leave it to the initial-value rule
        values[bank] = pcrs
        history[bank] = steps
    return Replay(values, extended_by, history)


FIRMWARE_PCRS = range(8)


def _first_difference(result: Replay, quoted: PcrValues) -> tuple[str, int] | None:
    """The first quoted PCR the log disagrees with. Firmware PCRs 0-7 the log never
    extends must be at their reset value; PCRs 8+ that the log does not touch belong
    to other logs (IMA's PCR10, say) and are not this log's to judge."""
    for bank, quoted_pcrs in quoted.items():
        replayed = result.values.get(bank)
        if replayed is None:
            continue
        zero = b"\x00" * DIGEST_SIZES[bank]
        for index in sorted(quoted_pcrs):
            if index not in replayed and index not in FIRMWARE_PCRS:
                continue
            if replayed.get(index, zero) != quoted_pcrs[index]:
                return bank, index
    return None


def _describe(result: Replay, bank: str, index: int, quoted: bytes) -> str:
    events = result.extended_by.get(index, [])
    steps = result.history.get(bank, {}).get(index, [])
    if quoted in steps:
        extra = events[steps.index(quoted) + 1]
        return (f"the log runs past the quoted {bank} PCR{index}: it matches up to event "
                f"{events[steps.index(quoted)]}, event {extra} and later were not measured")
    if not events:
        return f"no event in the log extends {bank} PCR{index}, which is not at its reset value"
    return (f"event log does not replay to quoted {bank} PCR{index}, "
            f"last extended by event {events[-1]}")


def check_replay_matches(log: EventLog, quoted: PcrValues) -> list[str]:
    """Every quoted PCR in a bank the log carries must equal the replayed value.

    Returns warnings (the Exit Boot Services quirk, when it is what makes PCR5 match).
    A quoted PCR the log never touched must still hold its initial value.
    """
    banks = [bank for bank in quoted if bank in log.banks]
    if not banks:
        raise EventLogReplayMismatch("the event log carries none of the quoted PCR banks")
    result = replay(log, banks)
    difference = _first_difference(result, quoted)
    if difference is None:
        return []
    bank, index = difference
    if index == 5 and not has_exit_boot_services(log):
        quirk = replay(log, banks, add_exit_boot_services=True)
        if _first_difference(quirk, quoted) is None:
            return [f"{EBS_QUIRK}: the firmware measured Exit Boot Services into PCR5 "
                    "without logging it; accepted as a known quirk"]
    detailed = replay(log, [bank], with_history=True)
    raise EventLogReplayMismatch(_describe(detailed, bank, index, quoted[bank][index]))
