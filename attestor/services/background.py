"""Background work of a running attestor: webhook delivery and audit checkpoints on
timers, and the reconciliation of interrupted issuance at start-up.

Each job runs on its own daemon thread and survives its own failures (logged,
retried at the next tick). Every replica runs them: webhook rows are claimed with
``SKIP LOCKED`` on PostgreSQL, and a checkpoint of an unchanged head is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
import structlog

from attestor import audit
from attestor.services import issuance, refusal_windows, webhooks
from attestor.services.context import Services
from identity.errors import IdentityError

log = logging.getLogger("attestor.background")
witness = structlog.get_logger("attestor.audit")
VAULT_LEASE_POLL = 10.0  # seconds; renewal is due at two thirds of the token's lease


class Periodic:
    def __init__(self, name: str, interval: float, job: Callable[[], object],
                 final: Callable[[], object] | None = None) -> None:
        self.name, self.interval, self.job, self.final = name, interval, job, final
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        try:
            self.job()
        except (IdentityError, sa.exc.SQLAlchemyError, OSError):
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
    """Sign the audit head; the log line is an off-box witness of it (an attacker who
    rewrites the database cannot rewrite what the log pipeline already shipped)."""
    with svc.session() as session, session.begin():
        row = audit.checkpoint(session, svc.signer.key, svc.signer.kid, svc.clock())
    if row is not None:
        witness.info("audit checkpoint", seq=row.seq, hash=row.hash, kid=row.kid)


def deliver(svc: Services) -> None:
    webhooks.deliver_due(svc.session, svc.settings, svc.clock, metrics=svc.metrics)


def start(svc: Services) -> list[Periodic]:
    """Reconcile, then start the timers; returns them for :func:`stop`."""
    issuance.startup_reconcile(svc)
    jobs = [Periodic("audit-checkpoint", svc.settings.audit_checkpoint_seconds,
                     lambda: checkpoint(svc)),
            Periodic("auth-refusals", refusal_windows.tick_seconds(svc.settings.rate_limits),
                     lambda: refusal_windows.summarise(svc),
                     final=lambda: refusal_windows.flush(svc))]
    if svc.vault is not None:
        jobs.append(Periodic("vault-lease", VAULT_LEASE_POLL, svc.vault.maintain))
    # Even with no webhook configured: deliveries queued for a URL since removed are
    # dropped (recorded, counted), not left in the queue for ever.
    jobs.append(Periodic("webhooks", svc.settings.webhook_poll_seconds, lambda: deliver(svc)))
    return [job.start() for job in jobs]


def stop(jobs: list[Periodic]) -> None:
    for job in jobs:
        job.stop()
