"""The agent's node-exporter textfile and its start-up line: `edge-agent run` on swtpm
against a live attestor says once what it runs with, rewrites the textfile after every
cycle (promtool check metrics clean), and the file follows a revocation."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import textfile
from agent.attest import read_status
from agent.config import ConfigError, load_config
from agent.renew import Renewer
from agent.tpm.device import Tpm
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def promtool_clean(path: Path) -> None:
    promtool = require_tool("promtool", "apt-get install prometheus (make setup)")
    check = subprocess.run([promtool, "check", "metrics"], input=path.read_bytes(),  # noqa: S603
                           capture_output=True, timeout=60, check=False)
    said = (check.stdout + check.stderr).decode()
    assert check.returncode == 0 and not said.strip(), said


def _wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.tpm
def test_run_says_one_line_at_start_and_rewrites_the_textfile_after_each_cycle(
        attestor: LiveAttestor, device: Device, tmp_path: Path) -> None:
    config = enroll_and_learn(attestor, device)  # refused once: no certificate yet
    prom = tmp_path / "textfile" / "edge_agent.prom"
    device.tpm.close()  # swtpm serves one connection at a time: the agent's now
    env = {**os.environ, "EDGE_AGENT_STATE_DIR": str(config.state_dir),
           "EDGE_AGENT_METRICS_TEXTFILE": str(prom)}
    env.pop("NOTIFY_SOCKET", None)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run"], env=env,  # noqa: S603
                                 cwd=ROOT, stdout=out, stderr=out)
    try:
        _wait_for(lambda: prom.exists() and "edge_agent_healthy 1" in prom.read_text(),
                  f"a healthy textfile; agent log:\n{log.read_text() if log.exists() else ''}")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        device.tpm = Tpm(device.process.tcti)
    said = log.read_text()
    starts = [line for line in said.splitlines() if "starting:" in line]
    assert len(starts) == 1, said
    assert f"device {config.device_id}" in starts[0]
    assert f"attestor {attestor.url}" in starts[0]
    assert f"TPM {device.process.tcti}" in starts[0]
    assert "no certificate yet, next renewal now" in starts[0]
    assert f"metrics textfile {prom}" in starts[0]

    got = samples(prom)
    assert got[("edge_agent_healthy", ())] == 1
    assert got[("edge_agent_info", (("device_id", str(config.device_id)),))] == 1
    assert got[("edge_agent_last_verdict", (("verdict", "pass"),))] == 1
    assert got[("edge_agent_last_verdict", (("verdict", "fail"),))] == 0
    assert got[("edge_agent_device_state", (("state", "active"),))] == 1
    assert got[("edge_agent_consecutive_failures", ())] == 0
    assert all(got[("edge_agent_health_check_ok", (("check", c),))] == 1
               for c in ("provisioned", "certificate", "device_state", "last_verdict",
                         "failures", "renewal"))
    expiry = got[("edge_agent_certificate_expiry_timestamp_seconds", ())]
    renewal = got[("edge_agent_next_renewal_timestamp_seconds", ())]
    last = got[("edge_agent_last_renewal_timestamp_seconds", ())]
    assert last < renewal < expiry and 3000 < expiry - time.time() <= 3600
    assert abs(got[("edge_agent_textfile_timestamp_seconds", ())] - time.time()) < 120
    assert prom.stat().st_mode & 0o777 == 0o644  # node-exporter reads it as another user
    assert [p.name for p in prom.parent.iterdir()] == ["edge_agent.prom"]  # no temp left
    promtool_clean(prom)

    planned = dt.datetime.fromisoformat(str(read_status(config.state_dir)["next_renewal"]))
    assert abs(planned.timestamp() - renewal) < 0.001  # the plan status.json records


@pytest.mark.e2e
@pytest.mark.tpm
def test_the_textfile_follows_a_revocation(attestor: LiveAttestor, device: Device,
                                           tmp_path: Path) -> None:
    config = enroll_and_learn(attestor, device)
    prom = tmp_path / "edge_agent.prom"
    clock = [now()]
    with attestor.client(config, device.tpm) as client:
        renewer = Renewer(config, device.tpm, client, lambda: clock[0], rng=random.Random(4))
        renewer.step(renewer.backoff())
        textfile.update(config, clock[0], prom)  # what run() does after each step
        assert samples(prom)[("edge_agent_healthy", ())] == 1
        httpx.post(f"{attestor.url}/v1/devices/{config.device_id}/revoke",
                   json={"reason": "stolen"}, headers=attestor.headers("admin")
                   ).raise_for_status()
        renewer.failures = 1  # retry at once instead of waiting for the renewal time
        renewer.step(renewer.backoff())
        textfile.update(config, clock[0], prom)
    got = samples(prom)
    assert got[("edge_agent_healthy", ())] == 0
    assert got[("edge_agent_device_state", (("state", "revoked"),))] == 1
    assert got[("edge_agent_device_state", (("state", "active"),))] == 0
    assert got[("edge_agent_health_check_ok", (("check", "device_state"),))] == 0
    assert got[("edge_agent_health_check_ok", (("check", "certificate"),))] == 1
    assert got[("edge_agent_last_verdict", (("verdict", "fail"),))] == 1
    promtool_clean(prom)


def test_textfile_setting_and_write_failures(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics_textfile.*must end in .prom"):
        load_config(state_dir=tmp_path, metrics_textfile=tmp_path / "agent.txt")
    config = load_config(state_dir=tmp_path, metrics_textfile=tmp_path / "agent.prom")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    textfile.update(config, now(), blocker / "agent.prom")  # logged, not raised
    textfile.update(config, now())
    got = samples(tmp_path / "agent.prom")
    assert got[("edge_agent_healthy", ())] == 0  # not provisioned
    assert got[("edge_agent_health_check_ok", (("check", "provisioned"),))] == 0
    assert ("edge_agent_certificate_expiry_timestamp_seconds", ()) not in got  # unknown
    promtool_clean(tmp_path / "agent.prom")
