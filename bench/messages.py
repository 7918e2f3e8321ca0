"""Protocol models: msgspec (identity/messages.py, what both ends use) against pydantic v2
(strict and lax twins, bench/pydantic_models.py) on the real attestation request (a
simulated device's evidence, ~8 KB of JSON with base64 quote and event log) and a realistic
attestation result: decode+validate and encode, µs per operation.

``fastapi`` is the path FastAPI takes for a pydantic request body: ``json.loads`` then
``validate_python`` on the dict; the attestor's device routes now decode the raw body with
msgspec in one call instead (attestor/api/protocol.py).

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
from bench import pydantic_models as pyd
from identity.messages import AttestationRequest, AttestationResult, Challenge, PolicyRef
from identity.messages import decode as msgspec_decode
from identity.messages import encode as msgspec_encode


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
        policy=PolicyRef(device_class="default", version=3),
        certificate=pem, chain=pem, ca=pem, serial="1a2b3c4d5e6f", not_before=now,
        not_after=now + dt.timedelta(hours=1), secrets=[], token="e" * 600)
    return msgspec_encode(request), msgspec_encode(result)


def _lax(model: type[BaseModel]) -> type[BaseModel]:
    """The same model without strict mode."""
    config = ConfigDict(**{**model.model_config, "strict": False})  # type: ignore[typeddict-item]
    return type(model.__name__ + "Lax", (model,), {"model_config": config})


def _time(fn: Callable[[], object], rounds: int) -> float:
    best = min(timeit.repeat(fn, number=rounds, repeat=5))
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    request, result = _samples()
    lax_request, lax_result = _lax(pyd.AttestationRequest), _lax(pyd.AttestationResult)
    p_req = pyd.AttestationRequest.model_validate_json(request)
    p_res = pyd.AttestationResult.model_validate_json(result)
    m_req = msgspec_decode(AttestationRequest, request)
    m_res = msgspec_decode(AttestationResult, result)
    assert p_req.model_dump_json(exclude_defaults=True).encode() == msgspec_encode(m_req)
    assert p_res.model_dump_json().encode() == msgspec_encode(m_res)  # the same wire
    cases: dict[str, Callable[[], object]] = {
        "msgspec request decode+validate (attestor)":
            lambda: msgspec_decode(AttestationRequest, request),
        "msgspec request encode (agent)": lambda: msgspec_encode(m_req),
        "msgspec result decode+validate (agent)":
            lambda: msgspec_decode(AttestationResult, result),
        "msgspec result encode (attestor)": lambda: msgspec_encode(m_res),
        "pydantic strict request decode+validate (json)":
            lambda: pyd.AttestationRequest.model_validate_json(request),
        "pydantic strict request json.loads+validate (fastapi)":
            lambda: pyd.AttestationRequest.model_validate(json.loads(request)),
        "pydantic lax request json.loads+validate (fastapi)":
            lambda: lax_request.model_validate(json.loads(request)),
        "pydantic strict request encode": p_req.model_dump_json,
        "pydantic strict result decode+validate":
            lambda: pyd.AttestationResult.model_validate_json(result),
        "pydantic lax result decode+validate":
            lambda: lax_result.model_validate_json(result),
        "pydantic strict result encode": p_res.model_dump_json,
    }
    print(f"request {len(request)} bytes, result {len(result)} bytes")
    for name, fn in cases.items():
        print(f"| {name} | {_time(fn, args.rounds):.1f} |")


if __name__ == "__main__":
    main()
