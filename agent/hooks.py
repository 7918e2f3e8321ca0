"""After a rotation: run the configured hook command and/or signal a process.

Neither can undo a rotation: the new set is already live. A hook that fails,
hangs past its timeout (it is killed) or a pid file that names no process is
logged with what to fix, and the agent carries on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path

from agent.config import AgentConfig

log = logging.getLogger("edge_agent.hooks")


def after_rotation(config: AgentConfig, serial: str) -> list[str]:
    """Run the hook and send the reload signal; returns the problems (empty if none)."""
    problems = []
    if config.hook_command:
        problem = run_hook(config.hook_command, config.hook_timeout_seconds, config.output,
                           serial)
        if problem:
            problems.append(problem)
    if config.reload_pid_file is not None:
        problem = signal_pid_file(config.reload_pid_file, config.reload_signal)
        if problem:
            problems.append(problem)
    for problem in problems:
        log.warning("after rotation to %s: %s", serial, problem)
    return problems


def run_hook(argv: list[str], timeout: float, output: Path, serial: str) -> str | None:
    env = {**os.environ, "EDGE_AGENT_SERIAL": serial,
           "EDGE_AGENT_CERT": str(output / "cert.pem"),
           "EDGE_AGENT_CHAIN": str(output / "chain.pem"),
           "EDGE_AGENT_KEY": str(output / "key.pem")}
    try:
        done = subprocess.run(argv, env=env, timeout=timeout, capture_output=True,  # noqa: S603
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"hook {argv[0]} did not finish within {timeout:g} s and was killed"
    except OSError as exc:
        return f"hook {argv[0]} cannot run: {exc.strerror or exc}"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-200:]
        return f"hook {argv[0]} exited {done.returncode}: {tail}"
    return None


def signal_pid_file(pid_file: Path, name: str) -> str | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        return f"pid file {pid_file} holds no process id: {exc}"
    if pid <= 1:
        return f"pid file {pid_file} names pid {pid}; refusing to signal it"
    try:
        os.kill(pid, signal.Signals[name])
    except ProcessLookupError:
        return f"no process {pid} (from {pid_file})"
    except PermissionError:
        return f"not allowed to signal process {pid} (from {pid_file})"
    return None
