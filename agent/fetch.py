"""`edge-agent fetch-update`: download an update from a service that serves only
attested devices, proving the credentials the agent installed.

The request carries the attestation-result token, the workload certificate and
its chain, and a signature by the workload key, made in the TPM (the same
canonical form as the attestor's device-signed requests). The body is streamed
into a temporary file beside ``out``, fsynced and renamed: ``out`` is the old
file or the complete new one.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tpm2_pytss.tsskey import TSSPrivKey

from agent.attest import TOKEN_FILE
from agent.client import DeviceSigner, Unreachable
from agent.config import AgentConfig
from agent.files import fsync_dir
from agent.tpm.device import Tpm

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


def credential_headers(config: AgentConfig, tpm: Tpm, method: str, path: str) -> dict[str, str]:
    out = config.output
    try:
        token = (out / TOKEN_FILE).read_text().strip()
        cert, chain = (out / "cert.pem").read_bytes(), (out / "chain.pem").read_bytes()
        key = TSSPrivKey.from_pem((out / "key.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise FetchRefused(0, "agent.no_credentials", f"no complete credential set with an "
                           f"attestation-result token in {out}: {exc}; run `edge-agent "
                           "attest --once`", []) from exc
    if not config.device_id:
        raise FetchRefused(0, "agent.not_provisioned", "this device is not provisioned", [])
    signer = DeviceSigner(config.device_id, lambda message: tpm.sign_digest(key, message))
    return {"X-Edgeproof-Attestation": token, "X-Edgeproof-Certificate": _der_b64(cert),
            "X-Edgeproof-Chain": _der_b64(chain),
            **signer.headers(method, path, b"", time.time())}


def fetch_update(config: AgentConfig, tpm: Tpm, url: str, out: Path,
                 ca_bundle: str | None = None, timeout: float = 60.0) -> Fetched:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = credential_headers(config, tpm, "GET", path)
    if parts.scheme == "https":
        import ssl

        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout,
            context=ssl.create_default_context(cafile=ca_bundle))
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            _refused(response)
        return _stream(response, out)
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"{url}: {exc}") from exc
    finally:
        conn.close()


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
