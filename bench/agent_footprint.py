"""The agent's memory and CPU through many renewals, on swtpm against a local attestor.

The parent sets up what `make demo` does (attestor on SQLite serving over HTTP, a
swtpm device enrolled by `edge-agent provision`, a learned policy), then starts
the agent in its own process: the modules `edge-agent run` loads, one TPM
connection and one HTTP client, renewing back to back (`attest_once`, the work of
each renewal: challenge, quote, workload key, certify, CSR, attestation, checks,
crash-safe install, then the node-exporter textfile rewritten). It reports the
agent process's resident memory once warm and its CPU time (user + system) per
renewal; swtpm's CPU is reported apart (on a real device that work is the TPM chip's).

Usage: python -m bench.agent_footprint [--renewals 200] [--write docs/benchmarks.md]
Last line: rss_mb=<steady-state RSS> cpu_ms_per_renewal=<CPU per cycle>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
WARMUP = 10


def _rss_kib(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def child(state_dir: Path, renewals: int) -> None:
    """The agent process: what `edge-agent run` imports and holds, renewing flat out."""
    import datetime as dt

    import agent.daemon  # noqa: F401 - what the `edge-agent run` process has loaded
    import agent.entry  # noqa: F401
    from agent import hooks, systemd, textfile  # noqa: F401
    from agent.attest import attest_once
    from agent.client import AttestorClient
    from agent.config import load_config
    from agent.renew import Renewer  # noqa: F401
    from agent.tpm.device import Tpm

    config = load_config(state_dir=state_dir)
    cpu: list[float] = []
    rss: list[int] = []
    stages = {"imported": _rss_kib()[0]}
    with Tpm(config.tcti) as tpm, AttestorClient(config.attestor_url) as client:
        stages["tpm_open"] = _rss_kib()[0]
        for index in range(WARMUP + renewals):
            if index == 1:
                stages["first_renewal"] = _rss_kib()[0]
            start = time.process_time()
            attest_once(config, tpm, client, dt.datetime.now(dt.UTC))
            # what `edge-agent run` does after each cycle when metrics_textfile is set
            textfile.update(config, dt.datetime.now(dt.UTC), state_dir / "edge_agent.prom")
            if index >= WARMUP:
                cpu.append(time.process_time() - start)
                rss.append(_rss_kib()[0])
    print(json.dumps({"cpu": cpu, "rss_kib": rss, "hwm_kib": _rss_kib()[1], "stages": stages}))


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,  # noqa: S603
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode not in (0, 3):
        raise SystemExit(f"`{' '.join(args)}` failed: {done.stdout}{done.stderr}")
    return done.stdout


def setup_and_measure(work: Path, renewals: int) -> dict[str, float]:
    from agent.sim.boot import simulate_boot
    from agent.sim.ima import simulate_ima
    from agent.sim.swtpm import Manufacturer, SwtpmProcess, free_port_pair
    from agent.tpm.device import Tpm
    from bench.serve import wait_healthy

    data, state = work / "attestor", work / "state"
    log, ima = work / "binary_bios_measurements", work / "binary_runtime_measurements"
    _run("attestor", "init", "--dev", "-d", str(data))
    maker = Manufacturer(work / "maker")
    maker.ensure_config()
    maker.manufacture(work / "tpm")
    _run("attestor", "trust", "add", "-d", str(data), str(maker.root_certificate),
         str(maker.intermediate_certificate))
    key = _run("attestor", "apikey", "create", "--name", "bench", "-d", str(data),
               "--dev").strip().splitlines()[-1]
    port = free_port_pair()
    unlimited = {f"EDGEPROOF_RATE_LIMITS__{k}_PER_MINUTE": "1000000"
                 for k in ("ENROLLMENT", "CHALLENGE", "ATTESTATION", "CLIENT")}
    server = subprocess.Popen(  # noqa: S603
        [str(BIN / "attestor"), "serve", "--dev", "-d", str(data), "--port", str(port)],
        env={**os.environ, **unlimited}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    swtpm = SwtpmProcess(work / "tpm").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        with Tpm(swtpm.tcti) as tpm:
            simulate_boot(tpm, log)
            simulate_ima(tpm, ima)
        out = _run("edge-agent", "provision", "--attestor", url, "--tcti", swtpm.tcti,
                   "--state-dir", str(state), "--serial", "BENCH-1", "--event-log", str(log),
                   env={"EDGE_AGENT_API_KEY": key})
        device_id = next(w for w in out.split() if w.startswith("d") and len(w) == 32)
        _run("edge-agent", "attest", "--once", "--state-dir", str(state))  # no reference yet
        _run("attestor", "policy", "learn", "--device", device_id, "-d", str(data), "--dev")
        swtpm_cpu = _cpu_seconds(swtpm.process.pid)  # type: ignore[union-attr]
        server_cpu = _cpu_seconds(server.pid)
        started = time.monotonic()
        agent = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "bench.agent_footprint", "--child", str(state),
             "--renewals", str(renewals)],
            capture_output=True, text=True, check=True, env={**os.environ,
                                                            "EDGE_AGENT_IMA_LOG": str(ima)})
        wall = time.monotonic() - started
        total = renewals + WARMUP
        swtpm_ms = (_cpu_seconds(swtpm.process.pid) - swtpm_cpu) / total * 1000  # type: ignore[union-attr]
        server_ms = (_cpu_seconds(server.pid) - server_cpu) / total * 1000
    finally:
        swtpm.stop()
        server.terminate()
        server.wait(timeout=10)
    measured = json.loads(agent.stdout.strip().splitlines()[-1])
    cpu_ms = [c * 1000 for c in measured["cpu"]]
    rss = measured["rss_kib"]
    return {
        "renewals": renewals,
        "rss_mb": statistics.median(rss[len(rss) // 2:]) / 1024,
        "rss_growth_kb": rss[-1] - rss[0],
        "peak_mb": measured["hwm_kib"] / 1024,
        "cpu_ms_median": statistics.median(cpu_ms),
        "cpu_ms_p95": sorted(cpu_ms)[int(len(cpu_ms) * 0.95) - 1],
        "cpu_ms_mean": statistics.fmean(cpu_ms),
        "swtpm_ms": swtpm_ms,
        "attestor_ms": server_ms,
        "wall_ms": wall * 1000 / total,
        "stages": {k: v / 1024 for k, v in measured["stages"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renewals", type=int, default=200)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help="update this benchmarks page")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.renewals)
        return
    with tempfile.TemporaryDirectory(prefix="edgeproof-footprint-") as tmp:
        r = setup_and_measure(Path(tmp), args.renewals)
    lines = [
        f"`python -m bench.agent_footprint --renewals {r['renewals']}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; swtpm and the attestor on the same machine.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| agent RSS, warm (median of the second half) | {r['rss_mb']:.1f} MB | ≤ 45 MB |",
        f"| agent RSS growth over the measured renewals | {r['rss_growth_kb']} KiB | flat |",
        f"| agent peak RSS (VmHWM) | {r['peak_mb']:.1f} MB | |",
        f"| agent CPU per renewal, median / p95 / mean | {r['cpu_ms_median']:.1f} / "
        f"{r['cpu_ms_p95']:.1f} / {r['cpu_ms_mean']:.1f} ms | ≤ 50 ms |",
        f"| swtpm CPU per renewal (the TPM chip's work on a device) | {r['swtpm_ms']:.1f} ms | |",
        f"| attestor CPU per renewal | {r['attestor_ms']:.1f} ms | |",
        f"| wall time per renewal | {r['wall_ms']:.1f} ms | |",
        "",
        "Agent RSS by stage: " + ", ".join(f"{k} {v:.1f} MB" for k, v in r["stages"].items())
        + f", after {r['renewals']} more renewals {r['rss_mb']:.1f} MB.",
    ]
    print("\n".join(lines))
    if args.write:
        from bench.report import write_section

        write_section(args.write, "agent-footprint", "Agent footprint (bench/agent_footprint.py)",
                      lines)
    print(f"rss_mb={r['rss_mb']:.1f} cpu_ms_per_renewal={r['cpu_ms_median']:.1f}")


if __name__ == "__main__":
    main()
