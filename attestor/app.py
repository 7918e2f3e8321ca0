"""The FastAPI application, built from ready services (no work at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from attestor import console
from attestor.api import docs, openapi, problems
from attestor.api.front import FrontedApp
from attestor.api.limits import BodyLimit, Overload
from attestor.api.ratelimit import RateLimiter
from attestor.api.routes import (
    attestations,
    devices,
    enrollments,
    gate,
    health,
    onboarding,
    operators,
    ownership,
    trust,
)
from attestor.observability import RequestContext
from attestor.services.background import start as jobs_start
from attestor.services.background import stop as jobs_stop
from attestor.services.context import Services

API_DESCRIPTION = """
Device identity and TPM 2.0 remote attestation. Devices enroll once at the
factory (EK chain, credential activation, DevID certify), then attest and
renew: a quote over the PCRs their policy selects, the measured-boot log and a
CSR for a TPM-resident key. Errors are RFC 9457 problems whose `code` (and
`codes`, every failed check) are stable reason codes.
"""


def create_app(services: Services, *, background: bool = True, front: bool = True) -> FastAPI:
    """The API; with ``background``, its lifespan reconciles interrupted issuance and
    runs the webhook and audit-checkpoint timers; with ``front``, a device's two
    per-cycle requests skip the framework layers that add nothing to them
    (attestor/api/front.py; without, for comparisons, they take the whole stack)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Blocking work (database, crypto) runs on a few threads: more only contend for
        # the GIL (see docs/benchmarks.md); requests beyond them wait their turn.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = services.settings.worker_threads
        jobs = await run_in_threadpool(jobs_start, services) if background else []
        try:
            yield
        finally:
            jobs_stop(jobs)

    app = FrontedApp(title="edgeproof attestor", version="1", description=API_DESCRIPTION,
                     lifespan=lifespan, docs_url=None, redoc_url=None)
    app.lean = front
    app.state.services = services
    app.state.rate_limiter = RateLimiter()
    problems.install(app)
    openapi.install(app)
    docs.install(app)
    console.install(app)  # and the security headers of every HTML response
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    limits = services.settings.rate_limits
    app.add_middleware(Overload, max_inflight=limits.max_inflight,
                       retry_after=limits.overload_retry_after_seconds,
                       on_shed=services.metrics.rate_limited.labels(limit="overload").inc)
    # outermost: every response carries its request id; every request is counted and timed
    app.add_middleware(RequestContext, metrics=services.metrics,
                       proxies=services.settings.trusted_proxies,
                       client_header=services.settings.client_address_header)
    for module in (enrollments, attestations, devices, operators, trust, gate, health, onboarding,
                   ownership):
        app.include_router(module.router)
    app.router.routes[:0] = attestations.PLAIN_ROUTES  # matched first (see the module)
    return app
