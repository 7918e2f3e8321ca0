"""Renewal timing and backoff; the loop against a live attestor and swtpm."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from agent.client import AttestorClient
from agent.renew import Backoff, Renewer, renewal_time
from tests.harness import Device, LiveAttestor, enroll_and_learn

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_backoff_is_capped_full_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0 <= d <= min(300, 2 * 2**i) for i, d in enumerate(delays))
    assert max(delays) <= 300
    assert backoff.next_delay(retry_after=400) == 400
    backoff.reset()
    assert backoff.next_delay() <= 2


def test_renewal_is_two_thirds_with_ten_percent_jitter() -> None:
    rng = random.Random(7)
    times = [renewal_time(T0, T0 + dt.timedelta(hours=1), 2 / 3, rng) for _ in range(500)]
    offsets = [(t - T0).total_seconds() / 3600 for t in times]
    assert min(offsets) >= 2 / 3 * 0.9 - 1e-9 and max(offsets) <= 2 / 3 * 1.1 + 1e-9
    assert max(offsets) - min(offsets) > 0.1  # actually spread


@pytest.mark.e2e
@pytest.mark.tpm
def test_loop_renews_when_due_and_backs_off_when_the_attestor_is_away(
    attestor: LiveAttestor, device: Device
) -> None:
    config = enroll_and_learn(attestor, device)
    offset = dt.timedelta()

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset

    with attestor.client(config, device.tpm) as client:
        renewer = Renewer(config, device.tpm, client, clock, rng=random.Random(3))
        backoff = Backoff(rng=random.Random(3))
        wait = renewer.step(backoff)  # no certificate yet: attests now
        first = (config.state_dir / "cert.pem").read_bytes()
        assert 0.6 * 3600 < wait < 0.74 * 3600
        assert renewer.step(backoff) > 0.5 * 3600  # not yet due: nothing happens
        assert (config.state_dir / "cert.pem").read_bytes() == first
        offset = dt.timedelta(minutes=50)
        renewer.step(backoff)  # due: renews
        second = (config.state_dir / "cert.pem").read_bytes()
        assert second != first

    offset = dt.timedelta(minutes=100)
    with AttestorClient("http://127.0.0.1:9") as dead:  # nothing listens on port 9
        renewer = Renewer(config, device.tpm, dead, clock, rng=random.Random(3))
        delays = [renewer.step(backoff) for _ in range(3)]
    assert all(d <= 300 for d in delays)
    assert (config.state_dir / "cert.pem").read_bytes() == second  # credentials kept
