"""`edge-agent status`: what the device holds, what the agent will do next, and whether
it is healthy (agent/health.py; the command's exit code)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console

from agent.attest import current_certificate, read_status
from agent.client import AttestorClient, Unreachable, with_failover
from agent.config import AgentConfig
from agent.health import assess, next_renewal


def collect(config: AgentConfig, now: dt.datetime,
            client: AttestorClient | None) -> dict[str, Any]:
    recorded = read_status(config.state_dir)
    cert = current_certificate(config.output)
    certificate: dict[str, Any] = {"valid": False, "serial": None, "not_after": None,
                                   "expires_in_seconds": None}
    if cert is not None:
        not_after = cert.not_valid_after_utc
        certificate = {
            "valid": cert.not_valid_before_utc <= now < not_after,
            "serial": format(cert.serial_number, "x"),
            "not_after": not_after.isoformat(),
            "expires_in_seconds": int((not_after - now).total_seconds()),
        }
    health = assess(config, recorded, cert, now)
    planned = next_renewal(recorded)
    info: dict[str, Any] = {
        "healthy": health.healthy,
        "problems": health.problems,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in health.checks],
        "device_id": config.device_id,
        "device_state": recorded.get("device_state"),
        "attestor_url": config.urls[0],
        "attestor_urls": list(config.urls),
        "certificate": certificate,
        "last_verdict": recorded.get("last_verdict"),
        "reasons": recorded.get("reasons", []),
        "last_attestation_at": recorded.get("at"),
        "last_renewal": recorded.get("last_renewal"),
        "next_renewal": planned.isoformat() if planned is not None else None,
        "last_error": recorded.get("last_error"),
        "consecutive_failures": recorded.get("failures", 0),
        "attestor": {"reachable": None, "detail": "not contacted"},
    }
    if client is not None:
        with client:
            try:
                with_failover(client, client.health)
                info["attestor"] = {"reachable": True,
                                    "detail": f"{client.base_url} answers /healthz"}
            except Unreachable as exc:
                info["attestor"] = {"reachable": False, "detail": str(exc)}
    return info


def render(info: dict[str, Any], out: Console) -> None:
    cert = info["certificate"]
    out.print("health:        " + ("[green]healthy[/]" if info["healthy"] else
                                   "[bold red]UNHEALTHY[/]: " + "; ".join(info["problems"])),
              highlight=False)
    state = f" ({info['device_state']})" if info["device_state"] else ""
    out.print(f"device:        {info['device_id'] or '[red]not provisioned[/]'}{state}")
    if cert["serial"]:
        state = "[green]valid[/]" if cert["valid"] else "[bold red]EXPIRED or not yet valid[/]"
        left = dt.timedelta(seconds=max(0, cert["expires_in_seconds"]))
        out.print(f"certificate:   {cert['serial']} {state}, until {cert['not_after']} "
                  f"({left} left)")
    else:
        out.print("certificate:   [yellow]none installed[/]")
    verdict = info["last_verdict"] or "none yet"
    reasons = f" ({', '.join(info['reasons'])})" if info["reasons"] else ""
    out.print(f"last verdict:  {verdict}{reasons} at {info['last_attestation_at'] or '-'}")
    out.print(f"last renewal:  {info['last_renewal'] or '-'}")
    out.print(f"next renewal:  {info['next_renewal'] or '-'}")
    if info["last_error"]:
        out.print(f"last error:    [red]{info['last_error']}[/] "
                  f"({info['consecutive_failures']} failures in a row)")
    reach = info["attestor"]
    mark = {True: "[green]reachable[/]", False: "[bold red]unreachable[/]", None: "not checked"}
    out.print(f"attestor:      {info['attestor_url']} {mark[reach['reachable']]}"
              + (f": {reach['detail']}" if reach["reachable"] is False else ""))
