"""Quote verifications per second per core, RSA-2048 and ECC P-256, against the bare
signature verification every verifier must do, measured in the same run.

The full verification is `identity.tpm.quote.verify_quote` on a genuine TPMS_ATTEST
and TPMT_SIGNATURE (software-signed, byte-identical in format to a TPM's) over
PCRs 0-7: parsing, scheme pinning, signature, magic, type, nonce, PCR selection,
values and digest. Bare and full are interleaved in rounds so machine noise
hits both alike.

Usage: python -m bench.verify_quote [--seconds N] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from agent.sim.softtpm import SoftKey, software_pcrs
from bench.report import write_section
from identity.checks import CheckRunner
from identity.pcr import PcrSelection
from identity.tpm.ak import check_attestation_key
from identity.tpm.quote import verify_quote

BATCH = 200


def per_call_us(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(BATCH):
        fn()
    return (time.perf_counter() - start) / BATCH * 1e6


def measure(name: str, private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
            seconds: float) -> tuple[str, float, float]:
    soft = SoftKey(private=private)
    ak = check_attestation_key(soft.public)
    selection = PcrSelection.of({"sha256": range(8)})
    values = software_pcrs(selection)
    nonce = bytes(32)
    attest, signature = soft.quote(selection, values, nonce)
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        raw = private.sign(attest, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]

        def bare() -> None:
            public.verify(raw, attest, padding.PKCS1v15(), hashes.SHA256())
    else:
        der = private.sign(attest, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]

        def bare() -> None:
            public.verify(der, attest, ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]

    def full() -> None:
        runner = CheckRunner()
        result = verify_quote(runner, ak, attest, signature, nonce=nonce, pcr_values=values,
                              required=selection)
        if not result.passed:
            raise AssertionError(runner.reason_codes)

    bare_samples: list[float] = []
    full_samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        bare_samples.append(per_call_us(bare))
        full_samples.append(per_call_us(full))
    return name, min(bare_samples), min(full_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per key type")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    rows = [
        measure("ECC P-256, ECDSA-SHA256", ec.generate_private_key(ec.SECP256R1()), args.seconds),
        measure("RSA-2048, RSASSA-SHA256", rsa.generate_private_key(65537, 2048), args.seconds),
    ]
    lines = [
        f"`python -m bench.verify_quote --seconds {args.seconds:g}` on {platform.machine()}, "
        f"Python {platform.python_version()}, {dt.date.today()}: one core, best of the interleaved "
        f"{BATCH}-call batches (the least-disturbed run of each).",
        "",
        "| AK | bare verify µs | full quote verification µs | quotes/s/core | ratio |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {bare:.1f} | {full:.1f} | {1e6 / full:,.0f} | {full / bare:.2f}× |"
          for name, bare, full in rows],
    ]
    print("\n".join(lines))
    for name, bare, full in rows:
        print(f"{name}: quotes_per_s={1e6 / full:.0f} ratio={full / bare:.2f}")
    if args.write:
        write_section(args.write, "verify_quote", "Quote verification", lines)


if __name__ == "__main__":
    main()
