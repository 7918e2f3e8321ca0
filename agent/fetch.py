"""`edge-agent fetch-update`: download an update from a service that serves only
attested devices, proving the credentials the agent installed.

Two ways to prove the workload key, which lives in the TPM:

- ``mtls`` (default): mutual TLS; the workload certificate is the client certificate and
  the TPM signs the handshake (agent/tpm/openssl.py: OpenSSL's TPM provider, which needs
  a resource manager). The request carries only the attestation-result token.
- ``signature``: for a server behind a proxy that terminates TLS (so it never sees a
  client certificate): the request carries the token, the workload certificate and its
  chain, and a signature by the workload key made in the TPM (the same canonical form as
  the attestor's device-signed requests).

The body is streamed into a temporary file beside ``out``, fsynced and renamed: ``out``
is the old file or the complete new one.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tpm2_pytss.tsskey import TSSPrivKey

from agent.attest import TOKEN_FILE
from agent.client import DeviceSigner, TlsRefused, Unreachable, tls_refused
from agent.config import AgentConfig
from agent.files import fsync_dir
from agent.tpm.device import Tpm

ClientAuth = Literal["mtls", "signature"]
CHUNK = 64 * 1024


class FetchRefused(Exception):
    def __init__(self, status: int, code: str, detail: str, reasons: list[str]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.reasons = status, code, detail, reasons


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str


def _der_b64(pem: bytes) -> str:
    certs = x509.load_pem_x509_certificates(pem)
    return base64.b64encode(b"".join(c.public_bytes(serialization.Encoding.DER)
                                     for c in certs)).decode()


def _token(config: AgentConfig) -> str:
    out = config.output
    try:
        token = (out / TOKEN_FILE).read_text().strip()
        for name in ("cert.pem", "chain.pem", "key.pem"):
            if not (out / name).is_file():
                raise FileNotFoundError(f"{out / name} is missing")
    except OSError as exc:
        raise FetchRefused(0, "agent.no_credentials", f"no complete credential set with an "
                           f"attestation-result token in {out}: {exc}; run `edge-agent "
                           "attest --once`", []) from exc
    if not config.device_id:
        raise FetchRefused(0, "agent.not_provisioned", "this device is not provisioned", [])
    return token


def credential_headers(config: AgentConfig, tpm: Tpm, method: str, path: str) -> dict[str, str]:
    """Signature mode: the token, the certificate and chain, and a TPM request signature."""
    out = config.output
    token = _token(config)
    try:
        cert, chain = (out / "cert.pem").read_bytes(), (out / "chain.pem").read_bytes()
        key = TSSPrivKey.from_pem((out / "key.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise FetchRefused(0, "agent.no_credentials", f"unusable credential set in {out}: "
                           f"{exc}", []) from exc
    signer = DeviceSigner(str(config.device_id), lambda message: tpm.sign_digest(key, message))
    return {"X-Edgeproof-Attestation": token, "X-Edgeproof-Certificate": _der_b64(cert),
            "X-Edgeproof-Chain": _der_b64(chain),
            **signer.headers(method, path, b"", time.time())}


def fetch_update(config: AgentConfig, url: str, out: Path, ca_bundle: str | None = None, *,
                 auth: ClientAuth = "mtls", tpm: Tpm | None = None,
                 timeout: float = 60.0) -> Fetched:
    """Download ``url`` to ``out``; FetchRefused when the server says no, TlsRefused when
    the TLS session fails (server certificate, or our client certificate refused),
    Unreachable otherwise. ``tpm`` signs in signature mode; mTLS opens its own."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    context: ssl.SSLContext | None = None
    if auth == "mtls":
        if parts.scheme != "https":
            raise ValueError(f"mutual TLS needs an https:// URL, not {url!r} (a server "
                             "behind a TLS-terminating proxy: --client-auth signature)")
        from agent.tpm.openssl import client_context

        headers = {"X-Edgeproof-Attestation": _token(config)}
        o = config.output
        context = client_context(o / "cert.pem", o / "chain.pem", o / "key.pem", config.tcti,
                                 ca_bundle)
    else:
        if tpm is None:
            raise ValueError("signature mode needs the TPM session that signs")
        headers = credential_headers(config, tpm, "GET", path)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_bundle)
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                    context=context)
        if context is not None
        else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            _refused(response)
        return _stream(response, out)
    except ssl.SSLError as exc:
        if auth == "mtls" and isinstance(exc, ssl.SSLEOFError):
            raise _closed_on_us(url, config, ca_bundle) from exc
        raise tls_refused(url, exc, ca_bundle, who="update server") from exc
    except ConnectionResetError as exc:  # http.client.RemoteDisconnected included
        if auth == "mtls":
            raise _closed_on_us(url, config, ca_bundle) from exc
        raise Unreachable(f"{url}: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{url}: {exc}") from exc
    finally:
        conn.close()


def _closed_on_us(url: str, config: AgentConfig, ca_bundle: str | None) -> TlsRefused:
    """A TLS server that does not accept a client certificate often sends no alert (Python's
    asyncio servers among them): it completes the handshake (TLS 1.3), then closes the
    connection without an answer. Say so, with the issuer the server should trust."""
    try:
        issuer = x509.load_pem_x509_certificate(
            (config.output / "cert.pem").read_bytes()).issuer.rfc4514_string()
    except (OSError, ValueError):
        issuer = "unknown"
    return TlsRefused(url, "tls.client_certificate_refused", "the server closed the "
                      "connection without an answer after the TLS handshake, which is how it "
                      f"refuses a client certificate it does not accept (ours is issued by "
                      f"{issuer}; it must trust the attestor's CA)", ca_bundle,
                      who="update server")


def _refused(response: http.client.HTTPResponse) -> None:
    try:
        problem = json.loads(response.read(64 * 1024))
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    raise FetchRefused(response.status, str(problem.get("code", "http.error")),
                       str(problem.get("detail", response.reason)),
                       [str(r) for r in problem.get("reasons", [])])


def _stream(response: http.client.HTTPResponse, out: Path) -> Fetched:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as handle:
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        announced = response.getheader("X-Content-SHA256")
        if announced and announced != digest.hexdigest():
            raise Unreachable("the download does not match its announced SHA-256")
        os.replace(tmp, out)
        fsync_dir(out.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return Fetched(out, size, digest.hexdigest())
