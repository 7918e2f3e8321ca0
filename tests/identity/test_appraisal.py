"""The pure appraisal: evidence in, one immutable verdict out; no HTTP, no database.

The evidence is what the fleet simulator's devices produce (agent/sim/fleet.py): genuine
TPMS_ATTEST quotes and certifies signed by the device's AK, a TCG event log whose replay
gives the quoted PCRs, a CSR by the certified workload key. Each forgery changes one
thing and must fail with its own reason code, every other check still reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import msgspec
import pytest

from agent.sim.fleet import SimDevice
from agent.sim.softtpm import SoftKey
from identity.appraisal import Enrolled, Verdict, appraise, parse_log
from identity.challenge import issue
from identity.eventlog.appraise import BootPolicy
from identity.messages import AttestationRequest, Challenge, SignedAttest
from identity.pcr import parse_pcr_values
from identity.policy import PolicyDocument, learn
from identity.tpm.ak import load_key
from identity.tpm.quote import ClockState

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
KEY = b"k" * 32


def _challenge(policy: PolicyDocument, device_id: str = "dev-1") -> Challenge:
    nonce = issue(KEY, device_id, NOW + dt.timedelta(seconds=60))
    return Challenge(nonce=nonce, expires_at=NOW, pcr_selection=policy.required_selection()
                     .as_dict())


@pytest.fixture(scope="module")
def device() -> SimDevice:
    return SimDevice("SIM-APPRAISAL", device_id="dev-1")


@pytest.fixture(scope="module")
def policy(device: SimDevice) -> PolicyDocument:
    """Golden PCRs learned from the device's own (genuine) boot."""
    evidence = device.evidence(_challenge(PolicyDocument()))
    return learn(PolicyDocument(), parse_pcr_values(evidence.pcrs))


def _enrolled(device: SimDevice, **changes: object) -> Enrolled:
    return dataclasses.replace(Enrolled(ak=load_key(device.ak.public)), **changes)  # type: ignore[arg-type]


def _appraise(device: SimDevice, policy: PolicyDocument,
              forge: Callable[[AttestationRequest], AttestationRequest] = lambda r: r,
              enrolled: Enrolled | None = None, nonce: bytes | None = None) -> Verdict:
    req = forge(device.evidence(_challenge(policy)))
    return appraise(req, enrolled or _enrolled(device), policy,
                    req.nonce if nonce is None else nonce, NOW)


def test_genuine_evidence_passes_with_every_check_recorded(device: SimDevice,
                                                          policy: PolicyDocument) -> None:
    verdict = _appraise(device, policy)
    assert verdict.passed and verdict.quote_ok and verdict.reasons == ()
    names = [c.name for c in verdict.checks]
    for expected in ("quote.signature", "quote.nonce", "quote.pcr_digest", "eventlog.replay",
                     "policy.pcrs", "key.certify.signature", "key.certify.name", "csr"):
        assert expected in names
    assert verdict.csr is not None and verdict.appraised_at == NOW
    recorded = verdict.recorded()
    assert recorded.clock_reset_count == device.ak.clock.reset_count
    assert 0 < recorded.clock_value < device.ak.clock.clock  # the quote's, then it ticked
    assert recorded.ima_state is None  # the policy appraises no IMA
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.reasons = ()  # type: ignore[misc]


def test_the_cache_and_a_fresh_parse_give_the_same_verdict(device: SimDevice,
                                                           policy: PolicyDocument) -> None:
    req = device.evidence(_challenge(policy))
    seen: list[bytes] = []

    def counting(data: bytes):  # type: ignore[no-untyped-def]
        seen.append(data)
        return parse_log(data)

    one = appraise(req, _enrolled(device), policy, req.nonce, NOW, counting)
    two = appraise(req, _enrolled(device), policy, req.nonce, NOW)
    assert seen == [req.event_log] and one.checks == two.checks


def test_quote_over_another_nonce_is_refused(device: SimDevice, policy: PolicyDocument) -> None:
    other = issue(KEY, "dev-1", NOW + dt.timedelta(seconds=60))
    verdict = _appraise(device, policy, nonce=other)
    assert not verdict.passed
    assert "quote.nonce_mismatch" in verdict.reasons
    # the workload key's certify carries the same (other) nonce: refused as well
    assert "certify.qualifying_data_mismatch" in verdict.reasons


