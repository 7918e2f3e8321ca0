"""Event-log and IMA throughput: parse + replay time per corpus log (all banks the log
carries), per 100 events, and IMA entries per second (parse, template-hash check and
PCR10 replay), measured in-process.

Usage: python -m bench.eventlog [--corpus DIR] [--rounds N] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import time
from pathlib import Path

from agent.sim.ima import binary_entry, template_data
from bench.report import write_section
from identity.errors import IdentityError
from identity.eventlog.replay import replay
from identity.eventlog.tcg import parse_event_log
from identity.ima.log import parse_ascii, parse_binary
from identity.ima.replay import replay_ima

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn: object, rounds: int) -> float:
    """Best wall time of ``rounds`` calls, seconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=Path(
        os.environ.get("EDGEPROOF_CORPUS", ROOT.parent / "shared" / "corpus")))
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    lines = [f"`python -m bench.eventlog --rounds {args.rounds}` on {platform.machine()}, "
             f"Python {platform.python_version()}, {dt.date.today()}: best of the rounds, one "
             "core.", "", "| log | events | banks | parse + replay µs | µs per 100 events |",
             "|---|---:|---:|---:|---:|"]
    per_100 = []
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((args.corpus / folder / "manifest.json").read_text())
        for name in manifest:
            data = (args.corpus / folder / name).read_bytes()
            try:
                log = parse_event_log(data)
            except IdentityError:
                continue  # the truncated log the corpus keeps for the refusal test
            seconds = best_of(lambda d=data: replay(parse_event_log(d)), args.rounds)
            per_100.append(seconds * 1e6 / len(log.events) * 100)
            lines.append(f"| {name} | {len(log.events)} | {len(log.banks)} | "
                         f"{seconds * 1e6:.0f} | {per_100[-1]:.0f} |")
    lines += ["", f"Worst per 100 events: {max(per_100):.0f} µs (target: under 1,000 µs).", ""]

    ascii_list = (args.corpus / "ima" / "rust-keylime-ascii_runtime_measurements").read_text()
    synthetic = b"".join(binary_entry(template_data(
        f"/usr/lib/x86_64-linux-gnu/lib{i}.so.6", "sha256",
        hashlib.sha256(str(i).encode()).digest())) for i in range(50_000))
    per_bank = b"".join(binary_entry(template_data(
        f"/usr/lib/x86_64-linux-gnu/lib{i}.so.6", "sha256",
        hashlib.sha256(str(i).encode()).digest()), bank="sha256") for i in range(50_000))
    rows = [
        ("826-entry ASCII list (real): parse, SHA-1 template hashes, SHA-1 replay", 826,
         lambda: replay_ima(parse_ascii(ascii_list), ["sha1"])),
        ("50,000-entry binary ima-ng list: parse and SHA-256 replay (as the attestor)",
         50_000,
         lambda: replay_ima(parse_binary(synthetic).entries, ["sha256"])),
        ("50,000-entry per-bank SHA-256 list: parse, SHA-256 template hashes checked, replay",
         50_000, lambda: replay_ima(parse_binary(per_bank, "sha256").entries, ["sha256"],
                                    list_bank="sha256")),
        ("same as the second row, parse only", 50_000, lambda: parse_binary(synthetic)),
    ]
    lines += ["| IMA list | entries | entries/s |", "|---|---:|---:|"]
    rates = []
    for label, count, fn in rows:
        seconds = best_of(fn, max(5, args.rounds // 20))
        rates.append(count / seconds)
        lines.append(f"| {label} | {count:,} | {count / seconds:,.0f} |")
    print("\n".join(lines))
    print(f"eventlog_worst_us_per_100={max(per_100):.0f} ima_entries_per_s={rates[1]:.0f}")
    if args.write:
        write_section(args.write, "eventlog", "Event logs and IMA", lines)


if __name__ == "__main__":
    main()
