"""Zero-touch onboarding costs on swtpm: the OEM's provisioning of one device (wall
time, mostly the TPM: two primaries, activation, certify, three NV writes) and the
owner's pure check of one onboarding (`identity.devid.evidence.verify_onboarding`:
two chains, profiles, three certifies, one signature; attestor CPU per device).

Usage: python -m bench.onboarding [--rounds 200]
Last line: provision_ms=<median> verify_ms=<median>
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import agent  # noqa: F401 - sets TSS2_LOG before tpm2-pytss loads
from agent.oem.ca import init_ca
from agent.oem.provision import provision
from agent.onboard import build_request, oem_identity
from agent.sim.swtpm import Manufacturer, SwtpmProcess
from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE, Tpm
from identity.checks import CheckRunner
from identity.devid.evidence import verify_onboarding
from identity.devid.messages import OnboardingChallenge
from identity.truststore import TrustStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--devices", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-onboarding-"))
    maker = Manufacturer(work / "vendor")
    maker.ensure_config()
    vendors = TrustStore.from_blobs([("r", maker.root_certificate.read_bytes()),
                                     ("i", maker.intermediate_certificate.read_bytes())])
    authority = init_ca(work / "oem", "Bench OEM", dt.datetime.now(dt.UTC))
    provision_ms: list[float] = []
    request = None
    for n in range(args.devices):
        maker.manufacture(work / f"tpm{n}")
        proc = SwtpmProcess(work / f"tpm{n}").start()
        try:
            with Tpm(proc.tcti) as tpm:
                started = time.perf_counter()
                provision(tpm, authority, vendors, f"BENCH-{n}", dt.datetime.now(dt.UTC))
                provision_ms.append((time.perf_counter() - started) * 1000)
                if request is None:
                    iak, idevid, chain = oem_identity(tpm)
                    srk = tpm.ensure_srk(SRK_HANDLE)
                    tpm.create_ak(AK_HANDLE, SRK_HANDLE)
                    tpm.create_devid(DEVID_HANDLE, SRK_HANDLE)
                    challenge = OnboardingChallenge(challenge_id="bench", nonce=b"n" * 32,
                                                    expires_at=dt.datetime.now(dt.UTC))
                    request = build_request(tpm, challenge, iak, idevid, chain,
                                            ek_public=tpm.endorsement().public,
                                            srk_public=srk, lak_handle=AK_HANDLE,
                                            ldevid_handle=DEVID_HANDLE)
        finally:
            proc.stop()
    assert request is not None
    roots, now = [authority.root], dt.datetime.now(dt.UTC)
    verify_ms: list[float] = []
    for _ in range(args.rounds):
        runner = CheckRunner()
        started = time.perf_counter()
        found = verify_onboarding(runner, request, b"n" * 32, roots, [], now)
        verify_ms.append((time.perf_counter() - started) * 1000)
        if found is None:
            raise SystemExit(f"verification failed: {runner.reason_codes}")
    print(f"devices={args.devices} rounds={args.rounds}")
    print(f"provision_ms={statistics.median(provision_ms):.1f} "
          f"verify_ms={statistics.median(verify_ms):.2f}")


if __name__ == "__main__":
    main()
