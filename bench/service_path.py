"""The attestor's service path, counted: SQL statements, commits and CPU per full cycle.

A fleet of simulated devices is enrolled through a running attestor; then the
functions the routes call (challenge + attestation: verify, issue, token, audit)
run in this process against the same database, with every SQL statement counted
by kind. This is where database waste shows, without HTTP in the way.
Usage: python -m bench.service_path [--cycles N] [--backends sqlite,postgresql]
       [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.sim.fleet import SimDevice
from bench.attestor_throughput import in_process_services, service_cycle
from bench.fleet_load import _fresh_pg_database, enroll_fleet, start_attestor


def measure(data: Path, env: dict[str, str], fleet: list[SimDevice],
            cycles: int) -> dict[str, Any]:
    svc = in_process_services(data, env)
    counts: collections.Counter[str] = collections.Counter()

    @sa.event.listens_for(svc.engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts[statement.split(None, 1)[0].upper()] += 1

    @sa.event.listens_for(svc.engine, "commit")
    def commit(conn: Any) -> None:
        counts["COMMIT"] += 1

    # On PostgreSQL the cycle's own statements go to psycopg directly, past SQLAlchemy's
    # events: count them where they are sent (a wrapper of a few microseconds a call).
    from attestor.db import attestation_queries

    direct = attestation_queries.driver

    class Counting:
        """The psycopg connection, counting what it is sent (attributes such as
        ``autocommit`` are the connection's own)."""

        def __init__(self, pg: Any) -> None:
            object.__setattr__(self, "_pg", pg)

        def execute(self, query: str, params: Any = None) -> Any:
            counts[query.split(None, 1)[0].upper()] += 1
            return self._pg.execute(query, params)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._pg, name)

        def __setattr__(self, name: str, value: Any) -> None:
            setattr(self._pg, name, value)

    def counting(conn: sa.Connection) -> Any:
        pg = direct(conn)
        return None if pg is None else Counting(pg)

    attestation_queries.driver = counting  # type: ignore[assignment]

    device_cpu = [0.0]

    def one(device: SimDevice) -> None:
        device_cpu[0] += service_cycle(svc, device)

    for device in fleet[:5]:
        one(device)
    counts.clear()
    device_cpu[0] = 0.0
    cpu = time.process_time()
    for index in range(cycles):
        one(fleet[index % len(fleet)])
    cpu_ms = (time.process_time() - cpu - device_cpu[0]) * 1000 / cycles
    svc.engine.dispose()
    attestation_queries.driver = direct  # type: ignore[assignment]
    per_cycle = {k: v / cycles for k, v in sorted(counts.items())}
    return {"cpu_ms": cpu_ms, "statements": per_cycle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    lines = [f"`python -m bench.service_path --cycles {args.cycles}` on {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}: the service path "
             "of one full cycle (challenge + attestation) in-process, SQL counted by kind; "
             "commits are explicit ones (on PostgreSQL the challenge's and the opening "
             "statements run in autocommit, each its own transaction).",
             "", "| backend | attestor CPU ms / cycle | SQL statements / cycle | of which | "
             "commits / cycle |", "|---|---:|---:|---|---:|"]
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="edgeproof-bench-") as tmp:
            url = _fresh_pg_database("edgeproof_bench") if backend == "postgresql" else None
            if backend == "postgresql" and url is None:
                print("PostgreSQL not reachable: skipped")
                continue
            attestor = start_attestor(Path(tmp), url, 1)
            try:
                fleet = enroll_fleet(attestor, args.devices)
            finally:
                attestor.stop()
            result = measure(attestor.data, attestor.env, fleet, args.cycles)
        statements = result["statements"]
        commits = statements.pop("COMMIT", 0.0)
        total = sum(statements.values())
        kinds = ", ".join(f"{v:.1f} {k}" for k, v in statements.items())
        lines.append(f"| {backend} | {result['cpu_ms']:.2f} | "
                     f"{total:.1f} | {kinds} | {commits:.1f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.write:
        from bench.report import write_section

        write_section(args.write, "service-path", "Service path: SQL and CPU per cycle "
                      "(bench/service_path.py)", lines)


if __name__ == "__main__":
    main()
