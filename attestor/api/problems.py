"""RFC 9457 problem responses for every error, with the stable reason code.

Evidence problems are 4xx with every failed check; our own faults are 5xx with
no cause in the body (it goes to the log only). Nothing secret is ever echoed.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from attestor.api import refusals
from attestor.db.engine import database_error
from identity.errors import (
    ActivationUnknown,
    AuditUnavailable,
    AuthError,
    AuthForbidden,
    Conflict,
    DeviceNotActive,
    DeviceUnknown,
    EvidenceError,
    IdentityError,
    MalformedInput,
    NotFound,
    RateLimited,
    ServiceError,
    UnsupportedAlgorithm,
    VerificationFailed,
)

log = logging.getLogger("attestor.problems")
PROBLEM_BASE = "https://edgeproof.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def status_for(exc: IdentityError) -> int:
    if isinstance(exc, DeviceUnknown | ActivationUnknown | NotFound):
        return 404
    if isinstance(exc, AuthForbidden):
        return 403
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, MalformedInput | UnsupportedAlgorithm):
        return 400
    if isinstance(exc, EvidenceError):
        return 403
    return 503 if isinstance(exc, ServiceError) else 500


def problem(status: int, code: str, title: str, detail: str | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status,
                            "code": code}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    @app.exception_handler(IdentityError)
    async def _identity(request: Request, exc: IdentityError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            if isinstance(exc, AuditUnavailable):
                request.app.state.services.metrics.audit_write_failures.inc()
            log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.detail)
            return problem(status, exc.code, "the attestor cannot serve this request now")
        if isinstance(exc, VerificationFailed):
            return problem(
                status, exc.reasons[0] if exc.reasons else exc.code, "evidence refused",
                exc.detail, codes=exc.reasons, checks=[c.as_dict() for c in exc.checks],
            )
        if isinstance(exc, AuthError):
            failed = await run_in_threadpool(refusals.audit_refusal, request, exc)
            if failed is not None:  # counted and logged already
                return problem(503, failed.code, "the attestor cannot serve this request now")
        extra: dict[str, Any] = {"codes": [exc.code]}
        if isinstance(exc, DeviceNotActive):  # the device learns it was revoked or quarantined
            extra["device_state"] = exc.state
        response = problem(status, exc.code, "request refused", exc.detail, **extra)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="edgeproof"'
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return problem(422, "request.invalid", "the request does not match the schema",
                       errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route.not_found", 405: "route.method_not_allowed",
                413: "request.too_large"}.get(exc.status_code, "http.error")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(sa.exc.DBAPIError)
    async def _database(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
        # A dropped connection (database restart, failover): the pool is discarded and
        # the next request reconnects; this one is retryable, not an internal error.
        # The driver's message is for the operator's log, never the response.
        failure = database_error(exc, request.app.state.services.engine.url)
        log.error("%s on %s %s: %s: %s%s", failure.code, request.method, request.url.path,
                  type(exc.orig).__name__, failure.detail,
                  " (connection lost; the pool reconnects)" if exc.connection_invalidated
                  else "")
        return problem(503, failure.code, "the database is unavailable")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal.error", "internal error")
