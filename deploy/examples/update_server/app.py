"""Reference update-delivery service: serves an artifact only to a device that just
proved a good boot, holding the key its attestation-result token is bound to.

Each request carries (see docs/gating.md):

- ``X-Edgeproof-Attestation``: the device's attestation-result token (EAR JWT);
- ``X-Edgeproof-Certificate`` / ``X-Edgeproof-Chain``: its workload certificate and
  issuing chain (base64 DER), which must chain to the attestor's CA;
- a request signature by that certificate's key, which lives in the device's TPM
  (``X-Edgeproof-Device``, ``-Timestamp``, ``-Nonce``, ``-Signature``, as in the
  attestor's device-signed requests).

The token is checked offline with ``identity.gate`` (signature against the
attestor's JWKS, issuer, expiry, maximum age, minimum EAR status, binding to the
presented certificate); the signature proves the caller holds the certificate's
key, so a copied token is useless; with ``gate_url`` set the attestor's gate API
confirms the decision (a quarantined device is refused while its token is valid).

Run: ``python -m uvicorn --factory deploy.examples.update_server.app:from_env``
with ``UPDATE_SERVER_*`` variables (see :func:`from_env`), behind TLS.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from identity import gate
from identity.errors import IdentityError
from identity.requestsig import parse_headers, verify_request

NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"


class Refused(Exception):
    def __init__(self, status: int, code: str, detail: str, reasons: list[str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.reasons = status, code, detail, reasons or []


@dataclass
class Config:
    artifacts: Path
    attestor_url: str
    issuer: str
    roots_pem: bytes  # the attestor's CA (GET /v1/ca)
    max_age: dt.timedelta = dt.timedelta(minutes=15)
    minimum_status: str = "affirming"
    gate_api_key: str | None = None  # confirm with POST /v1/gate/decisions when set
    request_window: int = 120
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _jwks: dict[str, Any] = field(default_factory=dict)
    _jwks_at: float = 0.0
    _seen: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def jwks(self, refresh: bool = False) -> dict[str, Any]:
        if refresh or not self._jwks or time.monotonic() - self._jwks_at > 300:
            answer = httpx.get(f"{self.attestor_url}/.well-known/jwks.json", timeout=5)
            answer.raise_for_status()
            self._jwks, self._jwks_at = answer.json(), time.monotonic()
        return self._jwks

    def fresh_nonce(self, nonce: str) -> bool:
        """A request nonce is accepted once within the signature window."""
        now = time.monotonic()
        with self._lock:
            for old in [n for n, t in self._seen.items() if t < now]:
                del self._seen[old]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now + 2 * self.request_window
            return True


def _b64(value: str | None, what: str) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(400, "request.malformed", f"{what} is not base64") from exc


def _certificate(request: Request, config: Config, now: dt.datetime) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(
            _b64(request.headers.get("x-edgeproof-certificate"), "the certificate"))
        chain_der = _b64(request.headers.get("x-edgeproof-chain", ""), "the chain")
        chain = [x509.load_der_x509_certificate(chain_der)] if chain_der else []
        roots = x509.load_pem_x509_certificates(config.roots_pem)
        PolicyBuilder().store(Store(roots)).time(now).build_client_verifier().verify(cert, chain)
    except (ValueError, VerificationError) as exc:
        raise Refused(401, "certificate.untrusted",
                      f"the certificate does not chain to the attestor's CA: {exc}") from exc
    return cert


def _check(request: Request, config: Config, name: str) -> gate.GateResult:
    now = config.clock()
    cert = _certificate(request, config, now)
    token = request.headers.get("x-edgeproof-attestation", "")
    need = gate.Requirements(issuer=config.issuer, max_age=config.max_age,
                             minimum_status=config.minimum_status)
    der = cert.public_bytes(serialization.Encoding.DER)
    try:
        try:
            result = gate.verify(token, config.jwks(), need, now, der)
        except IdentityError as exc:
            if exc.code != "gate.key_unknown":
                raise
            result = gate.verify(token, config.jwks(refresh=True), need, now, der)  # rotated
        signed = parse_headers(dict(request.headers))
        if signed is None:
            raise Refused(401, "auth.missing", "the request is not signed by the device key")
        if signed.device_id != result.device_id:
            raise Refused(403, "auth.invalid", "the request is signed for another device")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        verify_request(signed, cert.public_key(), "GET", path, b"", now,  # type: ignore[arg-type]
                       config.request_window)
    except IdentityError as exc:
        raise Refused(401 if exc.code.startswith("auth.") else 403, exc.code,
                      exc.detail) from exc
    if not config.fresh_nonce(signed.nonce):
        raise Refused(401, "auth.replay", "this signed request was already used")
    if config.gate_api_key:
        _confirm(config, result.device_id, f"update:{name}")
    return result


def _confirm(config: Config, device_id: str, action: str) -> None:
    try:
        answer = httpx.post(f"{config.attestor_url}/v1/gate/decisions",
                            json={"device_id": device_id, "action": action},
                            headers={"X-Api-Key": config.gate_api_key or ""}, timeout=5)
    except httpx.HTTPError as exc:
        raise Refused(503, "gate.unavailable", f"the gate API cannot be reached: {exc}") from exc
    if answer.status_code != 200:
        raise Refused(503, "gate.unavailable", f"the gate API answered {answer.status_code}")
    decision = answer.json()
    if decision.get("decision") != "allow":
        raise Refused(403, "gate.denied", f"the attestor denies {action}",
                      list(decision.get("reasons", [])))


def create_app(config: Config) -> FastAPI:
    app = FastAPI(title="edgeproof reference update server")

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"code": exc.code, "detail": exc.detail, "reasons": exc.reasons},
                            status_code=exc.status)

    @app.get("/updates/{name}")
    def update(name: str, request: Request) -> FileResponse:
        if not re.fullmatch(NAME, name) or not (config.artifacts / name).is_file():
            raise Refused(404, "update.unknown", f"no update {name!r}")
        _check(request, config, name)
        path = config.artifacts / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return FileResponse(path, headers={"X-Content-SHA256": digest},
                            media_type="application/octet-stream")

    return app


def from_env() -> FastAPI:
    """``UPDATE_SERVER_ARTIFACTS`` (directory), ``UPDATE_SERVER_ATTESTOR`` (URL),
    ``UPDATE_SERVER_ISSUER`` (the attestor's token issuer), ``UPDATE_SERVER_CA`` (its
    CA PEM file), optional ``UPDATE_SERVER_GATE_KEY`` (a gatekeeper API key) and
    ``UPDATE_SERVER_MAX_AGE`` (seconds)."""
    env = os.environ
    return create_app(Config(
        artifacts=Path(env["UPDATE_SERVER_ARTIFACTS"]), attestor_url=env["UPDATE_SERVER_ATTESTOR"],
        issuer=env["UPDATE_SERVER_ISSUER"], roots_pem=Path(env["UPDATE_SERVER_CA"]).read_bytes(),
        gate_api_key=env.get("UPDATE_SERVER_GATE_KEY"),
        max_age=dt.timedelta(seconds=int(env.get("UPDATE_SERVER_MAX_AGE", "900")))))
