"""The HTTP layers' own CPU on a device's two per-cycle requests (challenge, then
attestation), in process: the attestor's ASGI app driven by a raw ASGI caller (no
server, no sockets), with the two service calls replaced by canned answers, so what
is left is the framework, middleware, request context, rate limits, request-proof
parsing, body decoding, answer encoding, metrics and the access log (written to
/dev/null).

Two apps built from the same services are compared, alternating, in one process:
``front`` (create_app as served: attestor/api/front.py answers the two routes) and
``stack`` (create_app(front=False): every request through the whole FastAPI stack).
Each request comes from its own client address, as a fleet's do (one address would
soon meet the per-client rate limit). CPU is process time (the thread hand-off of the
service call included) per cycle of two requests.

Usage: python -m bench.device_front [--cycles N] [--rounds R]
Last line: front_us_per_cycle=<median> stack_us_per_cycle=<median>
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.client import DeviceSigner
from agent.sim.fleet import SimDevice
from attestor.app import create_app
from attestor.observability import configure_logging
from attestor.services import attestation
from attestor.services.context import Services, build_services
from attestor.settings import load_settings
from attestor.setup import initialise
from identity.messages import AttestationResult, Challenge, PolicyRef, encode

DEVICE = "bench-device-1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHALLENGE = Challenge(nonce=bytes(32), expires_at=NOW + dt.timedelta(minutes=5),
                      pcr_selection={"sha256": list(range(8))})
RESULT = AttestationResult(
    device_id=DEVICE, verdict="pass", checks=[{"name": "quote", "ok": True}] * 12,
    warnings=[], policy=PolicyRef(device_class="default", version=1),
    certificate="-----BEGIN CERTIFICATE-----\n" + "A" * 900 + "\n", chain="B" * 1800,
    ca="C" * 900, serial="1234", not_before=NOW, not_after=NOW + dt.timedelta(hours=1),
    secrets=[])


def _canned(answer: Any) -> Callable[..., Any]:
    def service(svc: Services, device_id: str, *args: Any) -> Any:
        return answer  # (nor the device's own rate limit: one device makes every request)
    return service


def _request(path: str, body: bytes, signer: DeviceSigner, client: str) -> dict[str, Any]:
    headers = {"host": "attestor", "user-agent": "edgeproof-agent/1",
               "content-type": "application/json", "content-length": str(len(body)),
               **signer.headers("POST", path, body, time.time())}
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (client, 40000), "server": ("127.0.0.1", 8000)}


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    status = 0
    given = False

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def _cycles(app: Any, requests: list[tuple[dict[str, Any], bytes]]) -> float:
    """Process CPU seconds for the requests (pairs: challenge, attestation)."""
    started = time.process_time()
    for scope, body in requests:
        status = await _call(app, scope, body)
        if status not in (200, 201):
            raise SystemExit(f"{scope['path']} answered {status}")
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115 (for the process)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp), dev=True)
        initialise(settings, NOW)
        svc = build_services(settings)
        attestation.challenge = _canned(CHALLENGE)  # type: ignore[assignment]
        attestation.attest = _canned(RESULT)  # type: ignore[assignment]
        device = SimDevice("bench-1", device_id=DEVICE)
        evidence = encode(device.evidence(CHALLENGE))
        signer = device.signer()
        base = f"/v1/devices/{DEVICE}"
        apps = {"front": create_app(svc, background=False),
                "stack": create_app(svc, background=False, front=False)}
        figures: dict[str, list[float]] = {name: [] for name in apps}
        for round_ in range(args.rounds + 1):
            for name, app in apps.items():
                requests = []
                for i in range(args.cycles):
                    client = f"10.{round_}.{i >> 8 & 255}.{i & 255}"
                    requests += [(_request(base + "/challenge", b"", signer, client), b""),
                                 (_request(base + "/attestations", evidence, signer, client),
                                  evidence)]
                # a fresh rate limiter a round: each address is new to it
                app.state.rate_limiter = type(app.state.rate_limiter)()
                seconds = asyncio.run(_cycles(app, requests))
                if round_:  # the first round warms up
                    figures[name].append(seconds / args.cycles * 1e6)
        svc.engine.dispose()
    for name, values in figures.items():
        print(f"{name}: µs of CPU per cycle, {len(values)} rounds of {args.cycles}: "
              f"median {statistics.median(values):.0f}, range {min(values):.0f}-"
              f"{max(values):.0f}")
    print(f"front_us_per_cycle={statistics.median(figures['front']):.0f} "
          f"stack_us_per_cycle={statistics.median(figures['stack']):.0f}")


if __name__ == "__main__":
    main()
