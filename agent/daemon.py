"""`edge-agent run`: the resident daemon, started without the CLI framework.

The console script enters through :func:`agent.entry.main`, which sends `run`
here before typer and rich are imported: the daemon stays resident for years, the
other commands run for a second (docs/benchmarks.md, agent footprint).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import DEFAULT_STATE_DIR, AgentConfig, ConfigError, load_config

if TYPE_CHECKING:
    from agent.renew import Renewer

log = logging.getLogger("edge_agent")


def run_daemon(state_dir: Path, tcti: str | None, event_log: Path | None) -> int:
    """Renew until SIGTERM or SIGINT; the exit status (0 after a clean stop)."""
    from agent import systemd
    from agent.attest import read_status
    from agent.client import AttestorClient
    from agent.hooks import after_rotation
    from agent.keyswap import KeySwapError, recover
    from agent.renew import Renewer
    from agent.tpm.device import Tpm, TpmError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(state_dir=state_dir, tcti=tcti, event_log=event_log)
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    if not config.device_id:
        log.error("this device is not provisioned: run `edge-agent provision`")
        return 1
    try:
        tpm = Tpm(config.tcti)
    except TpmError as exc:
        log.error("%s", exc)
        return 1
    try:
        recovered = recover(config, tpm)  # an interrupted `provision`: finish or undo it
    except (KeySwapError, TpmError, OSError) as exc:
        log.error("%s", exc)
        tpm.close()
        return 1
    if recovered:
        log.warning("%s", recovered)
    interval = systemd.watchdog_interval()
    ca_bundle = str(config.ca_bundle) if config.ca_bundle else None
    for url in config.urls:
        if url.startswith("http://"):
            log.warning("attestor %s is plain HTTP: use it only for development or behind "
                        "a network you trust (docs/agent.md, TLS)", url)

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    with AttestorClient(config.urls, ca_bundle) as client:
        renewer = Renewer(
            config, tpm, client, now,
            on_renewed=lambda serial: (after_rotation(config, serial),
                                       systemd.notify(f"STATUS=renewed {serial}")),
            reconnect=lambda: Tpm(config.tcti),
            heartbeat=(lambda: systemd.notify("WATCHDOG=1")) if interval else None,
            slice_seconds=min(interval or 30.0, 30.0),
            after_step=_textfile_writer(config, now),
            # failures recorded before a restart still count: the first step retries
            failures=int(read_status(config.state_dir).get("failures") or 0),
        )
        log.info("%s", starting_line(config, renewer, now()))
        signal.signal(signal.SIGTERM, lambda *_: renewer.stop.set())
        signal.signal(signal.SIGINT, lambda *_: renewer.stop.set())
        systemd.notify("READY=1")
        try:
            renewer.run()
        finally:
            systemd.notify("STOPPING=1")
            renewer.tpm.close()
    log.info("stopped")
    return 0


def _textfile_writer(config: AgentConfig,
                     now: Callable[[], dt.datetime]) -> Callable[[], None] | None:
    """Rewrites the node-exporter textfile after each cycle, when one is configured (the
    module is loaded only then: the daemon's memory stays as small as it was)."""
    if config.metrics_textfile is None:
        return None
    from agent import textfile

    return lambda: textfile.update(config, now())


def starting_line(config: AgentConfig, renewer: Renewer, now: dt.datetime) -> str:
    """What the daemon says once when it starts: version, device, attestor, TPM,
    certificate and next renewal (the operator's first look at a new device's log)."""
    from agent.attest import current_certificate

    cert = current_certificate(config.output)
    due = renewer.planned(cert)
    if cert is None:
        held = "no certificate yet"
    else:
        held = (f"certificate {cert.serial_number:x} "
                f"{'valid' if now < cert.not_valid_after_utc else 'EXPIRED'} until "
                f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    when = f"{due:%Y-%m-%dT%H:%M:%SZ}" if due is not None and due > now else "now"
    textfile_note = f", metrics textfile {config.metrics_textfile}" if config.metrics_textfile \
        else ""
    return (f"edge-agent starting: device {config.device_id}, "
            f"attestor {', '.join(config.urls)}, TPM {config.tcti}, {held}, "
            f"next renewal {when}{textfile_note}")


def main(argv: list[str]) -> int:
    """`edge-agent run [--state-dir D] [--tcti T] [--event-log F]` (same options as the
    typer command, which shows the help)."""
    parser = argparse.ArgumentParser(prog="edge-agent run", add_help=False)
    parser.add_argument("--state-dir", "-s", type=Path,
                        default=Path(os.environ.get("EDGE_AGENT_STATE_DIR") or DEFAULT_STATE_DIR))
    parser.add_argument("--tcti")
    parser.add_argument("--event-log", type=Path)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"edge-agent run: unknown options {' '.join(unknown)}; see "
              "`edge-agent run --help`", file=sys.stderr)
        return 2
    return run_daemon(args.state_dir, args.tcti, args.event_log)
