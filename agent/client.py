"""HTTP client for the attestor's API v1; problem responses become AttestorError."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from identity.requestsig import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    canonical,
)


class AttestorError(Exception):
    """The attestor refused (4xx) or failed (5xx); carries its reason codes."""

    def __init__(self, status: int, code: str, detail: str, codes: list[str],
                 checks: list[dict[str, Any]], retry_after: float | None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.codes = codes or [code]
        self.checks = checks
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429


class Unreachable(Exception):
    """No answer from the attestor (connection refused, timeout, TLS failure)."""


class MalformedAnswer(Unreachable):
    """The attestor (or something in front of it) answered with an unusable body."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeviceSigner:
    """Signs requests with the device's DevID key (in the TPM)."""

    device_id: str
    sign: Callable[[bytes], bytes]

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        nonce = secrets.token_hex(16)
        timestamp = int(now)
        message = canonical(method, path, body, timestamp, nonce, self.device_id)
        return {HEADER_DEVICE: self.device_id, HEADER_TIME: str(timestamp),
                HEADER_NONCE: nonce, HEADER_SIGNATURE: self.sign(message).hex()}


class AttestorClient:
    """``api_key`` or ``token`` authenticate a factory station; ``signer`` a device."""

    def __init__(self, base_url: str, ca_bundle: str | None = None, timeout: float = 30.0,
                 *, api_key: str | None = None, token: str | None = None,
                 signer: DeviceSigner | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        verify: Any = ca_bundle if ca_bundle else True
        self.clock = clock
        self._station: dict[str, str] = {}
        if api_key:
            self._station["X-Api-Key"] = api_key
        elif token:
            self._station["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, verify=verify)
        self.signer = signer

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AttestorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any] | None = None,
              signed: bool = False) -> dict[str, Any]:
        content = json.dumps(body or {}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if signed:  # one credential per request: the device's own
            if self.signer is None:
                raise Unreachable("no device signer: this device is not provisioned")
            headers |= self.signer.headers("POST", path, content, self.clock())
        else:
            headers |= self._station
        try:
            response = self._http.post(path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{self._http.base_url}{path}: {exc}") from exc
        if response.is_success:
            try:
                data = response.json()
            except ValueError as exc:
                raise MalformedAnswer(f"{path}: the attestor's answer is not JSON "
                                  f"({response.status_code}, {len(response.content)} bytes)"
                                  ) from exc
            if not isinstance(data, dict):
                raise MalformedAnswer(f"{path}: the attestor's answer is not a JSON object")
            return data
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        raise AttestorError(
            response.status_code, str(problem.get("code", "http.error")),
            str(problem.get("detail") or problem.get("title") or response.reason_phrase),
            list(problem.get("codes") or []), list(problem.get("checks") or []),
            _retry_after(response),
        )

    def health(self) -> dt.datetime | None:
        """GET /healthz; the attestor's clock (its Date header), Unreachable if no answer."""
        try:
            response = self._http.get("/healthz", timeout=5.0)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{self._http.base_url}/healthz: {exc}") from exc
        if not response.is_success:
            raise Unreachable(f"{self._http.base_url}/healthz answered {response.status_code}")
        date = response.headers.get("date")
        try:
            return email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            return None

    def enroll(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("/v1/enrollments", body)

    def activate(self, enrollment_id: str, secret_b64: str) -> dict[str, Any]:
        return self._post(f"/v1/enrollments/{enrollment_id}/activation", {"secret": secret_b64})

    def challenge(self, device_id: str) -> dict[str, Any]:
        return self._post(f"/v1/devices/{device_id}/challenge", signed=True)

    def attest(self, device_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/v1/devices/{device_id}/attestations", body, signed=True)
