"""Edgeproof's verification kernels against Keylime's, in one process, interleaved, on
the same inputs: TPM quote verification, measured-boot log parse + replay, IMA list
parse + replay. Keylime is imported from a source tree the caller passes (a checkout
of keylime/keylime); nothing of it is part of this project.

Every comparison row is timed in rounds: in each round every contender runs one batch
(about 20 ms of calls), so machine noise hits both sides alike; a row reports the best
batch of each (µs per call) and the ratio Keylime / edgeproof. Each row is first checked
to give the right answer on both sides (a quote accepted, the manifest's PCR values
replayed, the quoted PCR10 reached); where one side cannot, the report says so instead.
The comparisons themselves are in bench/peer_keylime_cases.py.

Keylime's modules need, besides `cryptography`: pyyaml, lark, jsonschema, pyasn1,
pyasn1-modules, psutil, packaging (install them into this venv, not into pyproject),
`tpm2_eventlog` (tpm2-tools) and libefivar.so.1 for measured boot.

Usage: python -m bench.peer_keylime --keylime-src DIR [--seconds S] [--corpus DIR]
                                   [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import platform
import sys
import types
from pathlib import Path
from typing import Any

from bench.peer_keylime_cases import (
    BATCH_SECONDS,
    Row,
    eventlog_rows,
    ima_rows,
    quote_rows,
    tpm2_tools_pcrs,
)
from bench.report import write_section

__all__ = ["load_keylime", "main", "tpm2_tools_pcrs"]

ROOT = Path(__file__).resolve().parent.parent
KEYLIME_MODULES = ("keylime.tpm.tpm_util", "keylime.tpm.tpm_main", "keylime.ima.ima",
                   "keylime.common.algorithms", "keylime.cmd_exec", "keylime.config",
                   "keylime.mba.elparsing.tpm2_tools_elparser",
                   "keylime.mba.elparsing.tpm_bootlog_enrich")


def load_keylime(src: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Keylime's modules from ``src``, and notes on how they were loaded; exit with a
    message if the tree is missing or an import fails."""
    if src is None or not (src / "keylime" / "tpm" / "tpm_util.py").is_file():
        sys.exit(f"peer_keylime: no Keylime source tree at {src} (pass --keylime-src DIR, "
                 "a checkout of keylime/keylime holding keylime/tpm/tpm_util.py)")
    notes = []
    sys.path.insert(0, str(src.resolve()))
    try:
        importlib.import_module("gpg")
    except ImportError:
        # keylime.signing (imported by keylime.ima.ima) needs the GPGME bindings only
        # to check signed runtime policies, which no path measured here calls.
        sys.modules["gpg"] = types.ModuleType("gpg")
        notes.append("the GPGME bindings (`gpg`) are absent: an empty stand-in module "
                     "satisfies keylime.signing's import (policy signatures, not measured)")
    logging.disable(logging.WARNING)  # Keylime warns on a missing /etc/keylime
    try:
        mods = {name.rsplit(".", 1)[1]: importlib.import_module(name)
                for name in KEYLIME_MODULES}
    except Exception as exc:  # noqa: BLE001 - any import failure ends the run cleanly
        sys.exit(f"peer_keylime: importing Keylime from {src} failed: "
                 f"{type(exc).__name__}: {exc} (its dependencies: pyyaml, lark, jsonschema, "
                 "pyasn1, pyasn1-modules, psutil, packaging; libefivar.so.1 for measured boot)")
    notes.insert(0, f"Keylime imported from {src}")
    return mods, notes


# --- report -------------------------------------------------------------------------

