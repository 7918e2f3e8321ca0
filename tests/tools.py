"""External tools the deploy tests need: under CI=true a missing tool fails the test, elsewhere
it skips with the command that installs it (``make setup`` installs them all)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str, how: str, path: str | Path | None = None) -> str:
    """The path of tool ``name`` (``path`` if given, else from PATH); fail under CI, skip
    elsewhere, when it is missing. ``how`` says what installs it."""
    found = str(path) if path is not None and Path(path).is_file() else shutil.which(name)
    if found:
        return found
    message = f"{name} not found; install it with: {how}"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)
