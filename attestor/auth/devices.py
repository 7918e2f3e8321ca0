"""Devices authenticate each request with a signature by their TPM-resident DevID key."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import RequestNonce
from identity.errors import AuthInvalid, AuthReplay
from identity.requestsig import SignedRequest, verify_request
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public


def devid_key(devid_public: bytes) -> ec.EllipticCurvePublicKey:
    key = public_key(parse_public(devid_public))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AuthInvalid("the device's DevID key is not an ECC key")
    return key


def authenticate(session: Session, signed: SignedRequest, method: str, path: str, body: bytes,
                 now: dt.datetime, window: int,
                 keys: dict[bytes, ec.EllipticCurvePublicKey]) -> Principal:
    """Verify the signature and consume the nonce (a replay fails on the primary key)."""
    device = queries.find_device(session, signed.device_id)
    if device is None:
        raise AuthInvalid("unknown device")
    key = keys.get(device.devid_public)
    if key is None:
        key = keys[device.devid_public] = devid_key(device.devid_public)
    verify_request(signed, key, method, path, body, now, window)
    try:
        with session.begin_nested():
            session.add(RequestNonce(device_id=device.id, nonce=signed.nonce,
                                     expires_at=now + dt.timedelta(seconds=2 * window)))
    except IntegrityError as exc:
        raise AuthReplay("this signed request was already used") from exc
    if int(now.timestamp()) % 64 == 0:  # now and then, forget nonces past their window
        session.execute(sa.delete(RequestNonce).where(col(RequestNonce.expires_at) < now))
    return Principal("device", device.id, device_id=device.id)
