"""Replay of a TCG event log into PCR values, per bank, and comparison with quoted PCRs.

PCR0 starts at zero, at the StartupLocality value, or at 4 after an H-CRTM
event. Some firmware extends the Exit Boot Services events into PCR5 without
logging them: when the log lacks them and PCR5 matches only with one of the known
variants (identity/quirks.py), the replay accepts it and reports the quirk instead
of failing the device. A PCR extended by an event that lacks a bank's digest has no
value in that bank; a quote of it is refused (``eventlog.bank_incomplete``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from identity.checks import CheckRunner
from identity.errors import EventLogBankIncomplete, EventLogMalformed, EventLogReplayMismatch
from identity.eventlog.events import (
    EV_EFI_ACTION,
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    EXIT_BOOT_SERVICES_INVOCATION,
)
from identity.eventlog.tcg import STARTUP_LOCALITY_SIGNATURE, EventLog
from identity.pcr import PcrValues
from identity.quirks import EXIT_BOOT_SERVICES_VARIANTS
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
    """Replayed PCR values per bank; per PCR, the events that extended it, in order.
    A PCR in ``incomplete[bank]`` has no value in that bank (an event lacks its digest)."""

    values: dict[str, dict[int, bytes]]
    extended_by: dict[int, list[int]]
    history: dict[str, dict[int, list[bytes]]]  # value after each extending event
    incomplete: dict[str, frozenset[int]]


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
           add_exit_boot_services: bool = False, unlogged_pcr5: tuple[bytes, ...] = (),
           with_history: bool = False) -> Replay:
    """Extend every measured event's digest into its PCR, for each bank asked.

    ``unlogged_pcr5`` appends events (their data hashed) to PCR5, for firmware that
    measures Exit Boot Services without logging it; ``add_exit_boot_services`` is the
    common variant (Invocation, Returned with Success). ``with_history`` keeps every
    intermediate value (for diagnosing a mismatch; the fast path skips it).
    """
    wanted = tuple(banks) if banks is not None else log.banks
    if add_exit_boot_services and not unlogged_pcr5:
        unlogged_pcr5 = EXIT_BOOT_SERVICES_VARIANTS[0][1]
    values: dict[str, dict[int, bytes]] = {}
    history: dict[str, dict[int, list[bytes]]] = {}
    extended_by: dict[int, list[int]] = {}
    incomplete: dict[str, frozenset[int]] = {}
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
        skip = log.incomplete_pcrs(bank)
        if not skip and not with_history:
            for pcr, digests in measured:  # the common case, as tight as it gets
                pcrs[pcr] = new((get(pcr) or zero) + digests[bank]).digest()
        else:
            for pcr, digests in measured:
                if pcr in skip:
                    continue
                pcrs[pcr] = value = new((get(pcr) or zero) + digests[bank]).digest()
                if with_history:
                    steps.setdefault(pcr, []).append(value)
        if unlogged_pcr5 and 5 not in skip:
            for text in unlogged_pcr5:
                pcrs[5] = new((get(5) or zero) + new(text).digest()).digest()
                steps.setdefault(5, []).append(pcrs[5])
        if 0 not in extended_by or 0 in skip:
            del pcrs[0]  # PCR0 untouched by the log: leave it to the initial-value rule
        for index in skip:
            pcrs.pop(index, None)
        values[bank] = pcrs
        history[bank] = steps
        if skip:
            incomplete[bank] = skip
    return Replay(values, extended_by, history, incomplete)


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


def _check_complete(log: EventLog, quoted: PcrValues, banks: list[str]) -> None:
    """Refuse a comparison that needs a PCR some event carries no digest for."""
    for bank in banks:
        lacking = sorted(log.incomplete_pcrs(bank) & set(quoted[bank]))
        if lacking:
            events = [e.seq for e in log.events if e.pcr == lacking[0]
                      and e.type != EV_NO_ACTION and bank not in e.digests]
            raise EventLogBankIncomplete(
                f"the quoted {bank} PCR {', '.join(map(str, lacking))} cannot be replayed: "
                f"event {events[0]} (and {len(events) - 1} more) on PCR{lacking[0]} carries "
                f"no {bank} digest, though the Spec ID event lists the bank")


def check_replay_matches(log: EventLog, quoted: PcrValues) -> list[str]:
    """Every quoted PCR in a bank the log carries must equal the replayed value.

    Returns warnings (an Exit Boot Services quirk, when it is what makes PCR5 match).
    A quoted PCR the log never touched must still hold its initial value; a quoted PCR
    the log cannot replay in that bank (an event lacks the digest) is refused.
    """
    banks = [bank for bank in quoted if bank in log.banks]
    if not banks:
        raise EventLogReplayMismatch("the event log carries none of the quoted PCR banks")
    _check_complete(log, quoted, banks)
    result = replay(log, banks)
    difference = _first_difference(result, quoted)
    if difference is None:
        return []
    bank, index = difference
    if index == 5 and not has_exit_boot_services(log):
        for quirk, events in EXIT_BOOT_SERVICES_VARIANTS:
            retried = replay(log, banks, unlogged_pcr5=events)
            if _first_difference(retried, quoted) is None:
                return [f"{EBS_QUIRK}: the firmware measured Exit Boot Services into PCR5 "
                        f"without logging it ({quirk}); accepted as a known quirk"]
    detailed = replay(log, [bank], with_history=True)
    raise EventLogReplayMismatch(_describe(detailed, bank, index, quoted[bank][index]))


def verify_replay(runner: CheckRunner, log: EventLog, quoted: PcrValues) -> bool:
    """:func:`check_replay_matches` as the appraisal's check ``eventlog.replay`` (its
    warnings added to the runner's); whether it passed."""
    warnings = runner.run("eventlog.replay", lambda: check_replay_matches(log, quoted))
    runner.warnings.extend(warnings or [])
    return runner.checks[-1].passed
