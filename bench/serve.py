"""Helpers the benchmarks share for attestor processes they start."""

from __future__ import annotations

import time

import httpx


def wait_healthy(url: str, timeout: float = 20.0) -> None:
    """Until ``url``/healthz answers 200; SystemExit after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the attestor at {url} did not become healthy")
