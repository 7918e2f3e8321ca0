"""Challenge nonces that need no database write to issue: authenticated and expiring.

A nonce is 32 bytes (it goes into TPM2_Quote's and TPM2_Certify's qualifying data, whose
limit on a TPM with SHA-256 as its largest digest is 32 bytes)::

    salt (8 random) | expires (4, big-endian Unix seconds) | issued (12) | bound (8)

``issued`` is HMAC-SHA-256(key, "issued" | salt | expires) cut to 96 bits: only the
holder of the attestor's key makes one that verifies; ``bound`` is HMAC-SHA-256(key,
"device" | device id | salt | expires) cut to 64 bits: it was issued to this device.
Nothing here is secret from the device; what the MACs give is that the attestor issued
this value, for this device, until then. Single use is not in the nonce: the attestor
spends it with an insert-if-absent when the attestation arrives (attestor/db/queries.py),
so a replay finds it spent, on every replica. A forged or altered nonce is
``nonce.unknown``, one issued to another device ``nonce.wrong_device``, a late one
``nonce.expired``, as when the nonces lived in the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from identity.errors import NonceExpired, NonceUnknown, NonceWrongDevice

SIZE = 32
KEY_SIZE = 32
_SALT, _EXPIRES, _ISSUED, _BOUND = 8, 4, 12, 8
_DOMAIN = b"edgeproof-challenge-v1\0"


def derive_key(secret: bytes, context: bytes) -> bytes:
    """The MAC key from an attestor secret every replica holds (its CA passphrase) and a
    context naming this deployment (its root certificate): replicas agree, deployments
    that share a passphrase do not."""
    return hmac.new(secret, _DOMAIN + b"key\0" + context, hashlib.sha256).digest()


def _tags(key: bytes, device_id: str, head: bytes) -> tuple[bytes, bytes]:
    issued = hmac.new(key, _DOMAIN + b"issued\0" + head, hashlib.sha256).digest()[:_ISSUED]
    bound = hmac.new(key, _DOMAIN + b"device\0" + device_id.encode() + b"\0" + head,
                     hashlib.sha256).digest()[:_BOUND]
    return issued, bound


def issue(key: bytes, device_id: str, expires_at: dt.datetime,
          salt: bytes | None = None) -> bytes:
    """A nonce for ``device_id`` valid until ``expires_at`` (whole seconds, rounded down)."""
    salt = secrets.token_bytes(_SALT) if salt is None else salt
    if len(key) < 16 or len(salt) != _SALT:
        raise ValueError("a challenge key of 16+ bytes and an 8-byte salt")
    head = salt + int(expires_at.timestamp()).to_bytes(_EXPIRES, "big")
    issued, bound = _tags(key, device_id, head)
    return head + issued + bound


def expiry(nonce: bytes) -> dt.datetime:
    """When ``nonce`` expires, as it says (check it first)."""
    seconds = int.from_bytes(nonce[_SALT:_SALT + _EXPIRES], "big")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def check(key: bytes, nonce: bytes, device_id: str, now: dt.datetime) -> dt.datetime:
    """Raise unless this attestor issued ``nonce`` to ``device_id`` and it has not
    expired at ``now``; returns its expiry (how long the spent record must be kept)."""
    if len(nonce) != SIZE:
        raise NonceUnknown("the nonce was never issued by this attestor")
    head, issued, bound = (nonce[:_SALT + _EXPIRES], nonce[_SALT + _EXPIRES:-_BOUND],
                           nonce[-_BOUND:])
    want_issued, want_bound = _tags(key, device_id, head)
    if not hmac.compare_digest(issued, want_issued):
        raise NonceUnknown("the nonce was never issued by this attestor")
    if not hmac.compare_digest(bound, want_bound):
        raise NonceWrongDevice("the nonce was issued to another device")
    expires = expiry(nonce)
    if expires <= now:
        raise NonceExpired("the nonce has expired; ask for a new challenge")
    return expires
