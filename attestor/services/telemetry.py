"""What a scrape reports beyond the counters: backend health, key and CA expiry, the audit
chain's anchoring, the fleet by state and verdict, renewal lag, the webhook queue.

Computed when Prometheus scrapes, reused for ``metrics.cache_seconds`` (several
Prometheus servers, or the API port and the metrics port, share one result). Each
backend probe and the fleet queries run on threads of their own, at most one at a
time each; a scrape waits ``metrics.scrape_budget_seconds`` for them and reports
what did not answer as down, so a database that hangs (a connect timeout is 10 s)
never makes the scrape itself fail or time out. Fleet numbers that could not be
read are left out rather than reported stale.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from attestor.db import fleet_queries
from attestor.services import readiness
from attestor.services.context import Services
from attestor.services.keyring import RingKey
from attestor.services.webhooks import MAX_AGE as WEBHOOK_MAX_AGE
from identity.errors import IdentityError

log = logging.getLogger("attestor.metrics")
STATES = ("active", "quarantined", "revoked", "decommissioned")
_DATA = frozenset({"fleet", "ca", "signing"})  # jobs that fetch numbers, not backend probes
VERDICTS = ("pass", "fail", "none")


class Job:
    """One probe on a thread of its own; a run still going is joined, never doubled."""

    def __init__(self, name: str, work: Callable[[], Any]) -> None:
        self.name, self.work = name, work
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._done.set()
        self._result: tuple[bool, Any] = (False, None)

    def start(self) -> None:
        with self._lock:
            if not self._done.is_set():
                return  # the previous run has not finished: wait for it instead
            self._done = threading.Event()
            self._result = (False, None)  # never the previous run's answer
            threading.Thread(target=self._run, args=(self._done,), daemon=True,
                             name=f"metrics-{self.name}").start()

    def _run(self, done: threading.Event) -> None:
        try:
            self._result = (True, self.work())
        except (IdentityError, sa.exc.SQLAlchemyError, OSError, ValueError) as exc:
            log.warning("metrics probe %s failed: %s", self.name, getattr(exc, "code", exc))
            self._result = (False, exc)
        except Exception as exc:  # anything else is "down" too, and worth a traceback
            log.exception("metrics probe %s failed unexpectedly", self.name)
            self._result = (False, exc)
        finally:
            done.set()

    def wait(self, deadline: float) -> tuple[bool, Any]:
        """(answered and succeeded, value or error); (False, None) past the deadline."""
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            return False, None
        return self._result


@dataclass
class Fleet:
    devices: dict[tuple[str, str], int]
    certificates: fleet_queries.CertificateCounts
    audit: fleet_queries.AuditAnchor
    webhooks: fleet_queries.WebhookBacklog
    now: dt.datetime


@dataclass
class Snapshot:
    taken: float
    families: list[Metric] = field(default_factory=list)


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _timestamp(when: dt.datetime) -> float:
    return when.timestamp()


class FleetCollector(Collector):
    """The scrape-time collector registered in the attestor's registry."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._jobs = {name: Job(name, check) for name, check in readiness.checks(svc).items()}
        self._jobs["fleet"] = Job("fleet", self._fleet)
        self._jobs["ca"] = Job("ca", lambda: svc.issuer.ca_certificates(svc.clock()))
        self._jobs["signing"] = Job("signing", lambda: svc.keys.active())

    def describe(self) -> list[Metric]:
        return list(self._families({}, {}))

    def collect(self) -> list[Metric]:
        with self._lock:  # one refresh at a time; concurrent scrapes share its result
            cached = self._snapshot
            settings = self.svc.settings.metrics
            if cached is None or time.monotonic() - cached.taken >= settings.cache_seconds:
                self._snapshot = cached = self._refresh(settings.scrape_budget_seconds)
            return cached.families

    def _refresh(self, budget: float) -> Snapshot:
        for job in self._jobs.values():
            job.start()
        deadline = time.monotonic() + budget
        results = {name: job.wait(deadline) for name, job in self._jobs.items()}
        backends = {name: ok for name, (ok, _) in results.items() if name not in _DATA}
        answers = {name: value for name, (ok, value) in results.items() if ok and name in _DATA}
        return Snapshot(time.monotonic(), list(self._families(backends, answers)))

    def _fleet(self) -> Fleet:
        now = self.svc.clock()
        window = dt.timedelta(seconds=self.svc.settings.renewal_window)
        with self.svc.engine.connect() as conn:
            return Fleet(devices=fleet_queries.device_counts(conn),
                         certificates=fleet_queries.current_certificates(conn, now, window),
                         audit=fleet_queries.audit_anchor(conn),
                         webhooks=fleet_queries.webhook_backlog(conn, now - WEBHOOK_MAX_AGE),
                         now=now)

    def _families(self, backends: dict[str, bool],
                  answers: dict[str, Any]) -> Iterator[Metric]:
        settings = self.svc.settings
        up = _gauge("edgeproof_backend_up", "Whether a backend answered its health check at "
                    "the last scrape (1) or not (0): database, issuer, secrets, signing_key, "
                    "and vault when configured", ["backend"])
        for name, ok in backends.items():
            up.add_metric([name], 1.0 if ok else 0.0)
        yield up
        yield self._ca_expiry(answers.get("ca", []))
        yield self._signing_key_expiry(answers.get("signing"))
        yield from self._verification()
        interval = _gauge("edgeproof_audit_checkpoint_interval_seconds",
                          "The longest an audit entry may stay unanchored before a replica "
                          "signs a checkpoint (setting audit_checkpoint_seconds)")
        interval.add_metric([], settings.audit_checkpoint_seconds)
        yield interval
        window = _gauge("edgeproof_certificate_renewal_window_seconds",
                        "An active device whose newest certificate expires within this "
                        "missed its renewal (setting)")
        window.add_metric([], settings.renewal_window)
        yield window
        yield from self._fleet_families(answers.get("fleet"))

    def _ca_expiry(self, certificates: list[x509.Certificate]) -> Metric:
        family = _gauge("edgeproof_ca_certificate_expiry_timestamp_seconds",
                        "When a CA certificate expires (Unix time): the local CA's root and "
                        "issuing certificates, and Vault's when it signs workload certificates",
                        ["backend", "ca"])
        found: dict[tuple[str, str], float] = {}
        local = self.svc.ca
        listed = [("local", "root", local.root), ("local", "issuing", local.issuing.cert)]
        if self.svc.issuer is not local:
            for index, cert in enumerate(certificates):
                role = ("root" if cert.issuer == cert.subject
                        else "issuing" if index == 0 else "intermediate")
                listed.append(("vault", role, cert))
        for backend, role, cert in listed:
            expiry = _timestamp(cert.not_valid_after_utc)
            key = (backend, role)
            found[key] = min(expiry, found.get(key, expiry))
        for (backend, role), expiry in found.items():
            family.add_metric([backend, role], expiry)
        return family

    def _signing_key_expiry(self, active: RingKey | None) -> Metric:
        family = _gauge("edgeproof_signing_key_expiry_timestamp_seconds",
                        "When the active signing key (tokens, attestation results, audit "
                        "checkpoints) is due for rotation: its creation plus "
                        "signing_key_max_age_days (Unix time)")
        if active is not None:
            due = active.created_at + dt.timedelta(days=self.svc.settings.signing_key_max_age_days)
            family.add_metric([], _timestamp(due))
        return family

    def _verification(self) -> Iterator[Metric]:
        ok = _gauge("edgeproof_audit_verification_ok", "Whether this replica's last "
                    "verification of the whole audit chain found it intact (1) or found "
                    "problems (0); absent until one ran")
        at = _gauge("edgeproof_audit_last_verification_timestamp_seconds",
                    "When this replica last verified the whole audit chain (Unix time)")
        last = self.svc.metrics.audit_verification
        if last is not None:
            ok.add_metric([], 1.0 if last.ok else 0.0)
            at.add_metric([], last.at)
        yield from (ok, at)

    def _fleet_families(self, fleet: Fleet | None) -> Iterator[Metric]:
        devices = _gauge("edgeproof_devices", "Enrolled devices by state and last verdict "
                         "(none: never attested)", ["state", "last_verdict"])
        valid = _gauge("edgeproof_certificates_valid", "Active devices holding a valid "
                       "workload certificate")
        soon = _gauge("edgeproof_certificates_expiring_soon", "Active devices whose newest "
                      "workload certificate expires within the renewal window (they missed "
                      "their renewal)")
        last = _gauge("edgeproof_audit_last_checkpoint_timestamp_seconds", "When the newest "
                      "signed audit checkpoint was made (Unix time; 0: none yet)")
        unanchored = _gauge("edgeproof_audit_unanchored_entries", "Audit entries written "
                            "after the newest signed checkpoint")
        depth = _gauge("edgeproof_webhook_queue_depth", "Webhook deliveries queued and not "
                       "yet delivered (still being retried)")
        oldest = _gauge("edgeproof_webhook_queue_oldest_age_seconds", "Age of the oldest "
                        "queued webhook delivery (0: the queue is empty)")
        if fleet is not None:
            counts = {(s, v): 0 for s in STATES for v in VERDICTS} | fleet.devices
            for (state, verdict), n in sorted(counts.items()):
                devices.add_metric([state, verdict], n)
            valid.add_metric([], fleet.certificates.valid)
            soon.add_metric([], fleet.certificates.expiring)
            at = fleet.audit.checkpoint_at
            last.add_metric([], _timestamp(at) if at is not None else 0.0)
            unanchored.add_metric([], fleet.audit.unanchored)
            depth.add_metric([], fleet.webhooks.depth)
            queued = fleet.webhooks.oldest
            oldest.add_metric([], max(0.0, (fleet.now - queued).total_seconds())
                              if queued is not None else 0.0)
        yield from (devices, valid, soon, last, unanchored, depth, oldest)


def register(svc: Services) -> None:
    """Add the scrape-time collector to the services' registry (once per Services)."""
    svc.metrics.registry.register(FleetCollector(svc))
