"""Full attestation cycles per second through a running attestor, and where a cycle's
time goes.

A cycle is what a renewing device costs: a device-signed challenge, then a
device-signed attestation (quote, event log replay, policy, workload-key certify,
CSR, certificate, attestation-result token, audit entry, database writes). The
devices come from the fleet simulator (agent/sim/fleet.py): genuine TPM
structures signed by software keys, enrolled through pre-registration and
credential activation, through the attestor's normal API.

For each backend (SQLite, and PostgreSQL when reachable) and each number of
attestor processes (1, 2 on one database, the load spread over them like a load
balancer would), the load generator (threads in this process, on the same
machine; its CPU is reported) runs closed-loop at several concurrency levels.
Then, with one process at 4 in flight, the server is restarted under yappi (CPU
clock; bench/profiled_serve.py) and bench/cpu_split.py files each function's own CPU
under one category (crypto = cryptography/OpenSSL and hashlib only; the ORM, the
driver, thread hand-offs, the HTTP framework, pydantic, event log + IMA, other
identity/, own glue, logging, JSON): a split of the attestor's CPU, not of wall time,
scaled to its measured CPU per cycle. Attestor CPU per cycle is the server processes'
utime + stime (/proc/PID/stat) over a level / cycles completed; the PostgreSQL server's
CPU (every postgres process, bench/fleet_load.py) and the load generator's are reported
beside it, and their sum is what a cycle costs the machine. ``--profiler py-spy``
samples the running server instead (see bench/cpu_split.py for why it is not the
default; it needs ptrace rights on the server: root, or kernel.yama.ptrace_scope = 0);
the split is skipped with a note when its profiler fails. ``--quick`` is one process,
40 devices, two 4 s levels and a 5 s profile: under a minute a backend.

Usage: python -m bench.attestor_throughput [--quick] [--devices N] [--seconds S]
       [--profile-seconds S] [--profiler yappi|py-spy] [--stacks FILE]
       [--backends sqlite,postgresql]
       [--write docs/benchmarks.md] [--plot PNG]
Last line: cycles_per_s=<peak> p99_ms=<p99 at 80 % of it> cpu_ms_per_cycle=<attestor
CPU per cycle at the peak> backend=<db>; PostgreSQL's figures when it ran, else the
best backend's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.sim.fleet import SimDevice
from agent.sim.swtpm import free_port_pair
from bench import cpu_split
from bench.fleet_load import (
    Attestor,
    Level,
    _fresh_pg_database,
    enroll_fleet,
    run_level,
    start_attestor,
)
from bench.serve import wait_healthy

if TYPE_CHECKING:
    from attestor.services.context import Services

PROFILED = 4  # in flight while py-spy samples (as in the profile of issue 15)
PROFILER_NOTE = {
    "yappi": "deterministic, per-thread CPU clock, builtins included",
    "py-spy": "--native --gil samples of the server; under load it also counts a "
              "preempted thread holding the GIL",
}
SPY_RATE = 100  # py-spy samples per second


def in_process_services(data: Path, env: dict[str, str]) -> Services:
    """The attestor's services for ``data``, built in this process (``env`` applied)."""
    from attestor.services.context import build_services
    from attestor.settings import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return build_services(load_settings(data, dev=True))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _row(backend: str, processes: int, label: str, level: Level) -> str:
    rate = max(level.rate, 1e-9)
    database = level.database_cpu or 0.0
    return (f"| {backend} | {processes} | {label} | {level.rate:.0f} | {level.pct(0.5):.0f} | "
            f"{level.pct(0.99):.0f} | {level.errors} | {level.attestor_cpu:.2f} | "
            f"{1000 * level.attestor_cpu / rate:.1f} | {level.generator_cpu:.2f} | "
            f"{'–' if level.database_cpu is None else f'{database:.2f}'} | "
            f"{1000 * (level.attestor_cpu + database + level.generator_cpu) / rate:.1f} |")


def service_cycle(svc: Services, device: SimDevice) -> float:
    """One challenge and attestation through the functions the routes call; returns the
    CPU seconds the simulated device spent making its evidence (not the attestor's)."""
    from attestor.services import attestation

    challenge = attestation.challenge(svc, str(device.device_id))
    started = time.process_time()
    request = device.evidence(challenge)
    device_cpu = time.process_time() - started
    attestation.attest(svc, str(device.device_id), request)
    return device_cpu


