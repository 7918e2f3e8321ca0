"""A queued webhook delivery whose URL is no longer configured is never signed with an
empty or missing key: it is dropped, recorded (on its row and in the audit log) and
counted, on SQLite and PostgreSQL. An empty or short HMAC key refuses to start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from sqlmodel import Session, select

from attestor.db.models import AuditEvent, WebhookDelivery
from attestor.observability import Metrics
from attestor.services import webhooks
from attestor.settings import ConfigError, Settings, load_settings

T0 = dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.UTC)
KEPT = "https://siem.example/hooks/edgeproof"
REMOVED = "https://user:pw@old.example:8443/hooks?token=abc"
SECRET = "whsec-test-0123456789"


def _settings(tmp_path: Path, *urls: str) -> Settings:
    return load_settings(tmp_path, dev=True, webhooks=[{"url": u, "secret": SECRET}
                                                       for u in urls])


def test_a_delivery_to_a_removed_url_is_dropped_recorded_and_counted(
        engine: sa.Engine, tmp_path: Path) -> None:
    before = _settings(tmp_path, KEPT, REMOVED)
    with Session(engine) as session, session.begin():
        webhooks.enqueue(session, before, "device.revoked", {"device_id": "d1"}, T0)
    after = _settings(tmp_path, KEPT)  # the operator removed one hook and restarted
    sent: list[tuple[str, dict[str, str]]] = []

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        sent.append((url, headers))
        return 204

    metrics = Metrics()
    delivered = webhooks.deliver_due(lambda: Session(engine, expire_on_commit=False), after,
                                     lambda: T0, post, metrics=metrics)
    assert delivered == 1
    assert [url for url, _ in sent] == [KEPT]  # nothing went out for the removed URL
    with Session(engine) as session:
        rows = {r.url: r for r in session.exec(select(WebhookDelivery))}
        entries = session.exec(select(AuditEvent).where(
            AuditEvent.action == "webhook.dropped")).all()
    dropped = rows[REMOVED]
    assert dropped.delivered_at is None and dropped.attempts == 0
    assert dropped.last_error == "dropped: url_removed"
    assert dropped.next_attempt_at > T0 + dt.timedelta(days=365)  # never due again
    assert len(entries) == 1 and entries[0].outcome == "alert"
    assert entries[0].details == {"delivery": dropped.id, "event": "device.revoked",
                                  "reason": "url_removed",
                                  "destination": "https://old.example:8443"}  # no secrets
    text = generate_latest(metrics.registry).decode()
    assert 'edgeproof_webhook_deliveries_dropped_total{reason="url_removed"} 1.0' in text

    # a second pass finds nothing due: the drop is recorded once
    assert webhooks.deliver_due(lambda: Session(engine), after, lambda: T0, post,
                                metrics=metrics) == 0
    assert 'dropped_total{reason="url_removed"} 1.0' in generate_latest(
        metrics.registry).decode()


@pytest.mark.parametrize("secret", ["", "   ", "short"])
def test_an_empty_or_short_hmac_key_is_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError, match="webhooks.0.secret"):
        load_settings(tmp_path, dev=True, webhooks=[{"url": KEPT, "secret": secret}])


def test_one_url_with_two_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="more than once"):
        load_settings(tmp_path, dev=True, webhooks=[{"url": KEPT, "secret": SECRET},
                                                    {"url": KEPT, "secret": SECRET + "x"}])
