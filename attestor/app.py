"""The FastAPI application, built from ready services (no work at import)."""

from __future__ import annotations

from fastapi import FastAPI

from attestor.api import problems
from attestor.api.limits import BodyLimit
from attestor.api.routes import attestations, devices, enrollments, health, operators
from attestor.observability import RequestContext
from attestor.services.context import Services

API_DESCRIPTION = """
Device identity and TPM 2.0 remote attestation. Devices enroll once at the
factory (EK chain, credential activation, DevID certify), then attest and
renew: a quote over the PCRs their policy selects, the measured-boot log and a
CSR for a TPM-resident key. Errors are RFC 9457 problems whose `code` (and
`codes`, every failed check) are stable reason codes.
"""


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="edgeproof attestor", version="1", description=API_DESCRIPTION)
    app.state.services = services
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    app.add_middleware(RequestContext)  # outermost: every response carries its request id
    for module in (enrollments, attestations, devices, operators, health):
        app.include_router(module.router)
    return app
