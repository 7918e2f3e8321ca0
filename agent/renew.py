"""The renewal loop: renew at a fraction of the lifetime, back off on failure.

Renewal is due at ``renew_fraction`` of the certificate's lifetime, moved by up
to 10 % either way so a fleet enrolled together does not renew together. On
failure: capped exponential backoff with full jitter (base 2 s, cap 5 min),
never sooner than the attestor's Retry-After, and never later than half of the
current certificate's remaining life (so an outage shorter than that life cannot
let it expire; this bound wins over a Retry-After that would). The current
credentials stay in place until a new set replaces them. With several attestor
URLs, an attempt that found no usable attestor (unreachable, TLS refused, 5xx or
429) moves to the next URL for the next attempt: failover rides on the same
backoff, and the agent stays with whichever attestor answered last.

The loop sleeps in short slices: it pings the systemd watchdog, notices a stop
request at once, and re-reads the wall clock, so a clock that jumps forward
past the renewal time renews at once instead of after the planned sleep.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from tpm2_pytss import TSS2_Exception

from agent.attest import NotProvisioned, attest_once, current_certificate, write_status
from agent.client import AttestorClient, AttestorError, TlsRefused, Unreachable
from agent.config import AgentConfig
from agent.tpm.device import Tpm, TpmError
from agent.verify import IssuedCertificateInvalid

log = logging.getLogger("edge_agent.renew")
RENEW_JITTER = 0.10
SLICE_SECONDS = 30.0


@dataclass
class Backoff:
    base: float = 2.0
    cap: float = 300.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], at least Retry-After."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
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


def before_expiry(delay: float, not_after: dt.datetime | None, now: dt.datetime) -> float:
    """``delay``, shortened to half the certificate's remaining life (at least 1 s)."""
    if not_after is None or now >= not_after:
        return delay
    return min(delay, max(1.0, (not_after - now).total_seconds() / 2))


@dataclass
class Renewer:
    config: AgentConfig
    tpm: Tpm
    client: AttestorClient
    clock: Callable[[], dt.datetime]
    stop: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    on_renewed: Callable[[str], object] | None = None
    reconnect: Callable[[], Tpm] | None = None
    heartbeat: Callable[[], object] | None = None
    after_step: Callable[[], object] | None = None  # e.g. rewrite the metrics textfile
    slice_seconds: float = SLICE_SECONDS
    due: dt.datetime | None = None
    failures: int = 0
    _tpm_broken: bool = False
    _due_for: tuple[dt.datetime, dt.datetime] | None = None

    def backoff(self) -> Backoff:
        return Backoff(self.config.backoff_base_seconds, self.config.backoff_cap_seconds,
                       rng=self.rng)

    def step(self, backoff: Backoff) -> float:
        """Renew if due; return the seconds to wait before the next step."""
        now = self.clock()
        cert = current_certificate(self.config.output)
        not_after = cert.not_valid_after_utc if cert is not None else None
        due = self.planned(cert)
        if due is not None and now < due:
            return (due - now).total_seconds()
        try:
            self._ensure_tpm()
            issued = attest_once(self.config, self.tpm, self.client, now)
        except (AttestorError, Unreachable, TpmError, TSS2_Exception, OSError,
                IssuedCertificateInvalid) as exc:
            return self._failed(exc, backoff, not_after, now)
        backoff.reset()
        self.failures = 0
        log.info("renewed: serial %s valid until %s", issued.serial, issued.not_after)
        if self.on_renewed is not None:
            self.on_renewed(issued.serial)
        self.due = renewal_time(issued.not_before, issued.not_after, self.config.renew_fraction,
                                self.rng)
        self._due_for = (issued.not_before, issued.not_after)
        self._status(next_renewal=self.due.isoformat(), last_error=None, failures=0)
        return max(1.0, (self.due - self.clock()).total_seconds())

    def planned(self, cert: x509.Certificate | None) -> dt.datetime | None:
        """When ``cert`` is due for renewal; None when the next step attests at once (no
        certificate, or retrying after a failure). Recorded for `edge-agent status`."""
        if cert is None or self.failures:
            return None
        validity = (cert.not_valid_before_utc, cert.not_valid_after_utc)
        if self._due_for != validity or self.due is None:
            # one jittered renewal time per certificate, not a new draw per step
            self._due_for = validity
            self.due = renewal_time(cert.not_valid_before_utc, cert.not_valid_after_utc,
                                    self.config.renew_fraction, self.rng)
            self._status(next_renewal=self.due.isoformat())
        return self.due

    def _failed(self, exc: Exception, backoff: Backoff, not_after: dt.datetime | None,
                now: dt.datetime) -> float:
        if isinstance(exc, TpmError | TSS2_Exception):
            self._tpm_broken = True  # reopen the TPM connection before the next attempt
        retry_after = exc.retry_after if isinstance(exc, AttestorError) else None
        delay = before_expiry(backoff.next_delay(retry_after), not_after, now)
        self.failures += 1
        what = describe(exc, self.config)
        elsewhere = ""
        if isinstance(exc, Unreachable) or (isinstance(exc, AttestorError) and exc.retryable):
            moved = self.client.fail_over()
            elsewhere = f" at {moved}" if moved else ""
        log.warning("renewal failed (%s); retrying%s in %.1f s", what, elsewhere, delay)
        retry_at = now + dt.timedelta(seconds=delay)
        self._status(last_error=what, failures=self.failures,
                     next_renewal=retry_at.isoformat())
        return delay

    def _ensure_tpm(self) -> None:
        if not self._tpm_broken or self.reconnect is None:
            return
        try:
            self.tpm.close()
        except (TSS2_Exception, OSError):
            pass
        self.tpm = self.reconnect()
        self._tpm_broken = False

    def _status(self, **update: object) -> None:
        try:
            write_status(self.config.state_dir, update)
        except OSError as exc:
            log.warning("cannot record status: %s", exc)

    def run(self) -> None:
        backoff = self.backoff()
        while not self.stop.is_set():
            delay = self.step(backoff)
            if self.after_step is not None:
                self.after_step()
            deadline = time.monotonic() + delay
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.stop.wait(min(left, self.slice_seconds))
                if self.heartbeat is not None:
                    self.heartbeat()
                if self.failures == 0 and self.due is not None and self.clock() >= self.due:
                    break  # the wall clock moved past the renewal time


def describe(exc: Exception, config: AgentConfig) -> str:
    """One line saying what failed, for logs and `edge-agent status`."""
    if isinstance(exc, AttestorError):
        return f"attestor refused: {exc.status} {', '.join(exc.codes)}"
    if isinstance(exc, TlsRefused):
        return str(exc)
    if isinstance(exc, Unreachable):
        return f"attestor unreachable: {exc}"
    if isinstance(exc, TpmError | TSS2_Exception):
        return f"TPM at {config.tcti}: {exc}"
    if isinstance(exc, NotProvisioned | IssuedCertificateInvalid):
        return str(exc)
    if isinstance(exc, OSError):
        return (f"cannot write credentials under {config.output}: "
                f"{exc.strerror or exc}; the current set is kept")
    return str(exc)
