"""The gate API: relying parties ask whether a device may do an action now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import ServicesDep, require_roles
from attestor.auth import Principal
from attestor.models.common import problems
from attestor.models.gate import GateDecision, GateDecisionRequest
from attestor.services import gate

router = APIRouter(prefix="/v1/gate", tags=["gate"])
Gatekeeper = Annotated[Principal, Depends(require_roles("gatekeeper"))]


@router.post("/decisions", response_model=GateDecision,
             responses=problems(s401="no credential", s403="gatekeepers only",
                                s404="unknown device"))
async def decide(req: GateDecisionRequest, svc: ServicesDep,
                 caller: Gatekeeper) -> GateDecision:
    """Allow or deny `action` for the device, by the gate rules of its class's policy,
    its state and its last attestation. Denied: devices not active, actions no rule
    matches, devices never attested, a failed or too old last attestation, or an EAR
    status or claim below the rule's. Every decision is audited. Role `gatekeeper`."""
    return await run_in_threadpool(gate.decide, svc, req, caller)
