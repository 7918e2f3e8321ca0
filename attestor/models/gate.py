"""Request and response models of the gate API."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from attestor.models.common import Request


class GateDecisionRequest(Request):
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    action: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:/_.\-]+$",
                        examples=["update:firmware/stable", "workload:payments"])


class LastAttestation(BaseModel):
    at: dt.datetime
    verdict: str
    status: str = Field(description="EAR status of that attestation")
    trustworthiness_vector: dict[str, int]
    reasons: list[str]
    policy_id: str


class GateDecision(BaseModel):
    decision: Literal["allow", "deny"]
    reasons: list[str] = Field(description="why not (empty when allowed)")
    device_id: str
    action: str
    decided_at: dt.datetime
    attestation: LastAttestation | None
