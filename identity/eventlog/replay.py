"""Replay of a TCG event log into PCR values, per bank, and comparison with quoted PCRs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from identity.errors import EventLogMalformed, EventLogReplayMismatch
from identity.eventlog.tcg import (
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    STARTUP_LOCALITY_SIGNATURE,
    EventLog,
)
from identity.pcr import PcrValues
from identity.tpm.structures import DIGEST_SIZES


@dataclass(frozen=True, slots=True)
class Replay:
    """Replayed PCR values per bank, and which event last extended each PCR."""

    values: dict[str, dict[int, bytes]]
    last_event: dict[int, int]


def _initial_pcr0(log: EventLog, size: int) -> bytes:
    """PCR0 starts at 0, at the StartupLocality value, or at 4 after an H-CRTM event."""
    for event in log.events:
        if event.pcr == 0 and event.type == EV_EFI_HCRTM_EVENT:
            return b"\x00" * (size - 1) + b"\x04"
    for event in log.events:
        if (
            event.type == EV_NO_ACTION
            and event.pcr == 0
            and event.data.startswith(STARTUP_LOCALITY_SIGNATURE)
        ):
            if len(event.data) != len(STARTUP_LOCALITY_SIGNATURE) + 1:
                raise EventLogMalformed(f"event {event.index}: StartupLocality of wrong size")
            return b"\x00" * (size - 1) + event.data[-1:]
    return b"\x00" * size


def replay(log: EventLog, banks: Iterable[str] | None = None) -> Replay:
    """Extend every measured event's digest into its PCR, for each bank asked."""
    wanted = tuple(banks) if banks is not None else log.banks
    values: dict[str, dict[int, bytes]] = {}
    last: dict[int, int] = {}
    for bank in wanted:
        if bank not in log.banks:
            raise EventLogMalformed(f"the event log carries no {bank} bank")
        size = DIGEST_SIZES[bank]
        pcrs: dict[int, bytes] = {}
        pcr0 = _initial_pcr0(log, size)
        for event in log.events:
            if event.type == EV_NO_ACTION:
                continue
            start = pcr0 if event.pcr == 0 else b"\x00" * size
            current = pcrs.get(event.pcr, start)
            pcrs[event.pcr] = hashlib.new(bank, current + event.digests[bank]).digest()
            last[event.pcr] = event.index
        values[bank] = pcrs
    return Replay(values, last)


def check_replay_matches(result: Replay, quoted: PcrValues) -> None:
    """Every quoted PCR in a replayed bank must equal the replayed value.

    A quoted PCR the log never touched must still hold its initial value.
    """
    if not set(quoted) & set(result.values):
        raise EventLogReplayMismatch("the event log carries none of the quoted PCR banks")
    for bank, quoted_pcrs in quoted.items():
        replayed = result.values.get(bank)
        if replayed is None:
            continue
        size = DIGEST_SIZES[bank]
        for index in sorted(quoted_pcrs):
            expected = replayed.get(index, b"\x00" * size)
            if expected != quoted_pcrs[index]:
                where = result.last_event.get(index)
                at = f", last extended by event {where}" if where is not None else ""
                raise EventLogReplayMismatch(
                    f"event log does not replay to quoted {bank} PCR{index}{at}"
                )