def spy_level(attestor: Attestor, devices: list[SimDevice], seconds: float,
              out: Path) -> tuple[Counter[str], str]:
    """py-spy (``--profiler py-spy``): sample the running server for ``seconds`` at
    PROFILED in flight; samples per category, and a check line."""
    samples: Counter[str] = Counter()
    failure: list[BaseException] = []

    def spy() -> None:
        try:
            samples.update(cpu_split.record(attestor.servers[0].pid, seconds, out,
                                            rate=SPY_RATE))
        except (RuntimeError, OSError) as exc:
            failure.append(exc)

    sampler = threading.Thread(target=spy)
    sampler.start()
    level = run_level(attestor, devices, PROFILED, seconds + 1.0)
    sampler.join()
    if failure:
        raise RuntimeError(str(failure[0]))
    running = sum(n for k, n in samples.items() if k != cpu_split.IDLE)
    return samples, (f"Check: {running} running samples at {SPY_RATE}/s over {seconds:g} s "
                     f"are {running / SPY_RATE / seconds:.2f} cores; the kernel counted "
                     f"{level.attestor_cpu:.2f} cores for the server meanwhile.")


def yappi_level(attestor: Attestor, devices: list[SimDevice], seconds: float,
                out: Path) -> tuple[Counter[str], str]:
    """yappi (the default): restart the server under bench/profiled_serve.py on the same
    data and database, warm it up, and profile ``seconds`` at PROFILED in flight; CPU
    seconds per category, and a note of the profiler's own cost."""
    if importlib.util.find_spec("yappi") is None:
        raise RuntimeError("yappi is not installed (pip install -e '.[bench]')")
    attestor.stop()
    port = free_port_pair()
    log = (attestor.data.parent / "attestor-profiled.log").open("wb")
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.profiled_serve", str(out), "serve", "--dev", "-d",
         str(attestor.data), "--port", str(port)],
        env={**os.environ, **attestor.env}, stdout=log, stderr=log)
    attestor.servers, attestor.urls = [server], [f"http://127.0.0.1:{port}"]
    # imports alone take 10 s and more under yappi on a busy machine
    wait_healthy(attestor.urls[0], timeout=120.0)
    run_level(attestor, devices, PROFILED, 2.0)  # warm up: imports, caches, pools
    server.send_signal(signal.SIGUSR1)
    level = run_level(attestor, devices, PROFILED, seconds)
    out.unlink(missing_ok=True)
    server.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the dump is one write
    rows = json.loads(out.read_text())
    per_cycle = 1000 * level.attestor_cpu / level.rate if level.cycles else 0.0
    return cpu_split.split_yappi(rows), (
        f"Under yappi the server spent {per_cycle:.1f} ms of CPU per cycle (the "
        "profiler's own cost included); only the shares are used.")


