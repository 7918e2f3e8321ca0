"""Cost of the attestor's verification and issuance path, per step, on one core.

Evidence is genuine TPM structures signed by software keys (agent/sim/softtpm),
so the numbers are the verifier's own cost: no TPM, no HTTP, no database.
Usage: python -m bench.verify_path [--rounds N] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.sim.boot import boot_events, encode_log
from agent.sim.softtpm import SIGNING_KEY_ATTRS, SoftKey
from bench.report import write_section
from identity.checks import CheckRunner
from identity.eventlog.replay import check_replay_matches, replay
from identity.eventlog.tcg import parse_event_log
from identity.policy import PolicyDocument, evaluate_pcrs, learn
from identity.tpm.ak import check_attestation_key
from identity.tpm.certify import verify_certify
from identity.tpm.quote import verify_quote
from identity.x509.csr import assemble_csr, check_csr, csr_info
from identity.x509.profiles import SigningCa, issuing_ca, root_ca, workload_certificate


def timed(fn: Callable[[], object], rounds: int) -> float:
    """Median microseconds per call over ``rounds`` calls (after a warm-up)."""
    for _ in range(min(50, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()

    now = dt.datetime.now(dt.UTC)
    ak = SoftKey()
    enrolled = check_attestation_key(ak.public)
    policy = PolicyDocument()
    log_bytes = encode_log(boot_events(), ("sha256",))
    values = replay(parse_event_log(log_bytes)).values
    values = {"sha256": {i: values["sha256"][i] for i in policy.pcrs}}
    golden = learn(policy, values)
    nonce = bytes(32)
    attest, sig = ak.quote(golden.required_selection(), values, nonce)
    workload = SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    c_attest, c_sig = ak.certify(workload.public, nonce)
    info = csr_info(workload.private.public_key(), "device")
    csr = assemble_csr(info, "ecdsa", "sha256",
                       workload.private.sign(info, ec.ECDSA(hashes.SHA256())))
    root_key, issuing_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    root = root_ca(root_key, "bench root", now, 3650)
    issuer = SigningCa(issuing_key, issuing_ca(SigningCa(root_key, root), issuing_key,
                                               "bench issuing", now, 365))

    steps: list[tuple[str, Callable[[], object]]] = [
        ("quote (parse, ECDSA P-256 verify, PCR digest, all checks)", lambda: verify_quote(
            CheckRunner(), enrolled, attest, sig, nonce=nonce, pcr_values=values,
            required=golden.required_selection())),
        ("certify of the workload key", lambda: verify_certify(
            CheckRunner(), enrolled, c_attest, c_sig, workload.public, qualifying_data=nonce)),
        ("CSR parse and signature", lambda: check_csr(csr)),
        (f"event log parse + replay ({len(parse_event_log(log_bytes).events)} events)",
         lambda: check_replay_matches(parse_event_log(log_bytes), values)),
        ("golden-PCR policy", lambda: evaluate_pcrs(golden, values)),
        ("workload certificate (build + ECDSA sign)", lambda: workload_certificate(
            issuer, workload.private.public_key(), device_id="device", trust_domain="bench",
            now=now, ttl=dt.timedelta(hours=1))),
    ]
    rows = [(name, timed(fn, args.rounds)) for name, fn in steps]
    total = sum(us for _, us in rows)
    lines = [
        f"`python -m bench.verify_path --rounds {args.rounds}` on {platform.machine()}, "
        f"Python {platform.python_version()}, {now:%Y-%m-%d}: median µs per step, one core.",
        "",
        "| step | µs |",
        "|---|---:|",
        *[f"| {name} | {us:.0f} |" for name, us in rows],
        f"| **total per attestation** | **{total:.0f}** |",
        "",
        f"Ceiling for the pure verification and issuance work: about "
        f"{1e6 / total:.0f} attestations per second per core (no HTTP, no database).",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "verify_path", "Verification path", lines)


if __name__ == "__main__":
    main()
