"""Policy versions per device class, and learning golden values from a good boot."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session

from attestor.db import queries
from attestor.db.models import Attestation, Policy
from identity.errors import MalformedInput
from identity.pcr import parse_pcr_values
from identity.policy import PolicyDocument, learn, parse_policy


def policy_for(session: Session, device_class: str) -> tuple[PolicyDocument, Policy | None]:
    """The policy in force for a class; the built-in default (no golden values) if none."""
    row = queries.current_policy(session, device_class)
    if row is None:
        return PolicyDocument(), None
    return parse_policy(row.document), row


def learn_from_device(
    session: Session, device_id: str, actor: str, now: dt.datetime, grant: tuple[str, ...] = ()
) -> tuple[Policy, Attestation]:
    """New policy version for the device's class with golden values from its last
    attestation whose quote verified. The operator vouches that that boot was good."""
    device = queries.get_device(session, device_id)
    evidence = queries.last_verified_attestation(session, device_id)
    if evidence is None:
        raise MalformedInput(
            f"device {device_id} has no attestation with a verified quote to learn from"
        )
    base, _ = policy_for(session, device.device_class)
    document = learn(base, parse_pcr_values(evidence.pcr_values))
    if grant:
        secrets = tuple(dict.fromkeys((*document.secrets, *grant)))
        document = document.model_copy(update={"secrets": secrets})
    policy = queries.add_policy_version(
        session, device.device_class, document.model_dump(mode="json"), actor, now
    )
    queries.audit(
        session, at=now, actor=actor, action="policy.learn", outcome="created",
        device_id=device_id,
        details={"device_class": device.device_class, "version": policy.version,
                 "from_attestation": evidence.id},
    )
    return policy, evidence


def set_policy(
    session: Session, device_class: str, document: PolicyDocument, actor: str, now: dt.datetime
) -> Policy:
    policy = queries.add_policy_version(
        session, device_class, document.model_dump(mode="json"), actor, now
    )
    queries.audit(
        session, at=now, actor=actor, action="policy.update", outcome="created",
        details={"device_class": device_class, "version": policy.version},
    )
    return policy
