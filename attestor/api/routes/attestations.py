"""Challenge and attestation for an enrolled device."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import AttestationProof, AttestingDevice, ChallengeProof, ServicesDep
from attestor.api.protocol import MessageResponse, answer, read, request_body
from attestor.models.common import problems
from attestor.services import attestation, release
from identity.messages import (
    AttestationRequest,
    AttestationResult,
    Challenge,
    WrapReuseAnswer,
    WrapReuseReport,
)

router = APIRouter(prefix="/v1/devices/{device_id}", tags=["attestation"])
DeviceId = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
PROBLEMS = problems(s400="malformed evidence",
                    s403="evidence refused; `codes` lists every reason, nothing issued",
                    s404="unknown device", s401="no valid device signature",
                    s429="rate limit reached; see Retry-After")


@router.post("/challenge", response_class=MessageResponse,
             responses=answer(Challenge) | PROBLEMS)
async def challenge(svc: ServicesDep, proof: ChallengeProof,
                    device_id: str = DeviceId) -> MessageResponse:
    """A single-use nonce and the PCR selection the device's policy requires."""
    return MessageResponse(await run_in_threadpool(attestation.challenge, svc, device_id,
                                                   proof))


@router.post("/attestations", status_code=201, response_class=MessageResponse,
             responses=answer(AttestationResult, 201) | PROBLEMS,
             openapi_extra=request_body(AttestationRequest))
async def attest(request: Request, svc: ServicesDep, proof: AttestationProof,
                 device_id: str = DeviceId) -> MessageResponse:
    """Verify quote, event log, policy and the workload key; on a pass, a short-lived
    certificate and the secrets the policy grants."""
    req = await read(request, AttestationRequest)
    return MessageResponse(await run_in_threadpool(attestation.attest, svc, device_id, req,
                                                   proof), status_code=201)


@router.post("/secrets/wrap-reuse", response_class=MessageResponse,
             responses=answer(WrapReuseAnswer) | problems(
                 s401="no valid device signature", s409="no wrapped delivery",
                 s503="Vault cannot confirm"),
             openapi_extra=request_body(WrapReuseReport))
async def wrap_reuse(request: Request, svc: ServicesDep, caller: AttestingDevice,
                     device_id: str = DeviceId) -> MessageResponse:
    """The device reports a Vault wrapping token that was already used when it tried to
    unwrap it. The attestor confirms with Vault (`sys/wrapping/lookup`), then audits
    `secret.wrap_reuse` and fires the `secret.wrap_reused` webhook."""
    report = await read(request, WrapReuseReport)
    status = await run_in_threadpool(release.report_wrap_reuse, svc, device_id, report.name,
                                     report.token, report.age_seconds)
    return MessageResponse(WrapReuseAnswer(status=status))
