"""Structured JSON logs, request ids and Prometheus metrics.

Every log line is one JSON object (structlog renders the standard library's
records too, so uvicorn's lines are JSON as well) carrying the request id of the
request it belongs to. The request id comes from a well-formed ``X-Request-Id``
header or is made up, is echoed in the response, and lands in audit entries.
Nothing secret is logged: no headers, no bodies, no query values.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attestor import origin, untrusted

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()
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


CLIENT_KEY = "edgeproof.client"  # the scope key of the resolved client address


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


class RequestContext:
    """Binds a request id for the request's logs and audit entries; one access line each;
    counts and times every request in ``metrics`` (by route template and status).
    attestor/api/front.py runs the same :meth:`open` and :meth:`close` around the
    device's two per-cycle requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None,
                 proxies: Sequence[origin.Network] = (),
                 client_header: str = "x-forwarded-for") -> None:
        self.app = app
        self.metrics = metrics
        self.proxies = tuple(proxies)
        self.client_header = client_header.lower().encode()

    def open(self, scope: Scope) -> tuple[bytes, origin.Origin]:
        """The request's id (a well-formed ``X-Request-Id``, else one of ours), bound for
        its logs; its origin: the client address (through trusted proxies only) and user
        agent, bound for its audit entries and kept in the scope for the rate limits. One
        pass over the headers (the last X-Request-Id counts, the first User-Agent)."""
        given = b""
        forwarded: list[str] = []
        agent: bytes | None = None
        wanted = self.client_header
        for key, value in scope.get("headers") or ():
            if key == _REQUEST_ID_KEY:
                given = value
            if key == wanted:
                forwarded.append(value.decode("latin-1"))
            if key == b"user-agent" and agent is None:
                agent = value
        text = given.decode("latin-1")
        # 128 random bits as 32 hex digits, as uuid4().hex gave (less its 6 fixed bits)
        request_id = text if _REQUEST_ID.match(text) else secrets.token_hex(16)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        peer = scope.get("client")
        address = origin.client_address(peer[0] if peer else None, forwarded, self.proxies)
        found = origin.Origin(address, None if agent is None else untrusted.from_bytes(agent))
        scope[CLIENT_KEY] = address
        origin.bind(found)
        return request_id.encode(), found

    def close(self, scope: Scope, status: int, started: float, source: origin.Origin) -> None:
        """Count and time the request, write its access line, unbind its id."""
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.request(scope["method"], route_template(scope), status, elapsed)
        access_log.info("request", method=scope["method"], path=scope["path"],
                        status=status, client=source.client_address,
                        duration_ms=round(elapsed * 1000, 2))
        structlog.contextvars.clear_contextvars()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, source = self.open(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (_REQUEST_ID_KEY, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.close(scope, status, started, source)


# Methods outside this set are counted as "other": the label's values stay bounded
# whatever a client sends.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route answers (a 404)


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/v1/devices/{device_id}``), never
    the raw path: device ids in a label would make one series per device. A request
    refused before routing (load shedding, body limit) is matched here."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    router = getattr(scope.get("app"), "router", None)
    for candidate in getattr(router, "routes", ()):
        match, _ = candidate.matches(scope)
        if match is not Match.NONE and isinstance(getattr(candidate, "path", None), str):
            return str(candidate.path)
    return UNMATCHED


def build_version() -> tuple[str, str]:
    """(version, revision): the installed package's version and the source revision the
    image was built from (``EDGEPROOF_BUILD_REVISION``, set by the image build)."""
    try:
        version = metadata.version("edgeproof")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return version, os.environ.get("EDGEPROOF_BUILD_REVISION", "unknown") or "unknown"


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    at: float  # Unix time


class Metrics:
    """The attestor's Prometheus metrics, in a registry of its own (one per app).

    Names follow Prometheus conventions: ``edgeproof_`` prefix, base units in the
    name (``_seconds``), ``_total`` on counters; docs/operations.md lists them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attestations = Counter(
            "edgeproof_attestations_total", "Attestations by verdict (pass, fail, error) and "
            "reason code; a refusal with several reasons counts once per reason",
            ["verdict", "reason"], registry=r)
        self.enrollments = Counter(
            "edgeproof_enrollments_total", "Enrollment steps by outcome", ["step", "outcome"],
            registry=r)
        self._onboarding_metrics()
        self.issuance = Histogram(
            "edgeproof_issuance_duration_seconds", "Time to sign a certificate, by kind "
            "(identity, workload)", ["kind"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 2.5),
            registry=r)
        self.renewals = Counter(
            "edgeproof_renewals_total", "Workload certificates issued to a device that held one",
            registry=r)
        self.wrap_reuse = Counter(
            "edgeproof_wrap_reuse_reports_total", "Vault wrapping tokens a device found used "
            "by another", registry=r)
        self.rate_limited = Counter(
            "edgeproof_rate_limited_requests_total", "Requests refused (429) by a rate limit "
            "or by load shedding (limit=overload)", ["limit"], registry=r)
        self.auth_refused = Counter(
            "edgeproof_auth_refusals_total", "Requests refused by authentication or "
            "authorization, by reason code", ["code"], registry=r)
        self.webhook_failures = Counter(
            "edgeproof_webhook_delivery_failures_total", "Webhook delivery attempts that got "
            "no 2xx answer (each is retried until the delivery is a day old)", registry=r)
        self.http_requests = Counter(
            "edgeproof_http_requests_total", "HTTP requests by method, route template and "
            "status code", ["method", "route", "status"], registry=r)
        # (method, route, status) -> its two series: labels() takes a lock and checks
        # its arguments on every call
        self._http_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.http_duration = Histogram(
            "edgeproof_http_request_duration_seconds", "HTTP request latency (until the "
            "response is sent) by method, route template and status code",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r)
        version, revision = build_version()
        Gauge("edgeproof_build_info", "The running attestor's version and source revision "
              "(value 1)", ["version", "revision"], registry=r).labels(version, revision).set(1)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, fds
        PlatformCollector(registry=r)  # python_info
        self._abuse_metrics()
        # exposed by the scrape-time collector (attestor.services.telemetry), only once set
        self.audit_verification: AuditVerification | None = None

    def _abuse_metrics(self) -> None:
        """Abuse resistance and fault tolerance (docs/operations.md, "Abuse resistance")."""
        self.audit_write_failures = Counter(
            "edgeproof_audit_write_failures_total", "Audit entries that could not be written "
            "(the request failed closed with 503)", registry=self.registry)
        self.webhook_dropped = Counter(
            "edgeproof_webhook_deliveries_dropped_total", "Queued webhook deliveries dropped "
            "unsent (url_removed: the URL is no longer configured)", ["reason"],
            registry=self.registry)
        self.auth_throttled = Counter(
            "edgeproof_auth_failures_throttled_total", "Requests refused unchecked (429 "
            "auth.throttled): their source had too many refused requests", registry=self.registry)
        self.checkpoint_sink_failures = Counter(
            "edgeproof_audit_checkpoint_sink_failures_total", "Signed audit checkpoints a sink "
            "did not take (file, syslog, webhook); retried with the latest", ["sink"],
            registry=self.registry)
        self.trust_load_failures = Counter(
            "edgeproof_trust_store_load_failures_total", "EK trust store changes not taken "
            "(unreadable or invalid file, unlistable directory): the last good content stays",
            ["reason"], registry=self.registry)
        # Exported at 0 from the start: increase() in the alert rules cannot see a series'
        # first sample, so a counter that appears at 1 would never fire.
        for reason in ("invalid", "unreadable", "directory"):
            self.trust_load_failures.labels(reason)
        self.purged_rows = Counter(
            "edgeproof_purged_rows_total", "Rows deleted by scheduled housekeeping, by table "
            "(docs/operations.md, Retention)", ["table"], registry=self.registry)
        self.pending_oldest_age = Gauge(
            "edgeproof_issuance_pending_oldest_age_seconds", "Age of the oldest certificate "
            "reservation still pending (0: none), after this replica's last reconciliation",
            registry=self.registry)

    def _onboarding_metrics(self) -> None:
        """Zero-touch onboarding (docs/onboarding.md): its two unauthenticated steps."""
        self.onboardings = Counter(
            "edgeproof_onboardings_total", "Zero-touch onboarding steps (challenge, complete) "
            "by outcome (success, refused)", ["step", "outcome"], registry=self.registry)
        for step in ("challenge", "complete"):  # at 0 from the start, for increase()
            for outcome in ("success", "refused"):
                self.onboardings.labels(step, outcome)
        self.onboarding_refusals = Counter(
            "edgeproof_onboarding_refusals_total", "Onboarding steps refused, by step and "
            "reason code; a refusal with several reasons counts once per reason",
            ["step", "reason"], registry=self.registry)

    def onboarding(self, step: str, reasons: list[str] | None = None) -> None:
        """One onboarding step: a success, or a refusal with its reason codes."""
        self.onboardings.labels(step, "refused" if reasons else "success").inc()
        for reason in reasons or []:
            self.onboarding_refusals.labels(step, reason).inc()

    def attestation(self, verdict: str, reasons: list[str]) -> None:
        for reason in reasons or ["none"]:
            self.attestations.labels(verdict=verdict, reason=reason).inc()

    def audit_verified(self, ok: bool, at: float) -> None:
        self.audit_verification = AuditVerification(ok, at)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._http_series.get(key)
        if series is None:  # bounded: methods, route templates and statuses are
            labels = (method if method in _METHODS else "other", route, str(status))
            series = (self.http_requests.labels(*labels), self.http_duration.labels(*labels))
            if len(self._http_series) < 4096:  # (a flood of odd methods stays uncached)
                self._http_series[key] = series
        series[0].inc()
        series[1].observe(seconds)
