"""Structured JSON logs, request ids and Prometheus metrics.

Every log line is one JSON object (structlog renders the standard library's
records too, so uvicorn's lines are JSON as well) carrying the request id of the
request it belongs to. The request id comes from a well-formed ``X-Request-Id``
header or is made up, is echoed in the response, and lands in audit entries.
Nothing secret is logged: no headers, no bodies, no query values.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
access_log = structlog.get_logger("attestor.access")


def configure_logging(level: str = "INFO", json: bool = True,
                      stream: TextIO | None = None) -> None:
    """Route structlog and the standard library through one renderer (JSON by default)
    writing to ``stream`` (stderr)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access line replaces it


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


class RequestContext:
    """Binds a request id for the request's logs and audit entries; one access line each."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"")
        text = given.decode("latin-1")
        request_id = text if _REQUEST_ID.match(text) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_log.info("request", method=scope["method"], path=scope["path"],
                            status=status, client=client[0] if client else None,
                            duration_ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.clear_contextvars()


class Metrics:
    """The attestor's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attestations = Counter(
            "edgeproof_attestations", "Attestations by verdict and reason code",
            ["verdict", "reason"], registry=self.registry)
        self.enrollments = Counter(
            "edgeproof_enrollments", "Enrollment steps by outcome", ["step", "outcome"],
            registry=self.registry)
        self.issuance = Histogram(
            "edgeproof_issuance_seconds", "Time to sign a certificate", ["kind"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=self.registry)
        self.renewals = Counter(
            "edgeproof_renewals", "Workload certificates issued to a device that held one",
            registry=self.registry)
        self.wrap_reuse = Counter(
            "edgeproof_wrap_reuse_reports", "Vault wrapping tokens found used by another",
            registry=self.registry)
        self.rate_limited = Counter(
            "edgeproof_rate_limit_hits", "Requests refused by a rate limit", ["limit"],
            registry=self.registry)
        self.auth_refused = Counter(
            "edgeproof_auth_refusals", "Requests refused by authentication or authorization",
            ["code"], registry=self.registry)
        self._abuse_metrics()

    def _abuse_metrics(self) -> None:
        """Abuse resistance and fault tolerance (docs/operations.md, "Abuse resistance")."""
        self.audit_write_failures = Counter(
            "edgeproof_audit_write_failures", "Audit entries that could not be written (the "
            "request failed closed with 503)", registry=self.registry)
        self.webhook_dropped = Counter(
            "edgeproof_webhook_deliveries_dropped", "Queued webhook deliveries dropped unsent "
            "(url_removed: the URL is no longer configured)", ["reason"],
            registry=self.registry)
        self.auth_throttled = Counter(
            "edgeproof_auth_failures_throttled", "Requests refused unchecked (429 "
            "auth.throttled): their source had too many refused requests", registry=self.registry)
        self.checkpoint_sink_failures = Counter(
            "edgeproof_audit_checkpoint_sink_failures", "Signed audit checkpoints a sink "
            "did not take (file, syslog, webhook); retried with the latest", ["sink"],
            registry=self.registry)
        self.pending_oldest_age = Gauge(
            "edgeproof_issuance_pending_oldest_age_seconds", "Age of the oldest certificate "
            "reservation still pending (0: none), after this replica's last reconciliation",
            registry=self.registry)

    def attestation(self, verdict: str, reasons: list[str]) -> None:
        for reason in reasons or ["none"]:
            self.attestations.labels(verdict=verdict, reason=reason).inc()
