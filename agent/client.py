"""HTTP client for the attestor's API v1; problem responses become AttestorError."""

from __future__ import annotations

from typing import Any

import httpx


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class AttestorClient:
    def __init__(self, base_url: str, ca_bundle: str | None = None,
                 timeout: float = 30.0) -> None:
        verify: Any = ca_bundle if ca_bundle else True
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AttestorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body or {})
        except httpx.HTTPError as exc:
            raise Unreachable(f"{self._http.base_url}{path}: {exc}") from exc
        if response.is_success:
            data: dict[str, Any] = response.json()
            return data
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        raise AttestorError(
            response.status_code, str(problem.get("code", "http.error")),
            str(problem.get("detail") or problem.get("title") or response.reason_phrase),
            list(problem.get("codes") or []), list(problem.get("checks") or []),
            _retry_after(response),
        )

    def enroll(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("/v1/enrollments", body)

    def activate(self, enrollment_id: str, secret_b64: str) -> dict[str, Any]:
        return self._post(f"/v1/enrollments/{enrollment_id}/activation", {"secret": secret_b64})

    def challenge(self, device_id: str) -> dict[str, Any]:
        return self._post(f"/v1/devices/{device_id}/challenge")

    def attest(self, device_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._post(f"/v1/devices/{device_id}/attestations", body)
