"""Per-device and per-client rate limits: token buckets, one set per replica.

Each limit allows a burst of its per-minute count and refills continuously. The
buckets live in the replica's memory: behind a load balancer with N replicas a
client gets at most N times a limit, which bounds abuse without a shared store
on the hot path (see docs/operations.md). A refused request is a 429 problem
with ``Retry-After`` and counts in ``edgeproof_rate_limited_requests_total``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from attestor.observability import CLIENT_KEY
from attestor.services.context import Services
from identity.errors import RateLimited

MAX_KEYS = 200_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, limit: str, key: str, per_minute: int) -> None:
        """Take one token from ``limit``'s bucket for ``key``, or raise RateLimited."""
        rate = per_minute / 60.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get((limit, key))
            if bucket is None:
                if len(self._buckets) >= MAX_KEYS:
                    self._evict(now)
                bucket = self._buckets[(limit, key)] = _Bucket(float(per_minute), now)
            bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                raise RateLimited(f"rate limit {limit} ({per_minute}/min) reached",
                                  retry_after=(1.0 - bucket.tokens) / rate)
            bucket.tokens -= 1.0

    def _evict(self, now: float) -> None:
        """Drop buckets idle for a minute or more (they would be full again anyway)."""
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= 60.0]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_KEYS:
            self._buckets.clear()


def client_address(request: Request) -> str:
    """The client as :class:`attestor.observability.RequestContext` resolved it (through
    trusted proxies only), else the TCP peer."""
    resolved = request.scope.get(CLIENT_KEY)
    if isinstance(resolved, str):
        return resolved
    return request.client.host if request.client else "unknown"


def _hit(request: Request, name: str, key: str, per_minute: int) -> None:
    svc: Services = request.app.state.services
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        limiter.hit(name, key, per_minute)
    except RateLimited:
        svc.metrics.rate_limited.labels(limit=name).inc()
        raise


def client_limit(kind: str) -> Callable[[Request], Awaitable[None]]:
    """Per client address, before any credential is checked (cheap refusals first)."""

    async def dependency(request: Request) -> None:
        limits = request.app.state.services.settings.rate_limits
        if kind == "enrollment":
            _hit(request, "enrollment", client_address(request), limits.enrollment_per_minute)
        else:
            _hit(request, "client", client_address(request), limits.client_per_minute)

    return dependency


def device_limit(request: Request, kind: str, device_id: str) -> None:
    """Per device, after the device proved who it is (so nobody can spend its budget)."""
    limits = request.app.state.services.settings.rate_limits
    per_minute = (limits.challenge_per_minute if kind == "challenge"
                  else limits.attestation_per_minute)
    _hit(request, kind, device_id, per_minute)
