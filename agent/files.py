"""Crash-safe files: temp file in the same directory, fsync, rename, directory fsync.

Credentials are written as a set into a new directory, then one atomic symlink
swap (``current``) makes the whole set live: a crash at any moment leaves
either the complete old set or the complete new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CURRENT = "current"
SETS = "credentials"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``; readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_symlink(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def install_set(state_dir: Path, name: str, files: dict[str, tuple[bytes, int]],
                keep: int = 2) -> Path:
    """Write ``files`` (relative path -> (data, mode)) as set ``name`` and make it current.

    Stable paths ``state_dir/<file>`` are symlinks through ``current``, so a
    reader that opens ``cert.pem`` and then ``key.pem`` after the swap gets a
    matching pair.
    """
    sets = state_dir / SETS
    target = sets / name
    staging = sets / f".{name}.staging"
    _clear_leftovers(state_dir, sets)
    for rel, (data, mode) in files.items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, data, mode)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    fsync_dir(sets)
    atomic_symlink(state_dir / CURRENT, f"{SETS}/{name}")
    for top in {rel.split("/", 1)[0] for rel in files}:
        link = state_dir / top
        wanted = f"{CURRENT}/{top}"
        if not (link.is_symlink() and os.readlink(link) == wanted):
            atomic_symlink(link, wanted)
    _prune(sets, keep_current=name, keep=keep)
    return target


def _clear_leftovers(state_dir: Path, sets: Path) -> None:
    """Remove what an interrupted install left behind (one agent per state directory)."""
    for tmp in state_dir.glob(".*.tmp"):
        if tmp.is_symlink() or tmp.is_file():
            tmp.unlink(missing_ok=True)
    if sets.is_dir():
        for staging in sets.glob(".*.staging"):
            shutil.rmtree(staging, ignore_errors=True)


def _prune(sets: Path, keep_current: str, keep: int) -> None:
    entries = sorted(
        (p for p in sets.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )
    kept = 0
    for entry in entries:
        if entry.name == keep_current or kept < keep:
            kept += 1
            continue
        shutil.rmtree(entry, ignore_errors=True)
