"""Devices authenticate each request with a signature by their TPM-resident DevID key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class RequestProof:
    """A device-signed request, parsed but not yet checked: the challenge and attestation
    services check it in their own first transaction, with the device row they read
    anyway (no transaction and no query of its own). ``admit`` runs once the device is
    authenticated (its rate limit): it returns the refusal, if any, instead of raising,
    so the request nonce stays spent."""

    signed: SignedRequest
    method: str
    path: str
    body: bytes
    window: int
    admit: Callable[[Principal], Exception | None] = lambda _: None


def authenticate(conn: sa.Connection, signed: SignedRequest, method: str, path: str,
                 body: bytes, now: dt.datetime, window: int,
                 keys: dict[bytes, ec.EllipticCurvePublicKey]) -> Principal:
    """Verify the signature and spend the nonce (a replay finds it spent), in the caller's
    transaction: one read of the DevID key, one insert-if-absent."""
    proof = RequestProof(signed, method, path, body, window)
    principal = verify_proof(proof, queries.devid_public_of(conn, signed.device_id), now,
                             keys)
    spend_proof(conn, proof, now)
    return principal


def verify_proof(proof: RequestProof, devid_public: bytes | None, now: dt.datetime,
                 keys: dict[bytes, ec.EllipticCurvePublicKey]) -> Principal:
    """The signature of a request by the device's DevID key (``devid_public``: its
    enrolled public area, None for no such device) and its time; no I/O."""
    signed = proof.signed
    if devid_public is None:
        raise AuthInvalid("unknown device")
    key = keys.get(devid_public)
    if key is None:
        if len(keys) > 100_000:
            keys.clear()
        key = keys[devid_public] = devid_key(devid_public)
    verify_request(signed, key, proof.method, proof.path, proof.body, now, proof.window)
    return Principal("device", signed.device_id, device_id=signed.device_id)


def spend_proof(conn: sa.Connection, proof: RequestProof, now: dt.datetime) -> None:
    """Spend the request's nonce in the caller's transaction (a replay finds it spent)."""
    signed = proof.signed
    if not queries.spend_request_nonce(conn, signed.device_id, signed.nonce,
                                       now + dt.timedelta(seconds=2 * proof.window)):
        raise AuthReplay("this signed request was already used")
