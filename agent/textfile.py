"""The agent's health for node monitoring: a node-exporter textfile-collector file
(``metrics_textfile``, ``*.prom``), rewritten atomically by `edge-agent run` after
every cycle, so node-exporter never reads half a file.

Written by hand in the text exposition format rather than with prometheus_client:
importing that library costs the resident daemon about 12 MB (docs/benchmarks.md,
agent footprint), for a dozen lines; the tests hold the output to
`promtool check metrics`. For the same reason there is no version label: reading the
package version (importlib.metadata) costs the daemon about 0.8 MB. Times are
absolute (Unix seconds), so alerts on them stay right even when the daemon has
stopped writing; a value the agent does not know yet is left out rather than
written as 0.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from cryptography import x509

from agent.attest import current_certificate, read_status
from agent.config import AgentConfig
from agent.files import atomic_write
from agent.health import CHECKS, INACTIVE, assess, next_renewal, parse_time

log = logging.getLogger("edge_agent.textfile")
VERDICTS = ("pass", "fail", "none")
STATES = ("active", *sorted(INACTIVE), "unknown")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value))


class _Families:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str,
              samples: list[tuple[dict[str, str], float]]) -> None:
        if not samples:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}" if text
                              else f"{name} {_number(value)}")


def _at(value: dt.datetime | None) -> list[tuple[dict[str, str], float]]:
    return [({}, value.timestamp())] if value is not None else []


def render(config: AgentConfig, recorded: dict[str, Any], cert: x509.Certificate | None,
           now: dt.datetime) -> str:
    """The file's content: ``edge_agent_*`` gauges."""
    health = assess(config, recorded, cert, now)
    verdict = str(recorded.get("last_verdict") or "none")
    state = str(recorded.get("device_state") or "unknown")
    out = _Families()
    out.gauge("edge_agent_info", "The device id this agent attests as (value 1)",
              [({"device_id": config.device_id or ""}, 1)])
    out.gauge("edge_agent_healthy", "1 when every health check passes (what `edge-agent "
              "status` exits 0 for), else 0", [({}, 1 if health.healthy else 0)])
    out.gauge("edge_agent_health_check_ok", "Each health check of `edge-agent status`: 1 "
              "passing, 0 failing", [({"check": c.name}, 1 if c.ok else 0)
                                     for c in sorted(health.checks,
                                                     key=lambda c: CHECKS.index(c.name))])
    out.gauge("edge_agent_certificate_expiry_timestamp_seconds", "When the installed "
              "workload certificate expires (Unix time)",
              _at(cert.not_valid_after_utc if cert is not None else None))
    out.gauge("edge_agent_last_renewal_timestamp_seconds", "When the agent last installed a "
              "new certificate (Unix time)", _at(parse_time(recorded.get("last_renewal"))))
    out.gauge("edge_agent_last_attestation_timestamp_seconds", "When the attestor last gave "
              "a verdict on this device (Unix time)", _at(parse_time(recorded.get("at"))))
    out.gauge("edge_agent_next_renewal_timestamp_seconds", "When the agent plans to renew "
              "or retry next (Unix time)", _at(next_renewal(recorded)))
    out.gauge("edge_agent_consecutive_failures", "Renewal attempts that failed in a row",
              [({}, int(recorded.get("failures") or 0))])
    out.gauge("edge_agent_last_verdict", "The last verdict (pass, fail, none yet): 1 for "
              "the current one", [({"verdict": v}, 1 if v == verdict else 0)
                                  for v in VERDICTS])
    out.gauge("edge_agent_device_state", "The device's state as the attestor last reported "
              "it: 1 for the current one", [({"state": s}, 1 if s == state else 0)
                                            for s in STATES])
    out.gauge("edge_agent_textfile_timestamp_seconds", "When the daemon wrote this file "
              "(Unix time): a stale value means it stopped", [({}, now.timestamp())])
    return "\n".join(out.lines) + "\n"


def update(config: AgentConfig, now: dt.datetime, path: Path | None = None) -> None:
    """Rewrite the textfile (if configured) from the recorded state; a failure to write
    is logged, never raised: monitoring must not stop renewals."""
    target = path or config.metrics_textfile
    if target is None:
        return
    text = render(config, read_status(config.state_dir), current_certificate(config.output),
                  now)
    try:
        atomic_write(target, text.encode(), 0o644)  # node-exporter runs as another user
    except OSError as exc:
        log.warning("cannot write the metrics textfile %s: %s", target, exc.strerror or exc)
