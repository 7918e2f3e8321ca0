"""Refused callers in the audit log: who (as far as known), what they reached for, from
where and why. If the entry cannot be written the request fails closed: a 503 problem,
the failure counted (``edgeproof_audit_write_failures_total``) and logged with the
database's error, never a refusal that leaves no trace. Each refusal is counted per
source address and window first (:mod:`attestor.services.refusal_windows`): past the
first few of a window, the window's summary entry stands for it, and past the limit
the source is throttled.

What reached for is the path as received (``raw_path``: still percent-encoded, so
``%00`` stays ``%00`` and bytes that are not UTF-8 are not replaced); headers are
taken as the bytes sent. :mod:`attestor.audit` escapes and bounds every value. (The
HTTP parser already refuses control characters in headers and raw NUL or non-ASCII
bytes in the request line, with a 400 before any route: what reaches here is
percent-encoded paths, header bytes above 0x7f, and JSON and token claims.)
"""

from __future__ import annotations

import logging

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from attestor import audit, untrusted
from attestor.api.ratelimit import client_address
from attestor.auth import Principal
from attestor.observability import current_request_id
from attestor.services import refusal_windows
from attestor.services.context import Services
from identity.errors import AuditUnavailable, AuthError, AuthThrottled

log = logging.getLogger("attestor.refusals")


def storable(source: str) -> str:
    """A source address as the refusal counts key it (a column of 64 characters)."""
    return untrusted.storable(source, 64)


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    # Starlette decodes header bytes as Latin-1: that round-trips to the bytes sent.
    return None if value is None else untrusted.from_bytes(value.encode("latin-1"))


def _credential(request: Request) -> str:
    headers = request.headers
    if "authorization" in headers:
        scheme = headers["authorization"].partition(" ")[0].lower()
        return "bearer" if scheme == "bearer" else "apikey" if scheme == "apikey" else "other"
    if "x-api-key" in headers:
        return "apikey"
    return "device" if "x-edgeproof-device" in headers else "none"


def subject(request: Request) -> str:
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    return f"{request.method} {untrusted.from_bytes(raw_path)}"


def facts(request: Request) -> dict[str, object]:
    """What the request says about itself (untrusted; the audit escapes and bounds it)."""
    found: dict[str, object] = {"source": client_address(request),
                                "credential": _credential(request)}
    agent = _header(request, "user-agent")
    if agent is not None:
        found["user_agent"] = agent
    device = _header(request, "x-edgeproof-device")
    if device is not None:
        found["claimed_device"] = device
    return found


def unavailable(svc: Services, request: Request, what: str,
                failure: AuditUnavailable | SQLAlchemyError) -> AuditUnavailable:
    """Fail closed: count and log (with the database's error) an entry not written; the
    caller answers with the returned error (503)."""
    svc.metrics.audit_write_failures.inc()
    cause = failure.detail if isinstance(failure, AuditUnavailable) else \
        audit.database_error(failure)
    log.error("%s of %s not audited, answered 503: %s", what,
              untrusted.storable(subject(request), 200), cause)
    return AuditUnavailable(f"the audit log cannot be written: {cause}")


def throttle(request: Request, svc: Services) -> None:
    """Refuse a throttled source before its credential is checked (429)."""
    try:
        svc.auth_guard.check(client_address(request), svc.clock(), svc.settings.rate_limits)
    except AuthThrottled:
        svc.metrics.auth_throttled.inc()
        raise


def _device_of(caller: Principal | None, claimed: object) -> str | None:
    """The device the refused request is about: the authenticated one, else the id it
    claims (the request's credential was not accepted: ``actor`` says so)."""
    if caller is not None and caller.device_id is not None:
        return caller.device_id
    return claimed if isinstance(claimed, str) else None


def audit_refusal(request: Request, exc: AuthError) -> AuditUnavailable | None:
    """Count and audit one refusal; None when recorded, else the error to answer with
    (503)."""
    svc: Services = request.app.state.services
    svc.metrics.auth_refused.labels(code=exc.code).inc()
    caller: Principal | None = getattr(request.state, "caller", None)
    now = svc.clock()
    details = facts(request)
    try:
        count = refusal_windows.record(svc, storable(client_address(request)), exc.code, now)
        if count > svc.settings.rate_limits.auth_failures_audited_individually:
            return None  # the window's summary entry counts it
        with svc.session() as session, session.begin():
            audit.append(session, at=now, actor=caller.actor if caller else "anonymous",
                         action="auth", outcome="refused", reasons=[exc.code],
                         device_id=_device_of(caller, details.get("claimed_device")),
                         subject=subject(request), details={**details, "in_window": count},
                         request_id=current_request_id())
    except (AuditUnavailable, SQLAlchemyError) as failure:
        return unavailable(svc, request, f"refusal {exc.code}", failure)
    return None
