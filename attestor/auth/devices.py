"""Devices authenticate each request with a signature by their TPM-resident DevID key."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from attestor.auth import Principal
from attestor.db import queries
from identity.errors import AuthInvalid, AuthReplay
from identity.requestsig import SignedRequest, verify_request
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public


def devid_key(devid_public: bytes) -> ec.EllipticCurvePublicKey:
    key = public_key(parse_public(devid_public))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuthInvalid("the device's DevID key is not an ECC key")
    return key


def authenticate(conn: sa.Connection, signed: SignedRequest, method: str, path: str,
                 body: bytes, now: dt.datetime, window: int,
                 keys: dict[bytes, ec.EllipticCurvePublicKey]) -> Principal:
    """Verify the signature and spend the nonce (a replay finds it spent), in the caller's
    transaction: one read of the DevID key, one insert-if-absent."""
    devid_public = queries.devid_public_of(conn, signed.device_id)
    if devid_public is None:
        raise AuthInvalid("unknown device")
    key = keys.get(devid_public)
    if key is None:
        if len(keys) > 100_000:
            keys.clear()
        key = keys[devid_public] = devid_key(devid_public)
    verify_request(signed, key, method, path, body, now, window)
    if not queries.spend_request_nonce(conn, signed.device_id, signed.nonce,
                                       now + dt.timedelta(seconds=2 * window)):
        raise AuthReplay("this signed request was already used")
    return Principal("device", signed.device_id, device_id=signed.device_id)
