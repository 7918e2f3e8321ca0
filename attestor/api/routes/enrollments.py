"""Factory enrollment: POST the TPM's keys, then the activated credential."""

from __future__ import annotations

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import EnrollmentLimit, OptionalCaller, ServicesDep
from attestor.api.schemas import problems
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


@router.post("", status_code=201, response_model=EnrollmentChallenge, responses=PROBLEMS)
async def start_enrollment(req: EnrollmentRequest, svc: ServicesDep, _: EnrollmentLimit,
                           caller: OptionalCaller) -> EnrollmentChallenge:
    """Step 1 (an enroller credential, or an EK the manufacturer pre-registered): EK
    certificate chain, AK attributes and the DevID certify are checked; the answer is a
    credential-activation challenge for the TPM."""
    return await run_in_threadpool(enrollment.start, svc, req, caller)


@router.post("/{enrollment_id}/activation", response_model=EnrolledDevice, responses=PROBLEMS)
async def activate(req: ActivationRequest, svc: ServicesDep,
                   _: EnrollmentLimit, enrollment_id: str = EnrollmentId) -> EnrolledDevice:
    """Step 2: the secret recovered by TPM2_ActivateCredential; on a match the device
    is enrolled and gets its device identity certificate."""
    return await run_in_threadpool(enrollment.complete, svc, enrollment_id, req)
