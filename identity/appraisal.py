"""One attestation's appraisal, pure: evidence, the device's enrolled keys and history,
the policy, the nonce and the time in; one immutable :class:`Verdict` out.

Every check is run and recorded (quote; event log replay, integrity and boot appraisal;
IMA replay, boot aggregate, template hashes and appraisal; golden PCRs; the workload key's
certify and CSR), never stopping at the first failure. Each step has the same shape: it
reads the evidence and what the steps before it established, and records its checks and
warnings in the one runner. So does every verifier it calls (identity/checks.py):
``verifier(runner, evidence..., *, context) -> what it established`` (None, or a result
whose ``passed`` is False, when a check failed). No database, network, clock or
settings: the attestor reads the device and policy, calls :func:`appraise`, and records
the verdict. Malformed input
(a PCR map, an IMA list or event log that does not parse) raises, as before: it is the
request that is wrong, not the evidence that fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from identity.checks import Check, CheckRunner
from identity.errors import EventLogMissing, ImaStateInvalid
from identity.eventlog.appraise import appraise_boot
from identity.eventlog.integrity import check_integrity
from identity.eventlog.replay import verify_replay
from identity.eventlog.summary import BootSummary, summarize
from identity.eventlog.tcg import EventLog, parse_event_log
from identity.ima.appraise import appraise_ima
from identity.ima.log import parse_binary
from identity.ima.replay import ImaState, verify_ima_replay
from identity.messages import AttestationRequest
from identity.pcr import parse_pcr_values
from identity.policy import PolicyDocument, verify_pcrs
from identity.tpm.ak import TpmKey
from identity.tpm.certify import verify_certify
from identity.tpm.quote import ClockState, QuoteResult, verify_quote
from identity.x509.csr import CheckedCsr, verify_csr


class ParsedLog(Protocol):
    """A parsed measured-boot log and its boot summary (the attestor keeps them cached)."""

    @property
    def log(self) -> EventLog: ...

    def summary(self) -> BootSummary: ...


class _Fresh:
    __slots__ = ("log", "_summary")

    def __init__(self, data: bytes) -> None:
        self.log = parse_event_log(data)
        self._summary: BootSummary | None = None

    def summary(self) -> BootSummary:
        if self._summary is None:
            self._summary = summarize(self.log)
        return self._summary


def parse_log(data: bytes) -> ParsedLog:
    """Parse a log every time (the default; the attestor passes its cache's ``get``)."""
    return _Fresh(data)


@dataclass(frozen=True)
class Enrolled:
    """What the device record holds that the appraisal needs: the AK (a ready key), its
    qualified name if enrolled with one, the clock of its last accepted quote, and the
    IMA state accepted so far (with the reset count of the boot it belongs to)."""

    ak: TpmKey
    ak_qualified_name: bytes | None = None
    previous_clock: ClockState | None = None
    ima_state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Recorded:
    """The values the attestor stores after a verdict: the quote's clock and, when IMA
    was appraised, the accepted IMA state for the boot (reset count) it belongs to."""

    clock_reset_count: int
    clock_restart_count: int
    clock_value: int
    ima_state: dict[str, object] | None


@dataclass(frozen=True)
class Verdict:
    """Every check's outcome, the reason codes of the failed ones, the warnings, and what
    the checks established (PCR values, boot summary, IMA progress, the checked CSR)."""

    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    quote: QuoteResult
    pcr_values: dict[str, dict[int, bytes]]
    appraised_at: dt.datetime
    summary: BootSummary | None = None
    ima_state: ImaState | None = None
    ima_pending: int = 0
    csr: CheckedCsr | None = None  # the workload key's request, checked (None if it failed)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def quote_ok(self) -> bool:
        return self.quote.passed

    def check_dicts(self) -> list[dict[str, object]]:
        return [c.as_dict() for c in self.checks]

    def stored_ima_state(self) -> dict[str, object] | None:
        """What the device record keeps: the state and the boot (reset count) it is for."""
        if self.ima_state is None:
            return None
        return {**self.ima_state.as_dict(), "reset_count": self.quote.clock.reset_count}

    def recorded(self) -> Recorded:
        clock = self.quote.clock
        return Recorded(clock.reset_count, clock.restart_count, clock.clock,
                        self.stored_ima_state())


@dataclass
class _Appraising:
    """The work in progress: inputs and what the steps so far established."""

    req: AttestationRequest
    enrolled: Enrolled
    policy: PolicyDocument
    nonce: bytes
    parse: Callable[[bytes], ParsedLog]
    runner: CheckRunner
    pcr_values: dict[str, dict[int, bytes]]
    quote: QuoteResult | None = None
    summary: BootSummary | None = None
    ima_state: ImaState | None = None
    ima_pending: int = 0
    csr: CheckedCsr | None = None

    @property
    def quote_ok(self) -> bool:
        return self.quote is not None and self.quote.passed


def appraise(evidence: AttestationRequest, enrolled: Enrolled, policy: PolicyDocument,
             nonce: bytes, now: dt.datetime,
             parse: Callable[[bytes], ParsedLog] = parse_log) -> Verdict:
    """Run every check on ``evidence`` (quoted over ``nonce``, the challenge the attestor
    checked it issued) and return the verdict, stamped ``now``."""
    a = _Appraising(evidence, enrolled, policy, nonce, parse, CheckRunner(),
                    parse_pcr_values(evidence.pcrs))
    for step in _STEPS:
        step(a)
    if a.quote is None:  # pragma: no cover - the first step always sets it
        raise AssertionError("the quote step did not run")
    return Verdict(checks=tuple(a.runner.checks), reasons=tuple(a.runner.reason_codes),
                   warnings=tuple(a.runner.warnings), quote=a.quote, pcr_values=a.pcr_values,
                   appraised_at=now, summary=a.summary, ima_state=a.ima_state,
                   ima_pending=a.ima_pending, csr=a.csr)


def _quote(a: _Appraising) -> None:
    a.quote = verify_quote(
        a.runner, a.enrolled.ak, a.req.quote.attest, a.req.quote.signature,
        nonce=a.nonce, pcr_values=a.pcr_values, required=a.policy.required_selection(),
        previous=a.enrolled.previous_clock, expected_signer=a.enrolled.ak_qualified_name,
    )


def _event_log(a: _Appraising) -> None:
    runner, req, document = a.runner, a.req, a.policy
    if req.event_log is None:
        if document.require_event_log or document.boot is not None:
            runner.fail("eventlog.present", EventLogMissing("the policy requires an event log"))
        return
    parsed = a.parse(req.event_log)
    log = parsed.log
    replayed = verify_replay(runner, log, a.pcr_values)
    if document.boot is None:
        return
    check_integrity(runner, log)
    if not (replayed and a.quote_ok):
        # What an unproven log says booted is not evidence of anything.
        runner.skip("boot.appraisal", "the event log is not proven by the quote")
        return
    a.summary = parsed.summary()
    runner.warnings.extend(f"eventlog.undecodable: {p}" for p in a.summary.problems[:5])
    appraise_boot(runner, document.boot, log, a.summary)


def _ima(a: _Appraising) -> None:
    policy = a.policy.ima
    if policy is None:
        return
    runner, req, bank = a.runner, a.req, a.policy.pcr_bank
    quoted = a.pcr_values.get(bank, {})
    if req.ima_log is None or not any(pcr in quoted for pcr in policy.pcrs):
        runner.fail("ima.present", EventLogMissing(
            "the policy requires the IMA measurement list and its PCRs quoted"))
        return
    listing = parse_binary(req.ima_log, req.ima_bank)
    if listing.trailing:
        runner.warnings.append(f"ima.partial_tail: {listing.trailing} bytes after the last "
                               f"complete entry were ignored ({listing.cut})")
    if a.quote is None or not a.quote_ok:
        runner.skip("ima.appraisal", "the IMA PCRs are not proven by the quote")
        return
    start = _ima_start(req, a.enrolled, a.quote, bank)  # raises: the request is wrong
    replayed = verify_ima_replay(runner, listing.entries, bank, start, a.pcr_values,
                                 req.ima_bank, req.ima_start)
    if replayed is None:
        return
    appraise_ima(runner, policy, listing.entries[:replayed.accepted])
    a.ima_pending = replayed.pending
    a.ima_state = replayed.state


def _ima_start(req: AttestationRequest, enrolled: Enrolled, quote: QuoteResult,
               bank: str) -> ImaState:
    if req.ima_start == 0:
        return ImaState.initial([bank])
    stored = enrolled.ima_state or {}
    state = ImaState.from_dict(stored) if stored else None
    if (state is None or state.entries != req.ima_start
            or stored.get("reset_count") != quote.clock.reset_count):
        raise ImaStateInvalid(
            f"cannot continue the IMA list at entry {req.ima_start}: send it from the start")
    return state


def _golden_pcrs(a: _Appraising) -> None:
    if a.quote_ok:
        verify_pcrs(a.runner, a.policy, a.pcr_values)
    else:
        a.runner.skip("policy.pcrs", "PCR values are not proven by the quote")


def _workload_key(a: _Appraising) -> None:
    req = a.req
    certified = verify_certify(
        a.runner, a.enrolled.ak, req.key_certify.attest, req.key_certify.signature,
        req.key_public, qualifying_data=a.nonce, what="key.certify",
    )
    if certified is None:
        a.runner.skip("csr", "the workload key is not certified by the AK")
        return
    a.csr = verify_csr(a.runner, req.csr, expected_key=certified.key)


_STEPS: tuple[Callable[[_Appraising], None], ...] = (
    _quote, _event_log, _ima, _golden_pcrs, _workload_key)
