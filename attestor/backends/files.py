"""Private files on the attestor host: created 0600, written atomically."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = True) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte (temp file + rename)."""
    if exclusive and path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
