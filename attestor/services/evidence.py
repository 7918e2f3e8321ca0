"""Every check on one attestation's evidence, in one place: quote, event log (replay,
integrity, boot appraisal), IMA (replay, boot aggregate, appraisal), golden PCRs,
and the workload key. Pure with respect to storage: the caller persists results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from attestor.db.models import Device
from attestor.services.logcache import ParsedLogs
from identity.checks import CheckRunner
from identity.errors import (
    EventLogMissing,
    EvidenceError,
    ImaReplayMismatch,
    ImaStateInvalid,
    ImaTemplateHashMismatch,
)
from identity.eventlog.appraise import appraise_boot
from identity.eventlog.integrity import check_integrity
from identity.eventlog.replay import check_replay_matches
from identity.eventlog.summary import BootSummary
from identity.ima.appraise import ImaPolicy, appraise_ima
from identity.ima.log import ImaEntry, parse_binary
from identity.ima.replay import (
    PADDED_QUIRK,
    ImaReplay,
    ImaState,
    check_boot_aggregate,
    replay_ima,
)
from identity.messages import AttestationRequest
from identity.pcr import PcrValues, parse_pcr_values
from identity.policy import PolicyDocument, evaluate_pcrs
from identity.tpm.ak import TpmKey
from identity.tpm.certify import verify_certify
from identity.tpm.quote import ClockState, QuoteResult, verify_quote
from identity.x509.csr import CheckedCsr, check_csr

# Process-wide: one device's log is the same at every attestation until it reboots.
PARSED_LOGS = ParsedLogs()


@dataclass
class Verification:
    runner: CheckRunner
    quote: QuoteResult
    pcr_values: dict[str, dict[int, bytes]]
    summary: BootSummary | None = None
    ima_state: ImaState | None = None  # accepted IMA entries since the TPM's last reset
    ima_pending: int = 0
    notes: list[str] = field(default_factory=list)
    csr: CheckedCsr | None = None  # the workload key's request, checked (None if it failed)

    @property
    def quote_ok(self) -> bool:
        return self.quote.checks.passed

    def stored_ima_state(self) -> dict[str, object] | None:
        """What the device record keeps: the state and the boot (reset count) it is for."""
        if self.ima_state is None:
            return None
        return {**self.ima_state.as_dict(), "reset_count": self.quote.clock.reset_count}


def previous_clock(device: Device) -> ClockState | None:
    if device.clock_reset_count is None or device.clock_value is None:
        return None
    return ClockState(clock=device.clock_value, reset_count=device.clock_reset_count,
                      restart_count=device.clock_restart_count or 0, safe=True)


def verify_evidence(ak: TpmKey, device: Device, req: AttestationRequest,
                    document: PolicyDocument) -> Verification:
    """Run every check and record each outcome. Malformed input raises."""
    runner = CheckRunner()
    pcr_values = parse_pcr_values(req.pcrs)
    signer = bytes.fromhex(device.ak_qualified_name) if device.ak_qualified_name else None
    quote = verify_quote(
        ak, req.quote.attest, req.quote.signature,
        nonce=req.nonce, pcr_values=pcr_values, required=document.required_selection(),
        previous=previous_clock(device), expected_signer=signer,
    )
    runner.extend(quote.checks)
    result = Verification(runner, quote, pcr_values)
    _event_log(req, document, pcr_values, result)
    if document.ima is not None:
        _ima(req, document.ima, document.pcr_bank, device, pcr_values, result)
    if quote.checks.passed:
        runner.run("policy.pcrs", lambda: evaluate_pcrs(document, pcr_values))
    else:
        runner.skip("policy.pcrs", "PCR values are not proven by the quote")
    result.csr = _workload_key(ak, req, runner)
    return result


def _event_log(req: AttestationRequest, document: PolicyDocument, pcr_values: PcrValues,
               result: Verification) -> None:
    runner = result.runner
    if req.event_log is None:
        if document.require_event_log or document.boot is not None:
            runner.fail("eventlog.present", EventLogMissing("the policy requires an event log"))
        return
    parsed = PARSED_LOGS.get(req.event_log)
    log = parsed.log
    before = len(runner.checks)
    warnings = runner.run("eventlog.replay", lambda: check_replay_matches(log, pcr_values))
    replayed = runner.checks[before].passed
    runner.warnings.extend(warnings or [])
    if document.boot is None:
        return
    check_integrity(log, runner)
    if not (replayed and result.quote_ok):
        # What an unproven log says booted is not evidence of anything.
        runner.skip("boot.appraisal", "the event log is not proven by the quote")
        return
    result.summary = parsed.summary()
    runner.warnings.extend(f"eventlog.undecodable: {p}" for p in result.summary.problems[:5])
    appraise_boot(document.boot, log, result.summary, runner)


def _ima(req: AttestationRequest, policy: ImaPolicy, bank: str, device: Device,
         pcr_values: PcrValues, result: Verification) -> None:
    runner = result.runner
    quoted = pcr_values.get(bank, {})
    if req.ima_log is None or not any(pcr in quoted for pcr in policy.pcrs):
        runner.fail("ima.present", EventLogMissing(
            "the policy requires the IMA measurement list and its PCRs quoted"))
        return
    listing = parse_binary(req.ima_log, req.ima_bank)
    if listing.trailing:
        runner.warnings.append(f"ima.partial_tail: {listing.trailing} bytes after the last "
                               f"complete entry were ignored ({listing.cut})")
    if not result.quote_ok:
        runner.skip("ima.appraisal", "the IMA PCRs are not proven by the quote")
        return
    start = _ima_start(req, device, result.quote, bank)
    try:
        if req.ima_start == 0:
            check_boot_aggregate(listing.entries, pcr_values)
        replayed = _replay(listing.entries, bank, start, quoted, req.ima_bank, runner)
    except EvidenceError as exc:
        runner.fail("ima.replay", exc)
        return
    runner.record("ima.replay", None)
    # An entry whose data does not hash to its template hash is a forged description of
    # a measurement (a replay of the template hashes alone would not notice): never a
    # mere warning.
    failures = replayed.template_hash_failures
    runner.record("ima.template_hashes", None if not failures else ImaTemplateHashMismatch(
        f"{len(failures)} entries' data do not hash to their {req.ima_bank} template hash "
        f"(first: entry {req.ima_start + failures[0]})"))
    appraise_ima(policy, listing.entries[:replayed.accepted], runner)
    result.ima_pending = replayed.pending
    result.ima_state = replayed.state


def _replay(entries: Sequence[ImaEntry], bank: str, start: ImaState, quoted: Mapping[int, bytes],
            list_bank: str, runner: CheckRunner) -> ImaReplay:
    """The replay as kernels 5.8+ extend; for a SHA-1 list that does not reach the quote,
    the pre-5.8 form (the SHA-1 template hash zero-padded into every bank)."""
    try:
        return replay_ima(entries, [bank], start, {bank: quoted}, list_bank=list_bank)
    except ImaReplayMismatch:
        if list_bank != "sha1" or bank == "sha1":
            raise
        try:
            replayed = replay_ima(entries, [bank], start, {bank: quoted}, padded_sha1=True)
        except ImaReplayMismatch:
            raise ImaReplayMismatch("no prefix of the IMA list replays to the quoted PCRs "
                                    "(as kernels 5.8+ or earlier ones extend)") from None
    if not replayed.template_hash_failures:
        runner.warnings.append(f"{PADDED_QUIRK}: the kernel extends the SHA-1 template hash "
                               f"zero-padded into {bank} (before Linux 5.8); accepted")
    return replayed


def _ima_start(req: AttestationRequest, device: Device, quote: QuoteResult,
               bank: str) -> ImaState:
    if req.ima_start == 0:
        return ImaState.initial([bank])
    stored = device.ima_state or {}
    state = ImaState.from_dict(stored) if stored else None
    if (state is None or state.entries != req.ima_start
            or stored.get("reset_count") != quote.clock.reset_count):
        raise ImaStateInvalid(
            f"cannot continue the IMA list at entry {req.ima_start}: send it from the start")
    return state


def _workload_key(ak: TpmKey, req: AttestationRequest,
                  runner: CheckRunner) -> CheckedCsr | None:
    certified = verify_certify(
        runner, ak, req.key_certify.attest, req.key_certify.signature, req.key_public,
        qualifying_data=req.nonce, what="key.certify",
    )
    if certified is None:
        runner.skip("csr", "the workload key is not certified by the AK")
        return None
    return runner.run("csr", lambda: check_csr(req.csr, expected_key=certified.key))
