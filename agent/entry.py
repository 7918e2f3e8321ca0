"""The `edge-agent` console script: `run` goes straight to the daemon (no CLI
framework in the resident process); everything else, `--help` included, to typer."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["run"] and not {"--help", "-h"} & set(args):
        from agent.daemon import main as daemon

        sys.exit(daemon(args[1:]))
    from agent.cli import main as cli

    cli()
