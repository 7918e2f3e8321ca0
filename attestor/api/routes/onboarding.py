"""Zero-touch onboarding, device side: no API key, no station (docs/onboarding.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import EnrollmentLimit, ServicesDep
from attestor.api.protocol import MessageResponse, answer, read, request_body
from attestor.models.common import problems
from attestor.services import onboarding
from identity.devid.messages import (
    OnboardedDevice,
    OnboardingChallenge,
    OnboardingChallengeRequest,
    OnboardingRequest,
)

router = APIRouter(prefix="/v1/onboarding", tags=["onboarding"])
PROBLEMS = problems(s400="malformed TPM structures or certificates",
                    s403="refused; `codes` lists every reason",
                    s429="rate limit reached; see Retry-After")


@router.post("/challenges", status_code=201, response_class=MessageResponse,
             responses=answer(OnboardingChallenge, 201) | PROBLEMS,
             openapi_extra=request_body(OnboardingChallengeRequest))
async def new_challenge(request: Request, svc: ServicesDep,
                        _: EnrollmentLimit) -> MessageResponse:
    """Step 1: an IDevID certificate from an imported manufacturer root, naming a serial
    the owner holds, gets a single-use nonce."""
    req = await read(request, OnboardingChallengeRequest)
    return MessageResponse(await run_in_threadpool(onboarding.challenge, svc, req),
                           status_code=201)


@router.post("", status_code=201, response_class=MessageResponse,
             responses=answer(OnboardedDevice, 201) | PROBLEMS,
             openapi_extra=request_body(OnboardingRequest))
async def onboard(request: Request, svc: ServicesDep, _: EnrollmentLimit) -> MessageResponse:
    """Step 2: IAK and IDevID certificates, the IAK's certifies of the IDevID and of the
    new LAK and LDevID, the IDevID's signature; on success the LDevID certificate."""
    req = await read(request, OnboardingRequest)
    return MessageResponse(await run_in_threadpool(onboarding.onboard, svc, req),
                           status_code=201)
