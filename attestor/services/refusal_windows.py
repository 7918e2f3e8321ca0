"""Failed authentication per source address: a limit shared by the replicas, and one
summary audit entry per source and window instead of a row per attempt.

Windows are fixed (``rate_limits.auth_failure_window_seconds``, aligned to the epoch
so every replica cuts them alike). Each refusal adds to its source's count in the
database (``auth_refusals``); the first ``auth_failures_audited_individually`` of a
window also get an entry of their own. When a source's count reaches
``auth_failures_per_source``, the replica that saw it refuses that source's
credentials unchecked (429 ``auth.throttled``, ``Retry-After`` = the window's end)
until the window closes. Another replica learns of it at its own next refusal from
that source, so across N replicas a source gets at most ``limit + N - 1`` failed
checks per window (plus any already in flight). Throttled requests cost no database
write: each replica counts them in memory and adds them to the window's rows on its
next tick (a replica killed before that loses at most one tick of these counts).
A window's rows are summarised (``auth.refusals``: source, window, total, codes)
and deleted once it is closed, by whichever replica claims them first.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from typing import TYPE_CHECKING

from attestor import audit
from attestor.db import refusal_queries
from attestor.settings import RateLimitSettings
from identity.errors import AuthThrottled

if TYPE_CHECKING:  # Services holds an AuthGuard
    from attestor.services.context import Services

log = logging.getLogger("attestor.refusals")
MAX_SOURCES = 100_000  # blocked sources remembered per replica


def window_start(now: dt.datetime, seconds: int) -> dt.datetime:
    stamp = math.floor(now.timestamp() / seconds) * seconds
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def tick_seconds(limits: RateLimitSettings) -> float:
    """How often a replica flushes its throttled counts and summarises closed windows."""
    return min(15.0, max(1.0, limits.auth_failure_window_seconds / 4))


class AuthGuard:
    """One replica's memory: sources it refuses unchecked, and throttled counts not yet
    written."""

    def __init__(self) -> None:
        self._blocked: dict[str, dt.datetime] = {}  # source -> end of its window
        self._throttled: dict[tuple[str, dt.datetime], int] = {}
        self._lock = threading.Lock()

    def check(self, source: str, now: dt.datetime, limits: RateLimitSettings) -> None:
        """Raise AuthThrottled (and count it) if ``source`` is blocked now."""
        with self._lock:
            until = self._blocked.get(source)
            if until is None:
                return
            if until <= now:
                del self._blocked[source]
                return
            key = (source, window_start(now, limits.auth_failure_window_seconds))
            self._throttled[key] = self._throttled.get(key, 0) + 1
        raise AuthThrottled(
            f"too many refused requests from this address; retry after {until.isoformat()}",
            retry_after=(until - now).total_seconds())

    def block(self, source: str, until: dt.datetime, now: dt.datetime) -> None:
        with self._lock:
            if len(self._blocked) >= MAX_SOURCES:
                self._blocked = {s: u for s, u in self._blocked.items() if u > now}
            if len(self._blocked) < MAX_SOURCES:
                self._blocked[source] = until

    def take_throttled(self) -> dict[tuple[str, dt.datetime], int]:
        with self._lock:
            taken, self._throttled = self._throttled, {}
        return taken

    def put_back(self, counts: dict[tuple[str, dt.datetime], int]) -> None:
        with self._lock:
            for key, n in counts.items():
                self._throttled[key] = self._throttled.get(key, 0) + n


def record(svc: Services, source: str, code: str, now: dt.datetime) -> int:
    """Count one refusal of ``source`` (its own transaction, committed before anything
    else can fail) and block the source here when it reached the limit; returns the
    source's count in this window."""
    limits = svc.settings.rate_limits
    start = window_start(now, limits.auth_failure_window_seconds)
    with svc.engine.begin() as conn:
        total = refusal_queries.count_refusals(conn, source, start, code)
    if total >= limits.auth_failures_per_source:
        end = start + dt.timedelta(seconds=limits.auth_failure_window_seconds)
        svc.auth_guard.block(source, end, now)
    return total


def flush(svc: Services) -> None:
    """Write this replica's throttled counts into the shared rows."""
    counts = svc.auth_guard.take_throttled()
    if not counts:
        return
    try:
        with svc.engine.begin() as conn:
            for (source, start), n in counts.items():
                refusal_queries.count_refusals(conn, source, start, AuthThrottled.code, n)
    except BaseException:
        svc.auth_guard.put_back(counts)
        raise


def summarise(svc: Services) -> int:
    """Flush, then write one summary entry per closed window with refusals that have
    no entry of their own; returns how many were written."""
    flush(svc)
    limits = svc.settings.rate_limits
    now = svc.clock()
    # Closed, and every replica had two ticks to flush its throttled counts into it.
    cutoff = now - dt.timedelta(seconds=limits.auth_failure_window_seconds
                                + 2 * tick_seconds(limits))
    written = 0
    with svc.session() as session, session.begin():
        for window in refusal_queries.claim_windows(session.connection(), cutoff):
            if window.total <= limits.auth_failures_audited_individually:
                continue  # each of them has an entry already
            checked = window.total - window.codes.get(AuthThrottled.code, 0)
            audit.append(session, at=now, actor="attestor", action="auth.refusals",
                         outcome="refused", subject=f"source:{window.source}",
                         reasons=sorted(window.codes), details={
                             "source": window.source,
                             "window_start": window.window_start.isoformat(),
                             "window_seconds": limits.auth_failure_window_seconds,
                             "refusals": window.total, "codes": dict(sorted(
                                 window.codes.items())),
                             "individual_entries": min(
                                 checked, limits.auth_failures_audited_individually)})
            written += 1
    if written:
        log.warning("summarised refused requests of %d source window(s)", written)
    return written
