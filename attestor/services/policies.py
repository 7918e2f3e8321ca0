"""Policy versions per device class, and learning them from a known-good device.

Learning writes a new immutable version: golden PCR values from the device's
last attestation whose quote verified, a boot policy from that attestation's
event log (or from a log file), an IMA allowlist from a measurement list file.
The operator vouches that the boot learned from was good.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from attestor import audit
from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import Attestation, Policy
from attestor.models.fleet import PolicyLearn, PolicyLearned
from attestor.models.operator import PolicyVersion
from attestor.services.context import Services
from identity.checks import CheckRunner
from identity.errors import EventLogMissing, MalformedInput, NotFound, PcrSelectionMismatch
from identity.eventlog.appraise import appraise_boot, learn_boot
from identity.eventlog.integrity import check_integrity
from identity.eventlog.replay import verify_replay
from identity.eventlog.summary import summarize
from identity.eventlog.tcg import parse_event_log
from identity.ima.appraise import learn_ima
from identity.ima.log import ImaEntry
from identity.pcr import PcrSelection, parse_pcr_values
from identity.policy import PolicyDocument, learn, parse_policy, verify_pcrs


def policy_for(session: Session, device_class: str) -> tuple[PolicyDocument, Policy | None]:
    """The policy in force for a class; the built-in default (no golden values) if none."""
    return parsed(queries.current_policy(session, device_class))


def parsed(row: Policy | None) -> tuple[PolicyDocument, Policy | None]:
    """A stored policy version as a document; the built-in default for none."""
    if row is None:
        return PolicyDocument(), None
    return parse_policy(row.document), row


# Parsed documents by policy row and version, each kept with the stored JSON it came from:
# a hit is used only if the row's JSON is equal (a dict comparison: microseconds, against
# a pydantic validation per request), so another database or a restored backup holding
# another document under the same id never gets this one's parse.
_DOCUMENTS: dict[tuple[int, int], tuple[dict[str, Any], PolicyDocument]] = {}


def document_of(row_id: int | None, version: int | None,
                document: dict[str, Any] | None) -> PolicyDocument:
    """A stored version's document, parsed once per process (each attestation and each
    challenge needs it); the built-in default for none."""
    if row_id is None or version is None or document is None:
        return PolicyDocument()
    found = _DOCUMENTS.get((row_id, version))
    if found is not None and found[0] == document:
        return found[1]
    parsed_ = parse_policy(document)
    if len(_DOCUMENTS) > 10_000:
        _DOCUMENTS.clear()
    _DOCUMENTS[(row_id, version)] = (copy.deepcopy(document), parsed_)
    return parsed_


@dataclass
class LearnSources:
    """What to learn from; at least one must be given."""

    device_id: str | None = None
    golden: bool = True  # golden PCRs from the device's last verified quote
    event_log: bytes | None = None  # a known-good firmware log (else the device's own)
    ima_entries: list[ImaEntry] | None = None
    grant: tuple[str, ...] = field(default_factory=tuple)


def learn_policy(session: Session, device_class: str | None, sources: LearnSources,
                 actor: str, now: dt.datetime) -> tuple[Policy, Attestation | None]:
    evidence: Attestation | None = None
    if sources.device_id is not None:
        device = queries.get_device(session, sources.device_id)
        device_class = device_class or device.device_class
        evidence = queries.last_verified_attestation(session, sources.device_id)
        if evidence is None:
            raise MalformedInput(f"device {sources.device_id} has no attestation with a "
                                 "verified quote to learn from")
    if device_class is None:
        raise MalformedInput("name a device or a device class to learn for")
    document, _ = policy_for(session, device_class)
    if evidence is not None and sources.golden:
        document = learn(document, parse_pcr_values(evidence.pcr_values))
    log_bytes = sources.event_log or (evidence.event_log if evidence is not None else None)
    if log_bytes is not None:
        log = parse_event_log(log_bytes)
        # Quote every boot PCR the log extends (GRUB's 8 and 9 carry kernel and cmdline;
        # kernels 5.8+ fold them into IMA's boot_aggregate).
        touched = {e.pcr for e in log.events if e.pcr <= 9}
        document = document.model_copy(update={
            "boot": learn_boot(log, summarize(log)),
            "pcrs": tuple(sorted({*document.pcrs, *touched}))})
    if sources.ima_entries is not None:
        ima = learn_ima(sources.ima_entries, document.ima)
        document = document.model_copy(update={
            "ima": ima, "pcrs": tuple(sorted({*document.pcrs, *ima.pcrs}))})
    if sources.grant:
        secrets = tuple(dict.fromkeys((*document.secrets, *sources.grant)))
        document = document.model_copy(update={"secrets": secrets})
    document = parse_policy(document.model_dump(mode="json"))  # re-validate the whole
    policy = queries.add_policy_version(
        session, device_class, document.model_dump(mode="json"), actor, now)
    audit.append(
        session, at=now, actor=actor, action="policy.learn", outcome="success",
        device_id=sources.device_id, subject=f"policy:{policy.device_class}",
        details={"device_class": policy.device_class, "version": policy.version,
                 "document_sha256": _digest(policy.document),
                 "from_attestation": evidence.id if evidence else None,
                 "boot": log_bytes is not None, "ima": sources.ima_entries is not None},
    )
    return policy, evidence


def learn_request(svc: Services, device_class: str, request: PolicyLearn,
                  caller: Principal) -> PolicyLearned:
    """``POST /v1/policies/{class}/learn``: the logs arrive in the request body."""
    from identity.ima.log import parse_ascii, parse_binary

    entries: list[ImaEntry] | None = None
    if request.ima_list is not None:
        try:
            entries = (parse_ascii(request.ima_list.decode()) if request.ima_ascii
                       else list(parse_binary(request.ima_list, request.ima_bank).entries))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedInput(f"the IMA list cannot be read: {exc}") from exc
    if request.device_id is None and request.event_log is None and entries is None:
        raise MalformedInput("name a device, or give an event log or an IMA list")
    sources = LearnSources(device_id=request.device_id, golden=request.golden,
                           event_log=request.event_log, ima_entries=entries,
                           grant=tuple(request.grant))
    with svc.session() as session, session.begin():
        policy, evidence = learn_policy(session, device_class, sources, caller.actor,
                                        svc.clock())
        return PolicyLearned(policy=view(policy),
                             attestation_id=evidence.id if evidence else None,
                             attested_at=evidence.at if evidence else None)


def learn_from_device(
    session: Session, device_id: str, actor: str, now: dt.datetime, grant: tuple[str, ...] = ()
) -> tuple[Policy, Attestation]:
    """Golden PCRs (and, with its event log, a boot policy) from a device's last
    verified attestation."""
    policy, evidence = learn_policy(session, None, LearnSources(device_id, grant=grant),
                                    actor, now)
    assert evidence is not None  # noqa: S101 - learn_policy refuses a device without one
    return policy, evidence


def _digest(document: dict[str, Any]) -> str:
    """What the policy says, in a line: SHA-256 of its canonical JSON (the document is
    in the policy's version history)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def set_policy(
    session: Session, device_class: str, document: PolicyDocument, actor: str, now: dt.datetime
) -> Policy:
    policy = queries.add_policy_version(
        session, device_class, document.model_dump(mode="json"), actor, now
    )
    audit.append(
        session, at=now, actor=actor, action="policy.update", outcome="success",
        subject=f"policy:{device_class}",
        details={"device_class": device_class, "version": policy.version,
                 "document_sha256": _digest(policy.document)},
    )
    return policy


