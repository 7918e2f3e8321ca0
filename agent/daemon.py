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
from pathlib import Path

from agent.config import DEFAULT_STATE_DIR, ConfigError, load_config

log = logging.getLogger("edge_agent")


def run_daemon(state_dir: Path, tcti: str | None, event_log: Path | None) -> int:
    """Renew until SIGTERM or SIGINT; the exit status (0 after a clean stop)."""
    from agent import systemd
    from agent.client import AttestorClient
    from agent.hooks import after_rotation
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
    interval = systemd.watchdog_interval()
    ca_bundle = str(config.ca_bundle) if config.ca_bundle else None
    for url in config.urls:
        if url.startswith("http://"):
            log.warning("attestor %s is plain HTTP: use it only for development or behind "
                        "a network you trust (docs/agent.md, TLS)", url)
    with AttestorClient(config.urls, ca_bundle) as client:
        renewer = Renewer(
            config, tpm, client, lambda: dt.datetime.now(dt.UTC),
            on_renewed=lambda serial: (after_rotation(config, serial),
                                       systemd.notify(f"STATUS=renewed {serial}")),
            reconnect=lambda: Tpm(config.tcti),
            heartbeat=(lambda: systemd.notify("WATCHDOG=1")) if interval else None,
            slice_seconds=min(interval or 30.0, 30.0),
        )
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
