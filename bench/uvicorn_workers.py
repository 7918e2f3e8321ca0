"""uvicorn's ``--workers N`` against one process: the same attestor, data and load.

A fleet of simulated devices is enrolled (as in bench/attestor_throughput.py); then
the attestor is served twice on one PostgreSQL (or SQLite) database: by `attestor
serve` (one process) and by uvicorn's supervisor with N forked workers sharing one
socket (the app built by :func:`app` in each worker). Each runs the same closed-loop
levels; attestor CPU is utime + stime of every process of the server (the supervisor
and its workers, found through /proc) over the level.

Usage: python -m bench.uvicorn_workers [--workers 2] [--devices 40] [--seconds 8]
       [--levels 4,16] [--backend postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.sim.swtpm import free_port_pair
from bench.fleet_load import (
    Attestor,
    _cpu_seconds,
    _fresh_pg_database,
    enroll_fleet,
    run_level,
    start_attestor,
)
from bench.serve import wait_healthy

if TYPE_CHECKING:
    from fastapi import FastAPI

DATA_ENV = "EDGEPROOF_BENCH_DATA"


def app() -> FastAPI:
    """The attestor's app for the data directory in $EDGEPROOF_BENCH_DATA (uvicorn
    ``--factory``: called once in each worker)."""
    from attestor.app import create_app
    from attestor.services.context import build_services
    from attestor.settings import load_settings

    return create_app(build_services(load_settings(Path(os.environ[DATA_ENV]), dev=True)))


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


@dataclass
class Tree(Attestor):
    """The server as a process tree (uvicorn's supervisor and its workers)."""

    def cpu(self) -> float:
        total = 0.0
        for server in self.servers:
            for pid in [server.pid, *_descendants(server.pid)]:
                try:
                    total += _cpu_seconds(pid)
                except OSError:  # a worker gone meanwhile
                    continue
        return total


def serve_workers(base: Attestor, workers: int, log: Path) -> Tree:
    port = free_port_pair()
    env = {**os.environ, **base.env, DATA_ENV: str(base.data)}
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", "--factory", "bench.uvicorn_workers:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--no-access-log", "--log-level", "warning"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, timeout=60)
    return Tree(base.data, base.env, [server], [url])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", default="4,16")
    parser.add_argument("--backend", default="postgresql", choices=("postgresql", "sqlite"))
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    print(f"`python -m bench.uvicorn_workers --workers {args.workers}` on "
          f"{platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.backend}, {args.devices} devices, "
          f"{args.seconds:g} s per level; load average before: {os.getloadavg()[0]:.1f}\n")
    print("| server | concurrency | cycles/s | p99 ms | errors | attestor CPU (cores) "
          "| attestor CPU ms per cycle |\n|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="edgeproof-bench-") as tmp:
        url = _fresh_pg_database("edgeproof_bench") if args.backend == "postgresql" else None
        base = start_attestor(Path(tmp), url, 1)
        try:
            fleet = enroll_fleet(base, args.devices)
        except BaseException:
            base.stop()
            raise
        runs: list[tuple[str, Attestor | None]] = [
            ("attestor serve (1 process)", base), (f"uvicorn --workers {args.workers}", None)]
        for name, given in runs:
            server = given if given is not None else serve_workers(
                base, args.workers, Path(tmp) / "workers.log")
            try:
                for concurrency in levels:
                    level = run_level(server, fleet, concurrency, args.seconds)
                    rate = level.rate
                    cpu_ms = level.attestor_cpu / rate * 1000 if rate else float("nan")
                    print(f"| {name} | {concurrency} | {rate:.0f} | {level.pct(0.99):.0f} | "
                          f"{level.errors} | {level.attestor_cpu:.2f} | {cpu_ms:.1f} |",
                          flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
