"""Factory enrollment: POST the TPM's keys, then the activated credential."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import EnrollmentLimit, OptionalCaller, ServicesDep
from attestor.api.protocol import MessageResponse, answer, read, request_body
from attestor.models.common import problems
from attestor.services import enrollment
from identity.messages import (
    ActivationRequest,
    EnrolledDevice,
    EnrollmentChallenge,
    EnrollmentRequest,
)

# Ids are token_urlsafe(18); anything else (a NUL, bytes that were not UTF-8, a megabyte)
# is refused as input before it reaches a query, alike on SQLite and PostgreSQL.
EnrollmentId = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
router = APIRouter(prefix="/v1/enrollments", tags=["enrollment"])
PROBLEMS = problems(s400="malformed TPM structures",
                    s403="evidence refused; `codes` lists every reason",
                    s404="unknown enrollment", s401="invalid credential",
                    s429="rate limit reached; see Retry-After")


@router.post("", status_code=201, response_class=MessageResponse,
             responses=answer(EnrollmentChallenge, 201) | PROBLEMS,
             openapi_extra=request_body(EnrollmentRequest))
async def start_enrollment(request: Request, svc: ServicesDep, _: EnrollmentLimit,
                           caller: OptionalCaller) -> MessageResponse:
    """Step 1 (an enroller credential, or an EK the manufacturer pre-registered): EK
    certificate chain, AK attributes and the DevID certify are checked; the answer is a
    credential-activation challenge for the TPM."""
    req = await read(request, EnrollmentRequest)
    return MessageResponse(await run_in_threadpool(enrollment.start, svc, req, caller),
                           status_code=201)


@router.post("/{enrollment_id}/activation", response_class=MessageResponse,
             responses=answer(EnrolledDevice) | PROBLEMS,
             openapi_extra=request_body(ActivationRequest))
async def activate(request: Request, svc: ServicesDep, _: EnrollmentLimit,
                   enrollment_id: str = EnrollmentId) -> MessageResponse:
    """Step 2: the secret recovered by TPM2_ActivateCredential; on a match the device
    is enrolled and gets its device identity certificate."""
    req = await read(request, ActivationRequest)
    return MessageResponse(await run_in_threadpool(enrollment.complete, svc, enrollment_id,
                                                   req))
