"""Protocol models: pydantic v2 (strict and lax) against msgspec on the real attestation
request (a simulated device's evidence, ~8 KB of JSON with base64 quote and event log)
and a realistic attestation result: decode+validate and encode, µs per operation.

``fastapi`` is the path FastAPI takes for a request body: ``json.loads`` then
``validate_python`` on the dict. msgspec is measured only when installed (it is not a
dependency: see docs/benchmarks.md, protocol models, for why).

Usage: python -m bench.messages [--rounds 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import timeit
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.sim.fleet import SimDevice
from identity.messages import AttestationRequest, AttestationResult, Challenge


def _samples() -> tuple[bytes, bytes]:
    device = SimDevice("SIM-BENCH")
    device.device_id = "d" + "0" * 31
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    request = device.evidence(Challenge(nonce=b"\x01" * 32, expires_at=now,
                                        pcr_selection={"sha256": list(range(8))}))
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 700 + "\n-----END CERTIFICATE-----\n"
    checks: list[dict[str, Any]] = [{"name": f"check.{i}", "passed": True, "code": None,
                                     "detail": "ok"} for i in range(14)]
    result = AttestationResult(
        device_id=str(device.device_id), verdict="pass", checks=checks, warnings=[],
        policy={"device_class": "default", "version": 3},  # type: ignore[arg-type]
        certificate=pem, chain=pem, ca=pem, serial="1a2b3c4d5e6f", not_before=now,
        not_after=now + dt.timedelta(hours=1), secrets=[], token="e" * 600)
    return request.model_dump_json().encode(), result.model_dump_json().encode()


def _lax(model: type[BaseModel]) -> type[BaseModel]:
    """The same model without strict mode (what the attestor had before)."""
    config = ConfigDict(**{**model.model_config, "strict": False})  # type: ignore[typeddict-item]
    return type(model.__name__ + "Lax", (model,), {"model_config": config})


def _time(fn: Callable[[], object], rounds: int) -> float:
    best = min(timeit.repeat(fn, number=rounds, repeat=5))
    return best / rounds * 1e6


def _msgspec_cases(request: bytes, result: bytes) -> dict[str, Callable[[], object]]:
    try:
        import msgspec
    except ImportError:
        return {}
    from bench.msgspec_models import Request, Result

    decode_request = msgspec.json.Decoder(Request).decode
    decode_result = msgspec.json.Decoder(Result).decode
    encode = msgspec.json.Encoder().encode
    req, res = decode_request(request), decode_result(result)
    return {"msgspec request decode+validate": lambda: decode_request(request),
            "msgspec request encode": lambda: encode(req),
            "msgspec result decode+validate": lambda: decode_result(result),
            "msgspec result encode": lambda: encode(res)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    request, result = _samples()
    lax_request, lax_result = _lax(AttestationRequest), _lax(AttestationResult)
    req = AttestationRequest.model_validate_json(request)
    res = AttestationResult.model_validate_json(result)
    cases: dict[str, Callable[[], object]] = {
        "pydantic strict request decode+validate (json)":
            lambda: AttestationRequest.model_validate_json(request),
        "pydantic strict request json.loads+validate (fastapi)":
            lambda: AttestationRequest.model_validate(json.loads(request)),
        "pydantic lax request json.loads+validate (fastapi)":
            lambda: lax_request.model_validate(json.loads(request)),
        "pydantic strict request encode": req.model_dump_json,
        "pydantic strict result decode+validate (agent)":
            lambda: AttestationResult.model_validate_json(result),
        "pydantic lax result decode+validate":
            lambda: lax_result.model_validate_json(result),
        "pydantic strict result encode": res.model_dump_json,
    }
    cases |= _msgspec_cases(request, result)
    print(f"request {len(request)} bytes, result {len(result)} bytes")
    for name, fn in cases.items():
        print(f"| {name} | {_time(fn, args.rounds):.1f} |")


if __name__ == "__main__":
    main()
