"""Signed device requests: what the device's DevID key signs, and the check of it.

The canonical string binds the method, the path with its query, a digest of the
body, the time and a fresh nonce to the device id, so a captured request cannot
be replayed elsewhere, later, or with another body. Both sides import this.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from identity.errors import AuthExpired, AuthInvalid, AuthMissing

HEADER_DEVICE = "X-Edgeproof-Device"
HEADER_TIME = "X-Edgeproof-Timestamp"
HEADER_NONCE = "X-Edgeproof-Nonce"
HEADER_SIGNATURE = "X-Edgeproof-Signature"
VERSION = "edgeproof-request-v1"
_NONCE = re.compile(r"[0-9a-f]{32,64}")
_ES256 = ec.ECDSA(hashes.SHA256())  # immutable: built once, not per request


def canonical(method: str, path: str, body: bytes, timestamp: int, nonce: str,
              device_id: str) -> bytes:
    return "\n".join((VERSION, method.upper(), path, hashlib.sha256(body).hexdigest(),
                      str(timestamp), nonce, device_id)).encode()


@dataclass(frozen=True)
class SignedRequest:
    device_id: str
    timestamp: int
    nonce: str
    signature: bytes


def parse_headers(headers: dict[str, str]) -> SignedRequest | None:
    """The signature headers, or None when the request carries none."""
    lowered = {k.lower(): v for k, v in headers.items()}
    device = lowered.get(HEADER_DEVICE.lower())
    if device is None:
        return None
    try:
        timestamp = int(lowered[HEADER_TIME.lower()])
        nonce = lowered[HEADER_NONCE.lower()]
        signature = bytes.fromhex(lowered[HEADER_SIGNATURE.lower()])
    except (KeyError, ValueError) as exc:
        raise AuthMissing("a signed device request needs timestamp, nonce and signature "
                          "headers") from exc
    if not _NONCE.fullmatch(nonce):
        raise AuthInvalid("the request nonce must be 32-64 lowercase hex characters")
    return SignedRequest(device, timestamp, nonce, signature)


def verify_request(request: SignedRequest, key: ec.EllipticCurvePublicKey, method: str,
                   path: str, body: bytes, now: dt.datetime, window: int) -> None:
    """The time is within ``window`` seconds of ``now`` and the DevID key signed it all."""
    if abs(now.timestamp() - request.timestamp) > window:
        raise AuthExpired(f"the request's timestamp is more than {window} s from the "
                          "attestor's clock")
    message = canonical(method, path, body, request.timestamp, request.nonce,
                        request.device_id)
    try:
        key.verify(request.signature, message, _ES256)
    except InvalidSignature as exc:
        raise AuthInvalid("the request signature does not verify with the device's "
                          "DevID key") from exc
