"""The EK trust store for operators: what it holds (auditors), importing vendor CAs
(admins)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import Admin, Reader, ServicesDep
from attestor.models.common import problems
from attestor.models.fleet import TrustAdd, TrustImport, TrustStorePublic
from attestor.services import trust

router = APIRouter(prefix="/v1/trust", tags=["trust"])


@router.get("", response_model=TrustStorePublic,
            responses=problems(s401="no credential", s403="not allowed"))
async def trust_store(svc: ServicesDep, caller: Reader) -> TrustStorePublic:
    """The TPM-vendor roots and intermediates this attestor trusts for EK certificates
    now, and the files it could not load."""
    return await run_in_threadpool(lambda: trust.view(svc.trust))


@router.post("", response_model=TrustImport,
             responses=problems(s401="no credential", s403="admins only",
                                s409="the trust store cannot be written on this attestor"))
async def trust_add(body: TrustAdd, svc: ServicesDep, caller: Admin) -> TrustImport:
    """Import vendor CA certificates into the store (every attestor sharing its directory
    uses them from its next enrollment); items holding no certificate are refused, the
    others imported. Audited as ``trust.add``. Withdrawing a vendor is removing its file
    on the attestor host (or from the ConfigMap)."""
    return await run_in_threadpool(trust.add, svc, body, caller)
