"""`edge-agent status`: what the device holds and what the agent will do next."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console

from agent.attest import current_certificate, read_status
from agent.client import AttestorClient, Unreachable, with_failover
from agent.config import AgentConfig


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
    info: dict[str, Any] = {
        "device_id": config.device_id,
        "attestor_url": config.urls[0],
        "attestor_urls": list(config.urls),
        "certificate": certificate,
        "last_verdict": recorded.get("last_verdict"),
        "reasons": recorded.get("reasons", []),
        "last_attestation_at": recorded.get("at"),
        "next_renewal": recorded.get("next_renewal") or recorded.get("renew_at"),
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
    out.print(f"device:        {info['device_id'] or '[red]not provisioned[/]'}")
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
    out.print(f"next renewal:  {info['next_renewal'] or '-'}")
    if info["last_error"]:
        out.print(f"last error:    [red]{info['last_error']}[/] "
                  f"({info['consecutive_failures']} failures in a row)")
    reach = info["attestor"]
    mark = {True: "[green]reachable[/]", False: "[bold red]unreachable[/]", None: "not checked"}
    out.print(f"attestor:      {info['attestor_url']} {mark[reach['reachable']]}"
              + (f": {reach['detail']}" if reach["reachable"] is False else ""))
