"""Gate decisions: may this device do that action now? Allow or deny, with reasons.

Decided from the device's state and its last attestation, by the first gate rule
of its class's policy that matches the action; no rule, deny. Every decision is
audited. A quarantined, revoked or decommissioned device is denied at once,
whatever tokens it still holds.
"""

from __future__ import annotations

import datetime as dt
import fnmatch

from attestor import audit
from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import Device
from attestor.models.gate import GateDecision, GateDecisionRequest, LastAttestation
from attestor.services.context import Services
from attestor.services.policies import policy_for
from attestor.services.results import policy_id
from identity import ear
from identity.policy import GateRule


def decide(svc: Services, req: GateDecisionRequest, caller: Principal) -> GateDecision:
    now = svc.clock()
    with svc.session() as session, session.begin():
        device = queries.get_device(session, req.device_id)
        document, _ = policy_for(session, device.device_class)
        rule = next((r for r in document.gates if fnmatch.fnmatchcase(req.action, r.action)),
                    None)
        last = queries.latest_attestation(session, device.id)
        summary = None
        if last is not None:
            appraisal = ear.appraise(last.checks, last.warnings)
            summary = LastAttestation(
                at=last.at, verdict=last.verdict, status=appraisal.status,
                trustworthiness_vector=appraisal.vector, reasons=list(last.reasons),
                policy_id=policy_id(device.device_class, last.policy_version))
        reasons = _reasons(device, rule, summary, now)
        decision = "deny" if reasons else "allow"
        audit.append(session, at=now, actor=caller.actor, action="gate.decision",
                     outcome=decision, device_id=device.id, subject=req.action,
                     reasons=reasons,
                     details={"rule": rule.action if rule else None,
                              "status": summary.status if summary else None})
    return GateDecision(decision=decision, reasons=reasons, device_id=device.id,
                        action=req.action, decided_at=now, attestation=summary)


def _reasons(device: Device, rule: GateRule | None, last: LastAttestation | None,
             now: dt.datetime) -> list[str]:
    if device.state != "active":
        return ["gate.device_not_active"]
    if rule is None:
        return ["gate.no_rule"]
    if last is None:
        return ["gate.not_attested"]
    if last.verdict != "pass":
        return ["gate.last_attestation_failed", *last.reasons]
    reasons = []
    if now - last.at > dt.timedelta(seconds=rule.max_age_seconds):
        reasons.append("gate.attestation_stale")
    if not ear.at_least(last.status, rule.minimum_status):
        reasons.append("gate.status_insufficient")
    for claim, wanted in rule.claims.items():
        if not ear.at_least(ear.tier(last.trustworthiness_vector.get(claim, 0)), wanted):
            reasons.append("gate.claim_insufficient")
            break
    return reasons
