"""Webhooks on verdict changes, quarantine and revocation: queued in the database in the
same transaction as the change, delivered by a background worker, signed, retried.

Signature header: ``X-Edgeproof-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>``; a receiver rejects stale ``t`` values. Attempts back off
exponentially (10 s doubling, capped at an hour) for a day; each attempt is recorded.

A queued delivery is signed only with the key configured for its URL now. One whose
URL was removed from the settings since it was queued is dropped, never sent (an
empty key would make its signature forgeable by anyone): the row says so, the audit
log gets a ``webhook.dropped`` entry (the destination's origin only: a URL may carry
credentials) and ``edgeproof_webhook_deliveries_dropped_total{reason}`` counts it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlmodel import Session, col, select

from attestor import audit
from attestor.db.models import WebhookDelivery
from attestor.observability import Metrics
from attestor.settings import Settings

log = logging.getLogger("attestor.webhooks")
MAX_AGE = dt.timedelta(days=1)
BATCH = 20
NEVER = dt.timedelta(days=3650)  # a row that will not be attempted again
CHECKPOINT_EVENT = "audit.checkpoint"  # the audit checkpoint sink's channel


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def enqueue(session: Session | sa.Connection, settings: Settings, event: str,
            payload: dict[str, Any], now: dt.datetime) -> None:
    """Queue ``event`` for every subscribed endpoint, in the caller's transaction."""
    rows = [{"event": event, "url": hook.url, "created_at": now, "next_attempt_at": now,
             "attempts": 0, "payload": {"event": event, "at": now.isoformat(), **payload}}
            for hook in settings.webhooks if event in hook.events]
    if rows:
        conn = session.connection() if isinstance(session, Session) else session
        conn.execute(sa.insert(WebhookDelivery), rows)


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(3600, 10 * 2 ** max(0, attempts - 1)))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _drop(session: Session, row: WebhookDelivery, reason: str, now: dt.datetime,
          metrics: Metrics | None) -> None:
    """Take ``row`` out of the queue for good, recorded and counted, in the pass's
    transaction."""
    row.last_error = f"dropped: {reason}"
    row.next_attempt_at = now + NEVER
    session.add(row)
    audit.append(session, at=now, actor="attestor", action="webhook.dropped",
                 outcome="alert", subject=f"webhook:{row.id}",
                 details={"delivery": row.id, "event": row.event, "reason": reason,
                          "destination": _origin(row.url)})
    log.warning("webhook delivery %s (%s) dropped: %s", row.id, row.event, reason)
    if metrics is not None:
        metrics.webhook_dropped.labels(reason=reason).inc()


def deliver_due(session_factory: Callable[[], Session], settings: Settings,
                clock: Callable[[], dt.datetime],
                post: Callable[[str, bytes, dict[str, str]], int] | None = None,
                metrics: Metrics | None = None) -> int:
    """One pass over due deliveries; returns how many succeeded."""
    keys = {hook.url: hook.secret.get_secret_value().encode() for hook in settings.webhooks}
    send = post or _post
    delivered = 0
    now = clock()
    with session_factory() as session:
        due = session.exec(select(WebhookDelivery).where(
            col(WebhookDelivery.delivered_at).is_(None),
            col(WebhookDelivery.next_attempt_at) <= now)
            .order_by(col(WebhookDelivery.next_attempt_at)).limit(BATCH)
            .with_for_update(skip_locked=True)).all()  # replicas share the queue
        for row in due:
            key = keys.get(row.url)
            if not key:  # the URL left the settings after this was queued
                _drop(session, row, "url_removed", now, metrics)
                continue
            body = json.dumps(row.payload, separators=(",", ":")).encode()
            stamp = int(now.timestamp())
            headers = {"Content-Type": "application/json", "X-Edgeproof-Event": row.event,
                       "X-Edgeproof-Delivery": str(row.id),
                       "X-Edgeproof-Signature": signature(key, stamp, body)}
            row.attempts += 1
            try:
                status = send(row.url, body, headers)
                ok = 200 <= status < 300
                error = None if ok else f"HTTP {status}"
            except httpx.HTTPError as exc:
                ok, error = False, type(exc).__name__
            if not ok and metrics is not None:
                metrics.webhook_failures.inc()  # edgeproof_webhook_delivery_failures_total
                if row.event == CHECKPOINT_EVENT:
                    metrics.checkpoint_sink_failures.labels(sink="webhook").inc()
            if ok:
                row.delivered_at, row.last_error = now, None
                delivered += 1
            elif now - row.created_at > MAX_AGE:
                row.last_error = f"gave up: {error}"
                row.next_attempt_at = now + NEVER
            else:
                row.last_error = error
                row.next_attempt_at = now + _backoff(row.attempts)
            session.add(row)
        session.commit()
    return delivered


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=5.0).status_code
