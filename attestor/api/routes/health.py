"""Liveness, readiness (database and every backend), metrics, and the CA bundle."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from attestor.api.deps import MetricsReader, ServicesDep
from attestor.models.common import problems
from attestor.services.readiness import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP (no dependencies are touched). Public."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is unavailable"}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    """Readiness: the database, the issuer, the secret store and the signing key each
    answer; 503 names the one that does not (no detail beyond its code). Public."""
    status = await run_in_threadpool(readiness, svc)
    ready = all(v == "ok" for v in status.values())
    return JSONResponse({"ready": ready, **status}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse,
            responses=problems(s401="no credential", s403="role may not read metrics"))
async def metrics(svc: ServicesDep, caller: MetricsReader) -> Response:
    """Prometheus metrics (text exposition format; docs/operations.md lists them). Needs
    `auditor` or `gatekeeper`; a separate listener (`attestor serve --metrics-port`)
    serves the same without a credential, to a network only Prometheus reaches."""
    body = await run_in_threadpool(generate_latest, svc.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/ca", response_class=PlainTextResponse)
def ca_bundle(svc: ServicesDep) -> str:
    """Trust anchors for certificates this attestor issues (PEM): the device identity
    root and, when another backend (Vault) signs workload certificates, its root. Public."""
    return svc.ca_bundle()


@router.get("/.well-known/jwks.json")
async def jwks(svc: ServicesDep) -> dict[str, list[dict[str, str]]]:
    """Public keys (ES256) that verify attestation-result tokens: the active key and,
    after a rotation, the previous ones until the tokens they signed have expired.
    Public; relying parties cache it and re-fetch on an unknown `kid`."""
    from attestor.services.results import jwks as published

    return await run_in_threadpool(published, svc)
