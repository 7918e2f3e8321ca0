"""Ownership records and manufacturer roots, for the owner's operators (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import Admin, Reader, ServicesDep
from attestor.db import ownership_queries as q
from attestor.models.common import problems
from attestor.models.ownership import (
    ImportResult,
    ManifestIn,
    OwnershipPublic,
    RootPublic,
    RootsIn,
    SerialsIn,
)
from attestor.services import ownership

router = APIRouter(prefix="/v1/ownership", tags=["ownership"])
AUTH = problems(s400="does not parse or its signature fails", s401="no credential",
                s403="not allowed", s404="unknown serial or certificate")
Serial = Path(min_length=1, max_length=64)
Sha256 = Path(pattern=r"^[0-9a-f]{64}$")


@router.post("/roots", status_code=201, response_model=list[RootPublic], responses=AUTH)
async def import_roots(body: RootsIn, svc: ServicesDep, caller: Admin) -> list[RootPublic]:
    """Trust a manufacturer's CA certificates for IAK/IDevID chains and manifests."""
    rows = await run_in_threadpool(ownership.import_roots, svc, body.certificates.encode(),
                                   caller.actor)
    return [RootPublic.model_validate(r) for r in rows]


@router.get("/roots", response_model=list[RootPublic], responses=AUTH)
async def list_roots(svc: ServicesDep, caller: Reader) -> list[RootPublic]:
    def run() -> list[RootPublic]:
        with svc.session() as session:
            return [RootPublic.model_validate(r) for r in q.roots(session)]
    return await run_in_threadpool(run)


@router.delete("/roots/{sha256}", status_code=204, responses=AUTH)
async def remove_root(svc: ServicesDep, caller: Admin, sha256: str = Sha256) -> None:
    await run_in_threadpool(ownership.remove_root, svc, sha256, caller.actor)


@router.post("/manifests", status_code=201, response_model=ImportResult, responses=AUTH)
async def import_manifest(body: ManifestIn, svc: ServicesDep, caller: Admin) -> ImportResult:
    """Own every device of a signed batch manifest, for ``device_class``."""
    result = await run_in_threadpool(ownership.import_manifest, svc, body.manifest.encode(),
                                     body.device_class, caller.actor)
    return ImportResult.model_validate(result)


@router.post("/serials", status_code=201, response_model=ImportResult, responses=AUTH)
async def import_serials(body: SerialsIn, svc: ServicesDep, caller: Admin) -> ImportResult:
    """Own the serials of a CSV, for ``device_class``, bound to the manufacturer root
    ``root_sha256`` (which must be imported)."""
    result = await run_in_threadpool(ownership.import_csv, svc, body.csv, body.device_class,
                                     caller.actor, body.root_sha256)
    return ImportResult.model_validate(result)


@router.get("", response_model=list[OwnershipPublic], responses=AUTH)
async def list_ownership(
    svc: ServicesDep, caller: Reader,
    state: Annotated[str | None, Query(pattern=r"^(owned|onboarded|revoked)$")] = None,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OwnershipPublic]:
    def run() -> list[OwnershipPublic]:
        with svc.session() as session:
            return [OwnershipPublic.model_validate(r) for r in q.page(session, state, after,
                                                                      limit)]
    return await run_in_threadpool(run)


@router.post("/{serial}/revoke", response_model=OwnershipPublic, responses=AUTH)
async def revoke(svc: ServicesDep, caller: Admin, serial: str = Serial) -> OwnershipPublic:
    """This serial may never onboard (again)."""
    return OwnershipPublic.model_validate(
        await run_in_threadpool(ownership.revoke, svc, serial, caller.actor))


@router.post("/{serial}/release", response_model=OwnershipPublic, responses=AUTH)
async def release(svc: ServicesDep, caller: Admin, serial: str = Serial) -> OwnershipPublic:
    """An onboarded (or revoked) serial may onboard once more."""
    return OwnershipPublic.model_validate(
        await run_in_threadpool(ownership.release, svc, serial, caller.actor))