def report(args: argparse.Namespace, notes: list[str], quotes: list[Row], probes: list[str],
           logs: list[Row], log_notes: list[str], imas: list[Row]) -> list[str]:
    out = [f"`python -m bench.peer_keylime --keylime-src {args.keylime_src} --seconds "
           f"{args.seconds:g}` on {platform.machine()} ({os.cpu_count()} cores), Python "
           f"{platform.python_version()}, {dt.date.today()}: one process, the contenders of "
           f"each row interleaved, best ~{BATCH_SECONDS * 1e3:.0f} ms batch of each, µs per "
           "call; ratio = Keylime / edgeproof.", "", *[f"- {n}" for n in notes], "",
           "| quote, AK | bare verify | edgeproof `verify_quote` | Keylime `checkquote` "
           "| ratio | edgeproof with AK parse + base64 per quote | Keylime "
           "`_tpm2_checkquote` | ratio | Keylime's PEM load alone |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, g in quotes:
        out.append(f"| {label} | {g['bare']:.1f} | {g['ours']:.1f} ({g['ours'] / g['bare']:.2f}× "
                   f"bare) | {g['theirs']:.1f} ({g['theirs'] / g['bare']:.2f}× bare) | "
                   f"{g['theirs'] / g['ours']:.2f}× | {g['ours_wire']:.1f} | "
                   f"{g['theirs_wire']:.1f} | {g['theirs_wire'] / g['ours_wire']:.2f}× | "
                   f"{g['pem']:.1f} |")
    out += ["", *[f"- {p}" for p in probes], "",
            "| boot log | edgeproof parse + replay | with boot summary | replays manifest "
            "| Keylime whole "
            "`parse_binary_bootlog` | of which `tpm2_eventlog` child | Keylime in-process "
            "part (YAML, enrich, aggregates) | replays manifest |",
            "|---|---:|---:|:-:|---:|---:|---:|:-:|"]
    yes = {True: "yes", False: "no", None: "– (none known)"}
    for name, g in logs:
        if "whole" not in g:
            out.append(f"| {name} | {g['ours']:.0f} | {g['ours_summary']:.0f} | "
                       f"{yes[g['ours_ok']]} | fails (below) "
                       "| – | – | no |")
            continue
        post = f"{g['post']:,.0f} ({g['post'] / g['ours_summary']:.0f}× edgeproof's)"
        out.append(f"| {name} | {g['ours']:.0f} | {g['ours_summary']:.0f} | {yes[g['ours_ok']]} | "
                   f"{g['whole']:,.0f} | {g['tool']:,.0f} | {post} | "
                   f"{yes[g['theirs_ok']]} |")
    out += ["", *[f"- {n}" for n in log_notes], "",
            "| IMA list: parse, template hashes, PCR10 replay to the quoted value | edgeproof "
            "µs | Keylime `process_measurement_list` µs | ratio | edgeproof entries/s | "
            "Keylime entries/s |", "|---|---:|---:|---:|---:|---:|"]
    for label, g in imas:
        n = g["entries"]
        out.append(f"| {label} | {g['ours']:,.0f} | {g['theirs']:,.0f} | "
                   f"{g['theirs'] / g['ours']:.2f}× | {n / g['ours'] * 1e6:,.0f} | "
                   f"{n / g['theirs'] * 1e6:,.0f} |")
        if "ours_default" in g:
            out.append(f"| same, edgeproof's default (SHA-1 template hashes not recomputed for "
                       f"a SHA-256 replay) | {g['ours_default']:,.0f} | {g['theirs']:,.0f} | "
                       f"{g['theirs'] / g['ours_default']:.2f}× | "
                       f"{n / g['ours_default'] * 1e6:,.0f} | {n / g['theirs'] * 1e6:,.0f} |")
        if "ours_binary" in g:
            out.append(f"| same list, edgeproof on its binary form (what its agent sends; "
                       f"template hashes checked) | {g['ours_binary']:,.0f} | "
                       f"{g['theirs']:,.0f} | {g['theirs'] / g['ours_binary']:.2f}× | "
                       f"{n / g['ours_binary'] * 1e6:,.0f} | {n / g['theirs'] * 1e6:,.0f} |")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keylime-src", type=Path, help="a keylime/keylime source tree")
    parser.add_argument("--seconds", type=float, default=3.0, help="per comparison row")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    parser.add_argument("--corpus", type=Path, default=Path(
        os.environ.get("EDGEPROOF_CORPUS", ROOT.parent / "shared" / "corpus")))
    args = parser.parse_args(argv)
    kl, notes = load_keylime(args.keylime_src)
    if not (args.corpus / "eventlogs" / "manifest.json").is_file():
        sys.exit(f"peer_keylime: no corpus at {args.corpus} (set EDGEPROOF_CORPUS)")
    load_before = os.getloadavg()[0]
    quotes, probes = quote_rows(kl, args.seconds)
    logs, log_notes = eventlog_rows(kl, args.corpus, args.seconds / 3)
    imas = ima_rows(kl, args.corpus, args.seconds)
    notes.append(f"load average (1 min) {load_before:.1f} at the start, "
                 f"{os.getloadavg()[0]:.1f} at the end")
    lines = report(args, notes, quotes, probes, logs, log_notes, imas)
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "peer_keylime", "Keylime, same run (bench/peer_keylime.py)",
                      lines)


if __name__ == "__main__":
    main()