def test_quote_by_another_ak_is_refused(device: SimDevice, policy: PolicyDocument) -> None:
    impostor = load_key(SoftKey().public)
    verdict = _appraise(device, policy, enrolled=_enrolled(device, ak=impostor))
    assert "quote.signature_invalid" in verdict.reasons
    assert not verdict.quote_ok
    skipped = {c.name for c in verdict.checks if c.skipped}
    assert "policy.pcrs" in skipped  # unproven PCR values are never appraised


def test_relabelled_pcr_values_are_refused(device: SimDevice, policy: PolicyDocument) -> None:
    def tamper(req: AttestationRequest) -> AttestationRequest:
        pcrs = {bank: dict(values) for bank, values in req.pcrs.items()}
        pcrs["sha256"]["0"] = "00" * 32
        return _replace(req, pcrs=pcrs)

    verdict = _appraise(device, policy, tamper)
    assert "quote.pcr_digest_mismatch" in verdict.reasons


def test_a_boot_unlike_the_golden_one_is_refused(device: SimDevice,
                                                 policy: PolicyDocument) -> None:
    golden = dict(policy.golden)
    golden[min(golden)] = "11" * 32
    verdict = _appraise(device, policy.model_copy(update={"golden": golden}))
    assert verdict.quote_ok and not verdict.passed
    assert [c.name for c in verdict.checks if not c.passed] == ["policy.pcrs"]


def test_a_clock_behind_the_last_accepted_quote_is_refused(device: SimDevice,
                                                           policy: PolicyDocument) -> None:
    clock = device.ak.clock
    later = ClockState(clock=clock.clock, reset_count=clock.reset_count + 1,
                       restart_count=0, safe=True)
    verdict = _appraise(device, policy, enrolled=_enrolled(device, previous_clock=later))
    assert "quote.reset_count_rollback" in verdict.reasons


def test_a_missing_event_log_is_refused_when_the_policy_needs_one(
        device: SimDevice, policy: PolicyDocument) -> None:
    strict = policy.model_copy(update={"boot": BootPolicy(secure_boot=False)})
    verdict = _appraise(device, strict, lambda r: _replace(r, event_log=None))
    assert "eventlog.missing" in verdict.reasons


def test_a_csr_for_another_key_is_refused(device: SimDevice, policy: PolicyDocument) -> None:
    donor = device.evidence(_challenge(policy))
    verdict = _appraise(device, policy, lambda r: _replace(r, csr=donor.csr))
    assert not verdict.passed
    assert [c.name for c in verdict.checks if not c.passed] == ["csr"]


def test_a_certify_of_another_key_is_refused(device: SimDevice, policy: PolicyDocument) -> None:
    donor = device.evidence(_challenge(policy))
    verdict = _appraise(device, policy, lambda r: _replace(
        r, key_certify=SignedAttest(attest=donor.key_certify.attest,
                                    signature=donor.key_certify.signature)))
    assert "certify.name_mismatch" in verdict.reasons or \
        "certify.qualifying_data_mismatch" in verdict.reasons
    assert "csr" in {c.name for c in verdict.checks if c.skipped}


def _replace(req: AttestationRequest, **changes: object) -> AttestationRequest:
    return msgspec.structs.replace(req, **changes)


def test_ear_vector_of_real_verdicts_as_before(device: SimDevice,
                                               policy: PolicyDocument) -> None:
    """Real verdicts, passing and refused: the EAR vector of their recorded checks is the
    rescanning reference's (tests/identity/test_ear.py; issue 15)."""
    from identity import ear
    from tests.identity.test_ear import old_appraise

    donor = device.evidence(_challenge(policy))
    strict = policy.model_copy(update={"boot": BootPolicy(secure_boot=False)})
    verdicts = [
        _appraise(device, policy), _appraise(device, policy, nonce=b"\0" * 32),
        _appraise(device, policy, enrolled=_enrolled(device, ak=load_key(SoftKey().public))),
        _appraise(device, strict, lambda r: _replace(r, event_log=None)),
        _appraise(device, strict),
        _appraise(device, policy, lambda r: _replace(r, csr=donor.csr)),
        _appraise(device, policy, lambda r: _replace(r, key_certify=donor.key_certify)),
        _appraise(device, policy, enrolled=_enrolled(device, previous_clock=ClockState(
            clock=2**62, reset_count=2**20, restart_count=0, safe=True))),
    ]
    assert any(v.passed for v in verdicts) and not all(v.passed for v in verdicts)
    for verdict in verdicts:
        dicts = verdict.check_dicts()
        warnings = list(verdict.warnings)
        assert ear.appraise(dicts, warnings) == old_appraise(dicts, warnings)
