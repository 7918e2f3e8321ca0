"""Build the images with scripts/images.sh (as `make images` does) and run them with podman,
locked down the way production runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tools import IN_CI, require_tool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "images.sh"
USER = "10001:10001"
# A cold build here (debootstrap base, wheelhouse, both images) takes about 10 minutes on
# 2 busy cores; a warm one well under 2.
BUILD_TIMEOUT_SECONDS = 1500
# Production's lockdown: nothing of the image is writable, no capabilities, no setuid gains.
LOCKED_DOWN = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--user", USER, "--network", "host", "--tmpfs", "/tmp:rw,mode=1777,size=64m")


@dataclass(frozen=True)
class Built:
    """The images one build produced (by ID: a concurrent build may move the tags)."""

    attestor: str
    agent: str
    env: dict[str, str]  # what podman needs to use scripts/images.sh's store
    seconds: float
    log: str


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def require_image_tools() -> None:
    how = "make setup (scripts/sysdeps.sh installs buildah podman runc debootstrap)"
    for tool in ("buildah", "podman", "runc", "debootstrap"):
        require_tool(tool, how)
    if os.geteuid() != 0:
        message = "building images needs root (buildah's own store under /var/cache)"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)


def build(out: Path) -> Built:
    """Both images, through the same script as `make images`; the build log's tail on
    failure."""
    started = time.monotonic()
    env = {**os.environ, "EDGEPROOF_IMAGE_BUILD_TIMEOUT": str(BUILD_TIMEOUT_SECONDS - 60)}
    proc = subprocess.Popen([str(SCRIPT), "--out", str(out), "attestor", "agent"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=BUILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"scripts/images.sh took over {BUILD_TIMEOUT_SECONDS} s:\n{tail(output)}")
    if proc.returncode != 0:
        pytest.fail(f"scripts/images.sh failed (exit {proc.returncode}):\n{tail(output)}")
    pairs = (line.split("=", 1) for line in (out / "podman.env").read_text().splitlines())
    return Built(attestor=(out / "attestor.iid").read_text().strip(),
                 agent=(out / "agent.iid").read_text().strip(),
                 env={**os.environ, **dict(pairs)}, seconds=time.monotonic() - started,
                 log=output)


class Podman:
    """podman against the images' store, each call with a timeout and its output on failure."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} failed (exit {proc.returncode}):\n"
                        f"{tail(proc.stdout)}\n{tail(proc.stderr)}")
        return proc

    def run(self, image: str, *command: str, options: tuple[str, ...] = (),
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """One command in a fresh, locked-down container of ``image``."""
        # --no-healthcheck: podman would ask systemd (absent here) for a health timer.
        return self("run", "--rm", "--no-healthcheck", *LOCKED_DOWN, *options, image, *command,
                    check=check, timeout=timeout)


def owned_by_image_user(path: Path, mode: int = 0o700) -> Path:
    """A host directory the image's user owns, to mount as one of its volumes."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = (int(part) for part in USER.split(":"))
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def process_status(pid: int) -> dict[str, str]:
    """/proc/PID/status of a container's main process, as the host sees it."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields
