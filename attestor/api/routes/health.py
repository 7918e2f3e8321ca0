"""Liveness, readiness, and the CA bundle."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse

from attestor.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(svc: ServicesDep) -> JSONResponse:
    def probe() -> dict[str, str]:
        status = {}
        try:
            with svc.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            status["database"] = "ok"
        except sa.exc.SQLAlchemyError as exc:
            status["database"] = f"unavailable: {type(exc).__name__}"
        return status

    status = await run_in_threadpool(probe)
    ready = all(v == "ok" for v in status.values())
    return JSONResponse({"ready": ready, **status}, status_code=200 if ready else 503)


@router.get("/v1/ca", response_class=PlainTextResponse)
async def ca_bundle(svc: ServicesDep) -> str:
    """Trust anchors for certificates this attestor issues (PEM)."""
    return svc.issuer.roots_pem()
