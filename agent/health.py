"""The agent's health: one verdict from what the device holds and what the agent last
heard, read from local state only (no TPM, no network), so it is cheap and safe to ask
every few seconds. `edge-agent status` exits with it (a Kubernetes exec liveness
probe) and the daemon writes it to the node-exporter textfile after every cycle.

Unhealthy when any check fails: not provisioned; no valid certificate; the attestor
says the device is quarantined, revoked or decommissioned; the last attestation was
refused; ``unhealthy_after_failures`` renewals in a row failed; or the planned
renewal is more than ``RENEWAL_GRACE`` overdue (nobody is renewing: the daemon is
stopped or stuck). An attestor that cannot answer for a while is not, by itself,
unhealthy: the agent keeps its credentials and backs off.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from agent.config import AgentConfig

RENEWAL_GRACE = dt.timedelta(minutes=10)
INACTIVE = frozenset({"quarantined", "revoked", "decommissioned"})
CHECKS = ("provisioned", "certificate", "device_state", "last_verdict", "failures", "renewal")


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS: stable, a metric label
    ok: bool
    detail: str


@dataclass(frozen=True)
class Health:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[str]:
        return [check.detail for check in self.checks if not check.ok]


def parse_time(value: object) -> dt.datetime | None:
    """A recorded ISO time (UTC), or None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def next_renewal(recorded: dict[str, Any]) -> dt.datetime | None:
    """When the agent plans to renew next (the daemon's plan, else the issued set's)."""
    return parse_time(recorded.get("next_renewal")) or parse_time(recorded.get("renew_at"))


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate(cert: x509.Certificate | None, now: dt.datetime) -> Check:
    if cert is None:
        return Check("certificate", False, "no certificate installed")
    not_after = cert.not_valid_after_utc
    if now >= not_after:
        return Check("certificate", False, f"the certificate expired at {_iso(not_after)}")
    if now < cert.not_valid_before_utc:
        return Check("certificate", False, "the certificate is not valid yet (clock?)")
    return Check("certificate", True, f"valid until {_iso(not_after)}")


def assess(config: AgentConfig, recorded: dict[str, Any], cert: x509.Certificate | None,
           now: dt.datetime) -> Health:
    state = recorded.get("device_state")
    verdict = recorded.get("last_verdict")
    reasons = ", ".join(str(r) for r in recorded.get("reasons") or []) or "no reason given"
    failures = int(recorded.get("failures") or 0)
    limit = config.unhealthy_after_failures
    planned = next_renewal(recorded)
    overdue = planned is not None and now > planned + RENEWAL_GRACE
    return Health((
        Check("provisioned", bool(config.device_id),
              "provisioned" if config.device_id else "not provisioned: run `edge-agent "
              "provision`"),
        _certificate(cert, now),
        Check("device_state", state not in INACTIVE,
              f"the attestor reports this device {state}" if state in INACTIVE
              else f"device {state or 'state not reported yet'}"),
        Check("last_verdict", verdict != "fail",
              f"the last attestation was refused ({reasons})" if verdict == "fail"
              else f"last verdict {verdict or 'none yet'}"),
        Check("failures", limit == 0 or failures < limit,
              f"{failures} renewals in a row failed (limit {limit}): "
              f"{recorded.get('last_error') or 'unknown error'}" if limit and failures >= limit
              else f"{failures} consecutive failures"),
        Check("renewal", not overdue,
              f"the renewal planned for {_iso(planned)} is overdue: is "
              "`edge-agent run` running?" if overdue and planned is not None
              else "on schedule"),
    ))
