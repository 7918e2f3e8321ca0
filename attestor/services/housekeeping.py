"""Scheduled housekeeping: every table that would otherwise grow with each request is
purged here, on a timer of every replica (attestor.services.background); which table is
bounded how is in docs/operations.md ("Retention").

- spent challenge nonces, enrollment and onboarding challenges
  ``retention.expired_grace_seconds`` after they expired (spent challenge nonces at
  least 10 minutes after: see SPENT_NONCE_MARGIN);
- signed-request nonces once past their replay window;
- attestation records older than ``retention.attestations_days``, keeping each device's
  latest ``retention.attestations_keep``, its latest quote-verified one and any a live
  certificate was issued on (the audit entries carry their own copy of what mattered:
  verdict, reasons, certificate serial; they never point at an attestation row);
- workload certificates and webhook deliveries as old as that.

Safe with several replicas at once (see attestor.db.housekeeping_queries).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from attestor.db import housekeeping_queries as q
from attestor.db import ownership_queries

if TYPE_CHECKING:
    from attestor.services.context import Services

log = logging.getLogger("attestor.housekeeping")
WEBHOOK_MIN_AGE = dt.timedelta(days=2)  # a delivery is retried for a day
SPENT_NONCE_MARGIN = dt.timedelta(minutes=10)


def purge(svc: Services) -> dict[str, int]:
    """One pass; rows deleted per table (counted in ``edgeproof_purged_rows_total``)."""
    now = svc.clock()
    r = svc.settings.retention
    expired = now - dt.timedelta(seconds=r.expired_grace_seconds)
    aged = now - dt.timedelta(days=r.attestations_days)
    counts: dict[str, int] = {}
    with svc.session() as session:
        # A spent challenge nonce is kept past its expiry by at least SPENT_NONCE_MARGIN:
        # once its row is gone only the nonce's own expiry refuses a replay, so a replica
        # whose clock lags by more than that could otherwise accept one.
        counts["nonces"] = q.purge_nonces(session, min(expired, now - SPENT_NONCE_MARGIN))
        counts["request_nonces"] = q.purge_request_nonces(session, now)
        counts["enrollments"] = q.purge_enrollments(session, expired)
        counts["onboarding_challenges"] = ownership_queries.purge_challenges(session, expired)
        counts["attestations"] = q.purge_attestations(session, aged, r.attestations_keep, now)
        counts["certificates"] = q.purge_workload_certificates(session, aged)
        counts["webhook_deliveries"] = q.purge_webhook_deliveries(
            session, min(aged, now - WEBHOOK_MIN_AGE))
    for table, count in counts.items():
        if count:
            svc.metrics.purged_rows.labels(table).inc(count)
    if any(counts.values()):
        log.info("housekeeping purged %s", {t: n for t, n in counts.items() if n})
    return counts
