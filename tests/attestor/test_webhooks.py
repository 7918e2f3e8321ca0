"""Webhooks on verdict change, quarantine and revocation: delivered by the background
worker to a real HTTP receiver, signed with HMAC-SHA256, retried with backoff, recorded."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from agent.attest import attest_once
from agent.sim.swtpm import Manufacturer
from attestor.db.models import WebhookDelivery
from attestor.services.webhooks import signature
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
SECRET = "whsec-test-0123456789"


class Receiver:
    """A webhook endpoint that fails its first ``failures`` deliveries."""

    def __init__(self, failures: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = receiver.failures > 0
                receiver.failures -= 1
                if not failing:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.received]


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(failures=1)
    yield rec
    rec.server.shutdown()


@pytest.fixture
def hooked(tmp_path: Path, manufacturer: Manufacturer,
           receiver: Receiver) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], webhook_poll_seconds=0.1,
                        webhooks=[{"url": receiver.url, "secret": SECRET}]).start()
    try:
        yield live
    finally:
        live.stop()


def test_events_are_signed_retried_and_recorded(hooked: LiveAttestor, device: Device,
                                               receiver: Receiver) -> None:
    config = enroll_and_learn(hooked, device)  # the learning run fails: verdict -> fail
    _wait(lambda: receiver.failures == 0)  # ... whose first delivery got a 500
    assert receiver.received == []
    hooked.clock.offset += dt.timedelta(seconds=15)  # past the first backoff (10 s)
    _wait(lambda: len(receiver.received) == 1)

    with hooked.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())  # verdict -> pass
        attest_once(config, device.tpm, client, now())  # no change: no event
    httpx.post(f"{hooked.url}/v1/devices/{config.device_id}/quarantine",
               json={"reason": "drill"}, headers=hooked.headers("admin"))
    httpx.post(f"{hooked.url}/v1/devices/{config.device_id}/revoke",
               json={"reason": "drill"}, headers=hooked.headers("admin"))
    _wait(lambda: len(receiver.received) == 4)
    assert receiver.events() == ["verdict.changed", "verdict.changed", "device.quarantined",
                                 "device.revoked"]

    first = json.loads(receiver.received[0][1])
    assert first["device_id"] == config.device_id and first["verdict"] == "fail"
    assert first["reasons"] == ["policy.no_reference"] and first["previous_verdict"] is None
    assert json.loads(receiver.received[1][1])["previous_verdict"] == "fail"
    for headers, body in receiver.received:
        stamp, mac = dict(p.split("=", 1) for p in
                          headers["X-Edgeproof-Signature"].split(",")).values()
        expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body,
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest(mac, expected)
        assert headers["X-Edgeproof-Signature"] == signature(SECRET.encode(), int(stamp), body)

    def recorded() -> list[WebhookDelivery]:
        with hooked.services.session() as session:
            return list(session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)))

    # the worker records an attempt after the receiver has answered: wait for the record
    _wait(lambda: all(r.delivered_at is not None for r in recorded()))
    rows = recorded()
    assert [r.attempts for r in rows] == [2, 1, 1, 1]
    assert all(r.delivered_at is not None for r in rows)
    assert rows[0].last_error is None


def test_a_forged_signature_does_not_match() -> None:
    body = b'{"event":"device.revoked"}'
    good = signature(SECRET.encode(), 1700000000, body)
    assert signature(SECRET.encode(), 1700000000, body.replace(b"revoked", b"released")) != good
    assert signature(b"another secret", 1700000000, body) != good
    assert signature(SECRET.encode(), 1700000001, body) != good