def plot(series: dict[str, list[tuple[int, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in series.items():
        concurrency = [c for c, _, _ in points]
        left.plot(concurrency, [r for _, r, _ in points], marker="o", label=name)
        right.plot(concurrency, [p for _, _, p in points], marker="o", label=name)
    left.set(xlabel="concurrent devices", ylabel="full cycles / s", title="Throughput")
    right.set(xlabel="concurrent devices", ylabel="p99 latency (ms)", title="p99 latency")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


@dataclass
class Outcome:
    """One backend and process count: its peak, the p99 at 80 % of it, CPU per cycle."""

    peak: float = 0.0
    p99_ms: float = 0.0
    cpu_ms: float = 0.0


def measure(backend: str, processes: int, args: argparse.Namespace, levels: tuple[int, ...],
            lines: list[str], series: dict[str, list[tuple[int, float, float]]],
            split: list[str] | None) -> Outcome | None:
    """Run the levels on a fresh attestor; rows go to ``lines``, and, for one process
    when ``split`` is a list, the CPU split table to it. None if the backend is
    unreachable."""
    with tempfile.TemporaryDirectory(prefix="edgeproof-bench-") as tmp:
        work = Path(tmp)
        url = None
        if backend == "postgresql":
            url = _fresh_pg_database("edgeproof_bench")
            if url is None:
                print("PostgreSQL not reachable: skipped", file=sys.stderr)
                return None
        attestor = start_attestor(work, url, processes)
        try:
            fleet = enroll_fleet(attestor, args.devices)
            out, by_level = Outcome(), {}
            for concurrency in levels:
                level = by_level[concurrency] = run_level(attestor, fleet, concurrency,
                                                          args.seconds)
                cpu_ms = 1000 * level.attestor_cpu / level.rate if level.cycles else 0.0
                if not level.errors and level.rate > out.peak:
                    out.peak, out.cpu_ms = level.rate, cpu_ms
                lines.append(_row(backend, processes, str(concurrency), level))
                print(lines[-1], flush=True)
                series.setdefault(f"{backend}, {processes} process"
                                  f"{'es' if processes > 1 else ''}", []).append(
                    (concurrency, level.rate, level.pct(0.99)))
            if out.peak <= 0:
                raise SystemExit("every level had errors: see attestor-*.log")
            paced = run_level(attestor, fleet, 32, args.seconds, rate=0.8 * out.peak)
            out.p99_ms = paced.pct(0.99)
            lines.append(_row(backend, processes, f"open loop at 80 % of {out.peak:.0f}/s",
                              paced))
            print(lines[-1], flush=True)
            if processes == 1 and split is not None and PROFILED in by_level:
                base = by_level[PROFILED]
                profile = yappi_level if args.profiler == "yappi" else spy_level
                try:
                    samples, check = profile(attestor, fleet, args.profile_seconds,
                                             args.stacks or work / "profile.out")
                except (RuntimeError, OSError, ValueError) as exc:
                    print(f"CPU split skipped: {exc}", file=sys.stderr)
                    samples, check = Counter(), ""
                if samples:
                    split += [f"Where the attestor's CPU goes ({backend}, one process, "
                              f"{PROFILED} in flight), by {args.profiler} "
                              f"({PROFILER_NOTE[args.profiler]}), each function's own CPU "
                              "filed under its category (bench/cpu_split.py) and scaled "
                              "to the CPU per cycle of the unprofiled level at "
                              f"{PROFILED} in flight.", "",
                              *cpu_split.table(samples, 1000 * base.attestor_cpu / base.rate,
                                               "samples" if args.profiler == "py-spy"
                                               else "seconds"),
                              "", check]
            return out
        finally:
            attestor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small fleet, one process, short levels (under a minute a backend)")
    parser.add_argument("--devices", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--profile-seconds", type=float)
    parser.add_argument("--profiler", choices=("yappi", "py-spy"), default="yappi",
                        help="how the CPU split is measured (bench/cpu_split.py)")
    parser.add_argument("--stacks", type=Path, help="keep the profile of the profiled "
                        "level here (py-spy: folded stacks; yappi: JSON)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--write", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of throughput and p99 against "
                        "concurrency (needs the bench extra: matplotlib)")
    args = parser.parse_args()
    args.devices = args.devices or (40 if args.quick else 400)
    args.seconds = args.seconds or (4.0 if args.quick else 20.0)
    args.profile_seconds = args.profile_seconds or (5.0 if args.quick else 20.0)
    levels = (4, 16) if args.quick else (1, 4, 8, 16, 32)
    load = os.getloadavg()
    lines = [f"`python -m bench.attestor_throughput{' --quick' if args.quick else ''}` on "
             f"{platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; {args.devices} "
             f"simulated devices, {args.seconds:g} s per level, load generator and "
             f"PostgreSQL on the same machine; load average before the run "
             f"{load[0]:.1f} (other work on the machine counts in it). Attestor CPU: "
             "utime + stime of the server processes (/proc/PID/stat) over the level; "
             "database CPU: the same of the PostgreSQL backends serving the bench's "
             "database (not the server's shared background processes); the last column "
             "is what one cycle costs the machine: attestor + database + load generator.",
             "", "| backend | processes | concurrency | cycles/s | p50 ms | p99 ms | errors | "
             "attestor CPU (cores) | attestor CPU ms per cycle | load generator CPU (cores) "
             "| database CPU (cores) | machine CPU ms per cycle |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    results: dict[str, Outcome] = {}
    split: list[str] = []
    series: dict[str, list[tuple[int, float, float]]] = {}
    backends = args.backends.split(",")
    profiled = "postgresql" if "postgresql" in backends else backends[0]
    for backend in backends:
        for processes in (1,) if args.quick else (1, 2):
            out = measure(backend, processes, args, levels, lines, series,
                          split if backend == profiled else None)
            if out is None:
                break
            if out.peak > results.get(backend, Outcome()).peak:
                results[backend] = out
    if split:
        lines += ["", *split]
    print("\n".join(lines[4:]))
    if args.write:
        from bench.report import write_section

        write_section(args.write, "attestor-throughput",
                      "Attestor throughput (bench/attestor_throughput.py)", lines)
    if args.plot and series:
        plot(series, args.plot)
    backend = "postgresql" if "postgresql" in results else max(
        results, key=lambda b: results[b].peak, default="none")
    best = results.get(backend, Outcome())
    print(f"cycles_per_s={best.peak:.0f} p99_ms={best.p99_ms:.0f} "
          f"cpu_ms_per_cycle={best.cpu_ms:.2f} backend={backend}")


if __name__ == "__main__":
    main()
