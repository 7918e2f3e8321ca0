"""The renewal loop: renew at a fraction of the lifetime, back off on failure.

Renewal is due at ``renew_fraction`` of the certificate's lifetime, moved by up
to 10 % either way so a fleet enrolled together does not renew together. On
failure: capped exponential backoff with full jitter (base 2 s, cap 5 min),
never sooner than the attestor's Retry-After. The current credentials stay in
place until a new set replaces them.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.attest import attest_once, current_certificate
from agent.client import AttestorClient, AttestorError, Unreachable
from agent.config import AgentConfig
from agent.tpm.device import Tpm, TpmError

log = logging.getLogger("edge_agent.renew")
RENEW_JITTER = 0.10


@dataclass
class Backoff:
    base: float = 2.0
    cap: float = 300.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], at least Retry-After."""
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        delay = self.rng.uniform(0, ceiling)
        return max(delay, retry_after or 0.0)

    def reset(self) -> None:
        self.attempt = 0


def renewal_time(not_before: dt.datetime, not_after: dt.datetime, fraction: float,
                 rng: random.Random) -> dt.datetime:
    lifetime = not_after - not_before
    moved = fraction * (1 + rng.uniform(-RENEW_JITTER, RENEW_JITTER))
    return not_before + lifetime * min(moved, 0.95)


@dataclass
class Renewer:
    config: AgentConfig
    tpm: Tpm
    client: AttestorClient
    clock: Callable[[], dt.datetime]
    stop: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    on_renewed: Callable[[str], None] | None = None

    def step(self, backoff: Backoff) -> float:
        """Renew if due; return the seconds to wait before the next step."""
        now = self.clock()
        cert = current_certificate(self.config.state_dir)
        if cert is not None:
            due = renewal_time(cert.not_valid_before_utc, cert.not_valid_after_utc,
                               self.config.renew_fraction, self.rng)
            if now < due:
                return (due - now).total_seconds()
        try:
            issued = attest_once(self.config, self.tpm, self.client, now)
        except (AttestorError, Unreachable, TpmError) as exc:
            retry_after = exc.retry_after if isinstance(exc, AttestorError) else None
            delay = backoff.next_delay(retry_after)
            log.warning("renewal failed (%s); retrying in %.1fs", exc, delay)
            return delay
        backoff.reset()
        log.info("renewed: serial %s valid until %s", issued.serial, issued.not_after)
        if self.on_renewed is not None:
            self.on_renewed(issued.serial)
        due = renewal_time(issued.not_before, issued.not_after, self.config.renew_fraction,
                           self.rng)
        return max(1.0, (due - self.clock()).total_seconds())

    def run(self) -> None:
        backoff = Backoff(rng=self.rng)
        while not self.stop.is_set():
            delay = self.step(backoff)
            self.stop.wait(delay)
