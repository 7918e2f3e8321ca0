"""Reference update-delivery service: serves an artifact only to a device that just
proved a good boot, holding the key its attestation-result token is bound to.

Each request carries the device's attestation-result token (EAR JWT) in
``X-Edgeproof-Attestation`` and proves the TPM-resident workload key the token is bound
to, in one of two ways (``client_auth``, see docs/gating.md):

- ``mtls`` (default): the workload certificate is the TLS client certificate. The TLS
  layer (``python -m deploy.examples.update_server``) requires one that chains to the
  attestor's CA; uvicorn does not pass it to the app, so ``tls.py`` adds the ASGI TLS
  extension, and the app verifies the chain again and binds the token to it. The TPM
  signed the handshake, so a copied token or certificate is useless without the TPM.
- ``signature``: for a server behind a proxy that terminates TLS. The request carries
  the workload certificate and chain (``X-Edgeproof-Certificate`` /
  ``X-Edgeproof-Chain``, base64 DER) and a signature by its key (``X-Edgeproof-Device``,
  ``-Timestamp``, ``-Nonce``, ``-Signature``, as in the attestor's device-signed
  requests); nonces are accepted once.

The token is checked offline with ``identity.gate`` (signature against the attestor's
JWKS, issuer, expiry, maximum age, minimum EAR status, binding to the presented
certificate); with ``gate_api_key`` set the attestor's gate API confirms the decision
(a quarantined device is refused while its token is valid).

Run: ``python -m deploy.examples.update_server`` with ``UPDATE_SERVER_*`` variables
(see :func:`from_env` and ``__main__.py``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    client_auth: Literal["mtls", "signature"] = "mtls"
    attestor_tls_ca: Path | None = None  # verifies the attestor's HTTPS (default: system)
    request_window: int = 120
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _jwks: dict[str, Any] = field(default_factory=dict)
    _jwks_at: float = 0.0
    _seen: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def jwks(self, refresh: bool = False) -> dict[str, Any]:
        if refresh or not self._jwks or time.monotonic() - self._jwks_at > 300:
            answer = httpx.get(f"{self.attestor_url}/.well-known/jwks.json", timeout=5,
                               verify=self.verify)
            answer.raise_for_status()
            self._jwks, self._jwks_at = answer.json(), time.monotonic()
        return self._jwks

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.attestor_tls_ca) if self.attestor_tls_ca \
            else True

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


def _verified(cert: x509.Certificate, chain: list[x509.Certificate], config: Config,
              now: dt.datetime) -> x509.Certificate:
    try:
        roots = x509.load_pem_x509_certificates(config.roots_pem)
        PolicyBuilder().store(Store(roots)).time(now).build_client_verifier().verify(cert, chain)
    except (ValueError, VerificationError) as exc:
        raise Refused(401, "certificate.untrusted",
                      f"the certificate does not chain to the attestor's CA: {exc}") from exc
    return cert


def _certificate(request: Request, config: Config, now: dt.datetime) -> x509.Certificate:
    """Signature mode: the certificate and chain the request carries in headers."""
    try:
        cert = x509.load_der_x509_certificate(
            _b64(request.headers.get("x-edgeproof-certificate"), "the certificate"))
        chain_der = _b64(request.headers.get("x-edgeproof-chain", ""), "the chain")
        chain = [x509.load_der_x509_certificate(chain_der)] if chain_der else []
    except ValueError as exc:
        raise Refused(401, "certificate.untrusted", f"unreadable certificate: {exc}") from exc
    return _verified(cert, chain, config, now)


def _client_certificate(request: Request, config: Config, now: dt.datetime) -> x509.Certificate:
    """mTLS mode: the client certificate chain the TLS layer verified (ASGI TLS extension)."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    pems = list(tls.get("client_cert_chain") or [])
    if not pems:
        raise Refused(401, "certificate.missing", "no client certificate: this server "
                      "requires mutual TLS with the device's workload certificate")
    try:
        certs = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    except ValueError as exc:
        raise Refused(401, "certificate.untrusted", f"unreadable certificate: {exc}") from exc
    return _verified(certs[0], certs[1:], config, now)


