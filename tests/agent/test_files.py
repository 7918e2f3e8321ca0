"""Crash-safe credential files."""

from __future__ import annotations

import os
from pathlib import Path

from agent.files import atomic_write, install_set


def test_atomic_write_sets_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    atomic_write(path, b"one", 0o600)
    atomic_write(path, b"two", 0o600)
    assert path.read_bytes() == b"two" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_sets_swap_as_a_whole(tmp_path: Path) -> None:
    install_set(tmp_path, "s1", {"cert.pem": (b"c1", 0o644), "key.pem": (b"k1", 0o600),
                                 "secrets/a": (b"a1", 0o600)})
    assert (tmp_path / "cert.pem").read_bytes() == b"c1"
    install_set(tmp_path, "s2", {"cert.pem": (b"c2", 0o644), "key.pem": (b"k2", 0o600),
                                 "secrets/a": (b"a2", 0o600)})
    assert [(tmp_path / f).read_bytes() for f in ("cert.pem", "key.pem", "secrets/a")] == [
        b"c2", b"k2", b"a2"]
    assert os.readlink(tmp_path / "current") == "credentials/s2"
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


def test_old_sets_are_pruned_but_the_previous_one_kept(tmp_path: Path) -> None:
    for i in range(5):
        install_set(tmp_path, f"s{i}", {"cert.pem": (b"c", 0o644)})
        os.utime(tmp_path / "credentials" / f"s{i}", (i, i))
    names = sorted(p.name for p in (tmp_path / "credentials").iterdir())
    assert "s4" in names and len(names) <= 3


def test_interrupted_staging_never_becomes_current(tmp_path: Path) -> None:
    install_set(tmp_path, "good", {"cert.pem": (b"good", 0o644)})
    staging = tmp_path / "credentials" / ".bad.staging"
    staging.mkdir()
    (staging / "cert.pem").write_bytes(b"half")
    assert (tmp_path / "cert.pem").read_bytes() == b"good"
    install_set(tmp_path, "bad", {"cert.pem": (b"complete", 0o644)})
    assert (tmp_path / "cert.pem").read_bytes() == b"complete"
