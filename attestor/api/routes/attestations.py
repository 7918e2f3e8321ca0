"""Challenge and attestation for an enrolled device.

The two calls every device makes each cycle are answered by plain Starlette endpoints
(:data:`PLAIN_ROUTES`, placed before these): the same rate limits, request
authentication, services and problem responses, without FastAPI's per-request
dependency resolution. They match only a well-formed device id; any other path goes
to the FastAPI routes below, which validate it and say why (422), and which the
OpenAPI document describes.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from attestor.api.deps import (
    AttestationProof,
    AttestingDevice,
    ChallengeProof,
    ServicesDep,
    device_proof,
)
from attestor.api.protocol import MessageResponse, answer, read, request_body
from attestor.api.ratelimit import client_limit
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
DEVICE_ID = r"[A-Za-z0-9._-]{1,64}"
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


class _DeviceId(Convertor[str]):
    """A path segment that is a valid device id (what ``DeviceId`` accepts)."""

    regex = DEVICE_ID

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("device_id", _DeviceId())
_CHALLENGE_LIMIT = client_limit("challenge")
_ATTESTATION_LIMIT = client_limit("attestation")


async def plain_challenge(request: Request) -> MessageResponse:
    """:func:`challenge`, as a plain endpoint."""
    svc = request.app.state.services
    await _CHALLENGE_LIMIT(request)
    proof = await device_proof(request, svc, "challenge")
    device_id = request.path_params["device_id"]
    return MessageResponse(await run_in_threadpool(attestation.challenge, svc, device_id,
                                                   proof))


async def plain_attest(request: Request) -> MessageResponse:
    """:func:`attest`, as a plain endpoint."""
    svc = request.app.state.services
    await _ATTESTATION_LIMIT(request)
    proof = await device_proof(request, svc, "attestation")
    req = await read(request, AttestationRequest)
    device_id = request.path_params["device_id"]
    return MessageResponse(await run_in_threadpool(attestation.attest, svc, device_id, req,
                                                   proof), status_code=201)


def _route(template: str, endpoint: object) -> Route:
    route = Route(template.replace("{device_id}", "{device_id:device_id}"),
                  endpoint, methods=["POST"])  # type: ignore[arg-type]
    route.path = template  # what metrics label it with: the same as the FastAPI route's
    return route


PLAIN_ROUTES = (
    _route(router.prefix + "/challenge", plain_challenge),
    _route(router.prefix + "/attestations", plain_attest),
)
