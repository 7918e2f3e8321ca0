"""Why an attestation was refused, in boot-log terms: for each PCR that differed from
the policy's reference, the measured-boot events that account for it, compared with
the device's last known-good boot that held the reference value (its stored log)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from attestor.db import console_queries, queries
from attestor.db.models import Attestation, Device
from identity.errors import EventLogMalformed
from identity.eventlog.explain import PcrExplanation, explain_pcrs
from identity.eventlog.tcg import EventLog, parse_event_log


def _log(data: bytes | None) -> EventLog | None:
    if not data:
        return None
    try:
        return parse_event_log(data)
    except EventLogMalformed:
        return None


@dataclass(frozen=True)
class Explanation:
    pcrs: list[PcrExplanation]
    reference: Attestation | None  # the known-good boot compared with


def explain(session: Session, device: Device, row: Attestation) -> Explanation | None:
    """None for a pass, or when the refusal was not about PCR values."""
    if row.verdict == "pass" or row.id is None or row.policy_version is None:
        return None
    policy = queries.policy_version(session, device.device_class, row.policy_version)
    if policy is None:
        return None
    bank = str(policy.document.get("pcr_bank", "sha256"))
    golden = {int(i): str(v).lower() for i, v in (policy.document.get("golden") or {}).items()}
    quoted = {int(i): str(v) for i, v in (row.pcr_values or {}).get(bank, {}).items()}
    differing = {i: v for i, v in golden.items() if i in quoted and quoted[i] != v}
    if not differing:
        return None
    # this device's own last good boot; failing that, another device's of the same class
    reference = (console_queries.reference_attestation(session, device.id, bank, differing,
                                                       row.id)
                 or console_queries.reference_attestation(session, device.id, bank,
                                                          differing, row.id,
                                                          device.device_class))
    return Explanation(explain_pcrs(bank, differing, golden, quoted, _log(row.event_log),
                                    _log(reference.event_log if reference else None)),
                       reference)
