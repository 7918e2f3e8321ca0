"""The fleet simulator's CPU per cycle, without an attestor: what the throughput
bench's load generator spends on a device's side of one cycle (the evidence for a
challenge, both request bodies and both device signatures).

Usage: python -m bench.sim_evidence [--cycles N] [--repeat R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

from agent.client import DeviceSigner
from agent.sim.fleet import SimDevice
from identity.messages import Challenge, encode

SELECTION = {"sha256": [0, 1, 2, 3, 4, 5, 6, 7]}


def device_side(device: SimDevice, signer: DeviceSigner, challenge: Challenge) -> None:
    """One cycle's work on the device's side, as ``bench.fleet_load.cycle`` does it."""
    path = f"/v1/devices/{device.device_id}"
    signer.headers("POST", f"{path}/challenge", b"", time.time())
    body = encode(device.evidence(challenge))
    signer.headers("POST", f"{path}/attestations", body, time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    devices = [SimDevice(f"SIM-{i:06d}") for i in range(8)]
    for i, device in enumerate(devices):
        device.device_id = f"dev-{i:04d}-0000-0000-0000-000000000000"
    signers = [d.signer() for d in devices]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    for n in range(20):  # warm up: caches, imports
        challenge = Challenge(nonce=os.urandom(32), expires_at=expires, pcr_selection=SELECTION)
        device_side(devices[n % 8], signers[n % 8], challenge)
    figures = []
    for _ in range(args.repeat):
        challenges = [Challenge(nonce=os.urandom(32), expires_at=expires,
                                pcr_selection=SELECTION) for _ in range(args.cycles)]
        start = time.process_time()
        for n, challenge in enumerate(challenges):
            device_side(devices[n % 8], signers[n % 8], challenge)
        figures.append(1000 * (time.process_time() - start) / args.cycles)
    print("ms CPU per cycle:", " ".join(f"{f:.3f}" for f in figures),
          f"(min {min(figures):.3f})")


if __name__ == "__main__":
    main()
