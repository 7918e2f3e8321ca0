"""The options every `attestor` command shares, defined once so each has the same name,
environment variable and --help text wherever it appears."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[Path, typer.Option("--data-dir", "-d", envvar="EDGEPROOF_DATA_DIR",
                                       help="attestor data directory")]
Dev = Annotated[bool | None, typer.Option("--dev", help="development mode (built-in CA "
                                          "passphrase allowed)", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
DEFAULT_DIR = Path("attestor-data")
