"""The attestor's rotating signing keys, shared by every replica through the database.

The newest active key signs bearer tokens, attestation-result tokens and audit
checkpoints. ``attestor keys rotate`` adds a key and retires the previous one:
retired keys stay in the JWKS for ``overlap`` (the longest lifetime of anything
they signed), so tokens signed before a rotation verify until they expire, and
stay available to the audit verifier for good. Each replica re-reads the ring
every ``REFRESH_SECONDS``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from attestor.backends.signing import SigningKey, SigningKeyError, jwk_of
from attestor.db import signing_queries
from attestor.db.models import SigningKeyRow

REFRESH_SECONDS = 30.0


@dataclass(frozen=True)
class RingKey:
    kid: str
    public: ec.EllipticCurvePublicKey
    created_at: dt.datetime
    retired_at: dt.datetime | None

    def jwk(self) -> dict[str, str]:
        return jwk_of(self.kid, self.public)


def encrypted_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(passphrase))


class Keyring:
    def __init__(self, engine: sa.Engine, passphrase: bytes) -> None:
        self._engine = engine
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._current: SigningKey | None = None
        self._keys: dict[str, RingKey] = {}

    def _session(self) -> Session:
        return Session(self._engine)

    def bootstrap(self, key: SigningKey, now: dt.datetime) -> None:
        """Put the data directory's key in the ring if the ring is empty (first start)."""
        try:
            with self._session() as session, session.begin():
                if not signing_queries.signing_keys(session):
                    signing_queries.add_signing_key(session, SigningKeyRow(
                        kid=key.kid, private_pem=encrypted_pem(key.key, self._passphrase),
                        created_at=now))
        except IntegrityError:
            pass  # another replica starting at the same moment put the same key in
        self.refresh(force=True)

    def rotate(self, session: Session, now: dt.datetime) -> tuple[str, list[str]]:
        """A new active key; the previous ones retired at ``now``. (new kid, retired kids)"""
        new = SigningKey(ec.generate_private_key(ec.SECP256R1()))
        signing_queries.add_signing_key(session, SigningKeyRow(
            kid=new.kid, private_pem=encrypted_pem(new.key, self._passphrase), created_at=now))
        retired = signing_queries.retire_active_keys(session, now, keep=new.kid)
        self._loaded_at = -1e9  # re-read on next use
        return new.kid, retired

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
                return
            with self._session() as session:
                rows = list(signing_queries.signing_keys(session))
            keys: dict[str, RingKey] = {}
            current: SigningKey | None = self._current
            active = next((r for r in rows if r.retired_at is None), None)
            for row in rows:
                known = self._keys.get(row.kid)
                public = known.public if known else _public(row, self._passphrase)
                keys[row.kid] = RingKey(row.kid, public, row.created_at, row.retired_at)
            if active is None:
                current = None
            elif current is None or current.kid != active.kid:
                current = SigningKey(_private(active, self._passphrase))
            self._keys, self._current = keys, current
            self._loaded_at = time.monotonic()

    @property
    def current(self) -> SigningKey:
        self.refresh()
        if self._current is None:
            raise SigningKeyError("the signing keyring has no active key")
        return self._current

    def active(self) -> RingKey | None:
        """The signing key in force with its creation time (None: the ring has none)."""
        self.refresh()
        return next((k for k in self._keys.values() if k.retired_at is None
                     and self._current is not None and k.kid == self._current.kid), None)

    def public(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        self.refresh()
        key = self._keys.get(kid)
        if key is None:  # perhaps rotated by another replica a moment ago
            self.refresh(force=True)
            key = self._keys.get(kid)
        return key.public if key else None

    def all_public(self) -> dict[str, ec.EllipticCurvePublicKey]:
        self.refresh()
        return {kid: key.public for kid, key in self._keys.items()}

    def published(self, now: dt.datetime, overlap: dt.timedelta) -> list[RingKey]:
        """Keys a relying party may verify with: active ones, and retired ones for
        ``overlap`` after their retirement."""
        self.refresh()
        return [k for k in self._keys.values()
                if k.retired_at is None or k.retired_at + overlap > now]


def _private(row: SigningKeyRow, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(row.private_pem, passphrase)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"signing key {row.kid} cannot be decrypted: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningKeyError(f"signing key {row.kid} is not an EC key")
    return key


def _public(row: SigningKeyRow, passphrase: bytes) -> ec.EllipticCurvePublicKey:
    return _private(row, passphrase).public_key()