def view(row: Policy) -> PolicyVersion:
    """A stored version as the API (and ``attestor policy show -o json``) shows it."""
    return PolicyVersion(device_class=row.device_class, version=row.version,
                         document=dict(row.document), created_at=row.created_at,
                         created_by=row.created_by)


def versions(session: Session, device_class: str) -> list[Policy]:
    return list(queries.policy_versions(session, device_class))


def version(session: Session, device_class: str, number: int | None) -> Policy:
    row = (queries.policy_version(session, device_class, number) if number is not None
           else queries.current_policy(session, device_class))
    if row is None:
        raise NotFound(f"no policy version {number or '(current)'} for class {device_class!r}")
    return row


def dry_run(session: Session, device_id: str, document: PolicyDocument) -> DryRunOutcome:
    """Evaluate ``document`` against the device's last attestation whose quote verified:
    the stored PCR values and event log. IMA lists are not kept, so not re-evaluated."""
    device = queries.get_device(session, device_id)
    evidence = queries.last_verified_attestation(session, device_id)
    if evidence is None:
        raise NotFound(f"device {device_id} has no attestation with a verified quote")
    runner = CheckRunner()
    values = parse_pcr_values(evidence.pcr_values)
    missing = document.required_selection().covers(
        PcrSelection.of({b: list(v) for b, v in values.items()}))
    runner.record("quote.pcr_selection", None if not missing else PcrSelectionMismatch(
        f"the stored quote lacks {', '.join(missing)}"))
    verify_pcrs(runner, document, values)
    not_evaluated: list[str] = []
    if document.boot is not None:
        if evidence.event_log is None:
            runner.fail("eventlog.present", EventLogMissing("no event log was stored"))
        else:
            log = parse_event_log(evidence.event_log)
            if verify_replay(runner, log, values):
                check_integrity(runner, log)
                appraise_boot(runner, document.boot, log, summarize(log))
    if document.ima is not None:
        not_evaluated.append("ima: measurement lists are not stored")
    return DryRunOutcome(device.device_class, evidence, runner, not_evaluated)


@dataclass
class DryRunOutcome:
    device_class: str
    evidence: Attestation
    runner: CheckRunner
    not_evaluated: list[str]