def _check(request: Request, config: Config, name: str) -> gate.GateResult:
    now = config.clock()
    mtls = config.client_auth == "mtls"
    cert = (_client_certificate if mtls else _certificate)(request, config, now)
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
        if not mtls:
            _signed_by_the_key(request, config, cert, result, now)
    except IdentityError as exc:
        raise Refused(401 if exc.code.startswith("auth.") else 403, exc.code,
                      exc.detail) from exc
    if config.gate_api_key:
        _confirm(config, result.device_id, f"update:{name}")
    return result


def _signed_by_the_key(request: Request, config: Config, cert: x509.Certificate,
                       result: gate.GateResult, now: dt.datetime) -> None:
    """Signature mode: the request is signed by the certificate's key, once."""
    signed = parse_headers(dict(request.headers))
    if signed is None:
        raise Refused(401, "auth.missing", "the request is not signed by the device key")
    if signed.device_id != result.device_id:
        raise Refused(403, "auth.invalid", "the request is signed for another device")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    verify_request(signed, cert.public_key(), "GET", path, b"", now,  # type: ignore[arg-type]
                   config.request_window)
    if not config.fresh_nonce(signed.nonce):
        raise Refused(401, "auth.replay", "this signed request was already used")


def _confirm(config: Config, device_id: str, action: str) -> None:
    try:
        answer = httpx.post(f"{config.attestor_url}/v1/gate/decisions",
                            json={"device_id": device_id, "action": action},
                            headers={"X-Api-Key": config.gate_api_key or ""}, timeout=5,
                            verify=config.verify)
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


def config_from_env() -> Config:
    """``UPDATE_SERVER_ARTIFACTS`` (directory), ``UPDATE_SERVER_ATTESTOR`` (URL),
    ``UPDATE_SERVER_ISSUER`` (the attestor's token issuer), ``UPDATE_SERVER_CA`` (its
    CA PEM file, ``GET /v1/ca``), optional ``UPDATE_SERVER_CLIENT_AUTH`` (``mtls``, the
    default, or ``signature``), ``UPDATE_SERVER_GATE_KEY`` (a gatekeeper API key),
    ``UPDATE_SERVER_MAX_AGE`` (seconds) and ``UPDATE_SERVER_ATTESTOR_CA`` (a CA bundle for
    the attestor's HTTPS; default the system store)."""
    env = os.environ
    client_auth = env.get("UPDATE_SERVER_CLIENT_AUTH", "mtls")
    if client_auth not in ("mtls", "signature"):
        raise ValueError(f"UPDATE_SERVER_CLIENT_AUTH={client_auth!r}: mtls or signature")
    attestor_ca = env.get("UPDATE_SERVER_ATTESTOR_CA")
    return Config(
        artifacts=Path(env["UPDATE_SERVER_ARTIFACTS"]), attestor_url=env["UPDATE_SERVER_ATTESTOR"],
        issuer=env["UPDATE_SERVER_ISSUER"], roots_pem=Path(env["UPDATE_SERVER_CA"]).read_bytes(),
        gate_api_key=env.get("UPDATE_SERVER_GATE_KEY"),
        max_age=dt.timedelta(seconds=int(env.get("UPDATE_SERVER_MAX_AGE", "900"))),
        client_auth="mtls" if client_auth == "mtls" else "signature",
        attestor_tls_ca=Path(attestor_ca) if attestor_ca else None)


def from_env() -> FastAPI:
    """The app from ``UPDATE_SERVER_*`` (:func:`config_from_env`), for an ASGI server that
    brings its own TLS setup; ``python -m deploy.examples.update_server`` sets up mTLS."""
    return create_app(config_from_env())
