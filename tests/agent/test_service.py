"""`edge-agent run` as systemd runs it: READY and WATCHDOG notifications, a renewal
that runs the hook and signals the reloading process, and a graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.hooks import run_hook, signal_pid_file
from agent.systemd import notify, watchdog_interval
from agent.tpm.device import Tpm
from tests.harness import Device, LiveAttestor, enroll_and_learn

ROOT = Path(__file__).resolve().parents[2]
RELOADER = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
signal.signal(signal.SIGHUP, lambda *_: out.write_text("reloaded"))
Path(sys.argv[2]).write_text("ready")
while True:
    time.sleep(0.05)
"""


def _listener() -> tuple[socket.socket, str]:
    name = f"@edgeproof-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(0.2)
    return sock, name


def _receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if any(wanted in message for message in seen):
            return seen
    raise AssertionError(f"no {wanted!r} within {timeout} s; got {seen}")


def test_notify_and_watchdog_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False  # outside systemd: nothing to do
    sock, name = _listener()
    with sock:
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        assert notify("READY=1")
        assert sock.recv(100) == b"READY=1"
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None


def test_hook_failures_are_reported_not_raised(tmp_path: Path) -> None:
    assert run_hook(["/bin/sh", "-c", "exit 3"], 5, tmp_path, "s1") is not None
    slow = run_hook(["/bin/sleep", "10"], 0.3, tmp_path, "s1")
    assert slow is not None and "killed" in slow
    missing = run_hook(["/nonexistent/hook"], 5, tmp_path, "s1")
    assert missing is not None and "cannot run" in missing
    (tmp_path / "pid").write_text("not a pid")
    assert "no process id" in (signal_pid_file(tmp_path / "pid", "SIGHUP") or "")
    (tmp_path / "pid").write_text("1")
    assert "refusing" in (signal_pid_file(tmp_path / "pid", "SIGHUP") or "")
    (tmp_path / "pid").write_text("999999999")
    assert signal_pid_file(tmp_path / "pid", "SIGHUP") is not None


@pytest.mark.e2e
@pytest.mark.tpm
def test_run_under_systemd_renews_runs_hooks_and_stops_on_sigterm(
        attestor: LiveAttestor, device: Device, tmp_path: Path) -> None:
    config = enroll_and_learn(attestor, device)  # no workload certificate yet
    hook_out, reloaded, ready = tmp_path / "hook.json", tmp_path / "reloaded", tmp_path / "ready"
    reloader = subprocess.Popen([sys.executable, "-c", RELOADER, str(reloaded), str(ready)])  # noqa: S603
    while not ready.exists():
        time.sleep(0.02)
    (tmp_path / "reloader.pid").write_text(f"{reloader.pid}\n")
    hook = [sys.executable, "-c", "import json, os, sys; open(sys.argv[1], 'w').write("
            "json.dumps({k: v for k, v in os.environ.items() if k.startswith('EDGE_AGENT_')}))",
            str(hook_out)]
    toml = config.state_dir / "agent.toml"
    toml.write_text(toml.read_text() + f"hook_command = {json.dumps(hook)}\n"
                    f"reload_pid_file = {json.dumps(str(tmp_path / 'reloader.pid'))}\n")
    sock, name = _listener()
    device.tpm.close()  # swtpm serves one connection at a time: the agent's now
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000",
           "EDGE_AGENT_STATE_DIR": str(config.state_dir)}
    env.pop("WATCHDOG_PID", None)
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run"], env=env, cwd=ROOT,  # noqa: S603
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with sock:
            seen = _receive_until(sock, "READY=1", 30)
            seen += _receive_until(sock, "STATUS=renewed", 30)
            seen += _receive_until(sock, "WATCHDOG=1", 5)
            agent.send_signal(signal.SIGTERM)
            seen += _receive_until(sock, "STOPPING=1", 10)
        assert agent.wait(timeout=20) == 0, agent.stdout.read() if agent.stdout else ""
    finally:
        if agent.poll() is None:
            agent.kill()
        reloader.kill()
        reloader.wait()
        device.tpm = Tpm(device.process.tcti)
    assert seen.index("READY=1") < len(seen) - 1
    hook_env = json.loads(hook_out.read_text())
    assert hook_env["EDGE_AGENT_CERT"] == str(config.state_dir / "cert.pem")
    assert hook_env["EDGE_AGENT_SERIAL"]
    assert reloaded.read_text() == "reloaded"
    summary = json.loads((config.state_dir / "attestation.json").read_text())
    assert summary["verdict"] == "pass" and summary["serial"] == hook_env["EDGE_AGENT_SERIAL"]


def test_unit_file_is_hardened_and_matches_the_daemon() -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "systemd" / "edge-agent.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["DeviceAllow"].startswith("/dev/tpmrm0") and service["DevicePolicy"] == "closed"
    assert service["User"] == "edge-agent" and service["StateDirectory"] == "edge-agent"
    assert service["CapabilityBoundingSet"] == ""
    assert " run " in service["ExecStart"] and "--state-dir /var/lib/edge-agent" in service[
        "ExecStart"]
    sysusers = (ROOT / "deploy" / "systemd" / "edge-agent.sysusers.conf").read_text()
    assert "u edge-agent" in sysusers and "m edge-agent tss" in sysusers
