"""Background work of a running attestor, on timers: webhook delivery, audit
checkpoints, audit verification, summaries of refused requests, housekeeping (expired
nonces, aged attestation records: attestor.services.housekeeping), and the
reconciliation of interrupted issuance (also once at start-up).

Each job runs on its own daemon thread and survives its own failures (logged,
retried at the next tick). Every replica runs them: webhook rows and interrupted
reservations are claimed with ``SKIP LOCKED`` on PostgreSQL (and changed by
conditional updates everywhere), refusal windows by ``DELETE … RETURNING``, and a
checkpoint of an unchanged head is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from attestor import audit
from attestor.observability import Metrics
from attestor.services import checkpoints, housekeeping, issuance, refusal_windows, webhooks
from attestor.services.context import Services
from identity.errors import AuditUnavailable, IdentityError

log = logging.getLogger("attestor.background")
VAULT_LEASE_POLL = 10.0  # seconds; renewal is due at two thirds of the token's lease


class Periodic:
    def __init__(self, name: str, interval: float, job: Callable[[], object],
                 final: Callable[[], object] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.name, self.interval, self.job, self.final = name, interval, job, final
        self.metrics = metrics
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        try:
            self.job()
        except (IdentityError, sa.exc.SQLAlchemyError, OSError) as exc:
            if isinstance(exc, AuditUnavailable) and self.metrics is not None:
                self.metrics.audit_write_failures.inc()
            log.exception("background job %s failed; retrying at the next tick", self.name)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        if self.final is not None:  # what this replica holds in memory, written once more
            try:
                self.final()
            except (IdentityError, sa.exc.SQLAlchemyError, OSError):
                log.exception("background job %s could not finish", self.name)


def checkpoint(svc: Services) -> None:
    """Sign the audit head now (if it moved) and send it to the sinks; the log line is
    a witness of it too (see :mod:`attestor.services.checkpoints`)."""
    checkpoints.sign(svc)


def deliver(svc: Services) -> None:
    webhooks.deliver_due(svc.session, svc.settings, svc.clock, metrics=svc.metrics)


def verify_audit(svc: Services) -> audit.AuditReport:
    """Walk the whole audit chain; the outcome is what the metrics report
    (``edgeproof_audit_verification_ok``), and problems are logged by code."""
    with svc.session() as session:
        report = audit.verify(session, svc.keys.all_public())
    svc.metrics.audit_verified(report.ok, svc.clock().timestamp())
    if not report.ok:
        log.error("audit chain verification found problems: %s",
                  sorted({str(p["code"]) for p in report.problems}))
    return report


def start(svc: Services) -> list[Periodic]:
    """Reconcile, then start the timers; returns them for :func:`stop`."""
    m = svc.metrics
    reconcile = Periodic("issuance-reconcile", svc.settings.issuance.reconcile_seconds,
                         lambda: issuance.reconcile_pass(svc), metrics=m)
    reconcile.tick()  # at once: a replica restarted after a crash cleans up its own
    jobs = [reconcile,
            Periodic("audit-checkpoint", checkpoints.tick_seconds(svc.settings),
                     lambda: checkpoints.checkpoint_pass(svc), metrics=m),
            Periodic("auth-refusals", refusal_windows.tick_seconds(svc.settings.rate_limits),
                     lambda: refusal_windows.summarise(svc),
                     final=lambda: refusal_windows.flush(svc), metrics=m)]
    jobs.append(Periodic("housekeeping", svc.settings.retention.purge_seconds,
                         lambda: housekeeping.purge(svc), metrics=m))
    if svc.vault is not None:
        jobs.append(Periodic("vault-lease", VAULT_LEASE_POLL, svc.vault.maintain))
    # Even with no webhook configured: deliveries queued for a URL since removed are
    # dropped (recorded, counted), not left in the queue for ever.
    jobs.append(Periodic("webhooks", svc.settings.webhook_poll_seconds, lambda: deliver(svc),
                         metrics=m))
    if svc.settings.audit_verify_seconds > 0:
        jobs.append(Periodic("audit-verify", svc.settings.audit_verify_seconds,
                             lambda: verify_audit(svc), metrics=m))
    return [job.start() for job in jobs]


def stop(jobs: list[Periodic]) -> None:
    for job in jobs:
        job.stop()
