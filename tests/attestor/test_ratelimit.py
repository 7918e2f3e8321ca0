"""Rate limits: token buckets per device and per client, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.client import AttestorError
from agent.sim.swtpm import Manufacturer
from attestor.api.ratelimit import RateLimiter
from identity.errors import RateLimited
from tests.harness import Device, LiveAttestor, enroll_and_learn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for _ in range(3):
        limiter.hit("challenge", "dev-1", 3)
    with pytest.raises(RateLimited) as refused:
        limiter.hit("challenge", "dev-1", 3)
    assert refused.value.retry_after == pytest.approx(20.0)  # one token per 20 s
    limiter.hit("challenge", "dev-2", 3)  # another device has its own bucket
    clock.now += 20
    limiter.hit("challenge", "dev-1", 3)
    with pytest.raises(RateLimited):
        limiter.hit("challenge", "dev-1", 3)


@pytest.fixture
def strict(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], rate_limits={
        "challenge_per_minute": 2, "enrollment_per_minute": 4}).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.e2e
@pytest.mark.tpm
def test_challenges_and_enrollments_are_limited(strict: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(strict, device)  # two enrollment calls of the four
    assert config.device_id
    with strict.client(config, device.tpm) as client:
        client.challenge(config.device_id)  # the learning run spent one
        with pytest.raises(AttestorError) as limited:
            client.challenge(config.device_id)
    assert limited.value.status == 429 and limited.value.codes == ["request.rate_limited"]
    url = f"{strict.url}/v1/enrollments/nothing/activation"
    statuses = [httpx.post(url, json={"secret": "AAAA"}).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    response = httpx.post(url, json={"secret": "AAAA"})
    assert 1 <= int(response.headers["retry-after"]) <= 15
    metrics = httpx.get(f"{strict.url}/metrics", headers=strict.headers("auditor")).text
    assert 'edgeproof_rate_limited_requests_total{limit="challenge"} 1.0' in metrics
    assert 'edgeproof_rate_limited_requests_total{limit="enrollment"} 2.0' in metrics


def test_device_requests_beyond_the_inflight_limit_are_shed_with_retry_after(
        tmp_path: Path, manufacturer: Manufacturer) -> None:
    """A request whose body arrives slowly holds the only slot: the next device request
    is shed at once (429, jittered Retry-After), the operator API is not, and once the
    slot is free device requests are served again."""
    import threading
    import time

    live = LiveAttestor(tmp_path / "attestor", [manufacturer],
                        rate_limits={"max_inflight": 1,
                                     "overload_retry_after_seconds": 3}).start()
    try:
        def slow_body() -> Iterator[bytes]:
            yield b'{"ek_public": "'
            time.sleep(1.5)
            yield b'AAAA"}'

        holder = threading.Thread(target=lambda: httpx.post(
            f"{live.url}/v1/enrollments", content=slow_body(),
            headers={"Content-Type": "application/json", **live.enroller_headers}, timeout=10))
        holder.start()
        time.sleep(0.5)
        shed = httpx.post(f"{live.url}/v1/devices/d1/challenge", json={})
        assert shed.status_code == 429
        assert shed.json()["code"] == "request.overloaded"
        assert 3 <= int(shed.headers["retry-after"]) <= 6
        assert httpx.get(f"{live.url}/v1/devices",
                         headers=live.headers("auditor")).status_code == 200
        holder.join()
        after = httpx.post(f"{live.url}/v1/devices/d1/challenge", json={})
        assert after.status_code == 401  # served (and refused for want of a signature)
        metrics = httpx.get(f"{live.url}/metrics", headers=live.headers("auditor")).text
        assert 'edgeproof_rate_limited_requests_total{limit="overload"} 1.0' in metrics
    finally:
        live.stop()
