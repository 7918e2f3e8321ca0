"""Embedded secret store: values AES-256-GCM encrypted in the database.

The key lives in a file (0600) outside the database, so a copy of the database
alone reveals nothing. The name and version are authenticated as associated
data, so a ciphertext moved to another name or version fails to decrypt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import Session, col

from attestor.backends.files import write_private
from attestor.backends.secrets import SecretSubject, SecretValue
from attestor.db import queries
from attestor.db.models import StoredSecret
from identity.errors import ServiceError


class _Sealed(NamedTuple):
    """A stored version's fields that opening it needs (a ``StoredSecret`` has them too)."""

    name: str
    version: int
    key_id: str
    nonce: bytes
    ciphertext: bytes


_LATEST = (sa.select(col(StoredSecret.version), col(StoredSecret.key_id),
                     col(StoredSecret.nonce), col(StoredSecret.ciphertext))
           .where(col(StoredSecret.name) == sa.bindparam("n"))
           .order_by(col(StoredSecret.version).desc()).limit(1))

SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
KEY_SIZE = 32
MAX_SECRET = 64 * 1024


class SecretStoreError(ServiceError):
    code = "secrets.embedded"


def _aad(name: str, version: int) -> bytes:
    return f"edgeproof/secret/v1\x00{name}\x00{version}".encode()


def next_key_file(path: Path) -> Path:
    """Where a rotation writes the new key before it replaces ``path``."""
    return path.with_name(path.name + ".next")


class EmbeddedSecretStore:
    """Writes under the current key; reads under any key it holds. A rotation in
    progress (``<key>.next`` present) makes the next key current, so an interrupted
    ``rotate-key`` loses nothing and a rerun completes it."""

    def __init__(self, engine: sa.Engine, key: bytes, *, others: tuple[bytes, ...] = (),
                 key_file: Path | None = None) -> None:
        for k in (key, *others):
            if len(k) != KEY_SIZE:
                raise SecretStoreError("the secret-store key must be 32 bytes")
        self._engine = engine
        self._key_file = key_file
        self._keys = {_key_id(k): AESGCM(k) for k in (key, *others)}
        self.key_id = _key_id(key)

    @staticmethod
    def create_key(path: Path) -> None:
        write_private(path, os.urandom(KEY_SIZE))

    @classmethod
    def from_key_file(cls, engine: sa.Engine, path: Path) -> EmbeddedSecretStore:
        key, others = _load_keys(path)
        return cls(engine, key, others=others, key_file=path)

    def put(self, name: str, value: bytes, now: dt.datetime) -> int:
        """Store a new version of ``name``; returns the version number."""
        if not SECRET_NAME.fullmatch(name) or ".." in name:
            raise SecretStoreError(f"invalid secret name {name!r}")
        if len(value) > MAX_SECRET:
            raise SecretStoreError(f"secret of {len(value)} bytes exceeds {MAX_SECRET}")
        with Session(self._engine) as session, session.begin():
            latest = queries.latest_secret(session, name)
            version = (latest.version if latest else 0) + 1
            nonce = os.urandom(12)
            queries.add_secret(
                session,
                StoredSecret(
                    name=name, version=version, key_id=self.key_id, nonce=nonce,
                    ciphertext=self._keys[self.key_id].encrypt(nonce, value,
                                                               _aad(name, version)),
                    created_at=now,
                ),
            )
        return version

    def _open(self, row: _Sealed) -> bytes:
        aead = self._keys.get(row.key_id)
        if aead is None and self._key_file is not None:  # another replica rotated
            key, others = _load_keys(self._key_file)
            self._keys.update({_key_id(k): AESGCM(k) for k in (key, *others)})
            self.key_id = _key_id(key)
            aead = self._keys.get(row.key_id)
        if aead is None:
            raise SecretStoreError(f"secret {row.name!r} is encrypted under another key")
        try:
            return aead.decrypt(row.nonce, row.ciphertext, _aad(row.name, row.version))
        except InvalidTag as exc:
            raise SecretStoreError(f"secret {row.name!r} fails authentication") from exc

    def read(self, name: str, subject: SecretSubject | None = None) -> SecretValue | None:
        # A Core row, no ORM Session: this runs on the attestation path for every secret
        # a policy grants.
        with self._engine.connect() as conn:
            found = conn.execute(_LATEST, {"n": name}).first()
        if found is None:
            return None
        row = _Sealed(name, found.version, found.key_id, found.nonce, found.ciphertext)
        return SecretValue(name, row.version, self._open(row))

    def release(self, name: str, subject: SecretSubject) -> SecretValue | None:
        return self.read(name, subject)

    def health(self) -> None:
        try:
            with Session(self._engine) as session:
                queries.secret_names(session, limit=1)
        except sa.exc.SQLAlchemyError as exc:
            raise SecretStoreError(f"the secret table cannot be read: {type(exc).__name__}") \
                from exc

    def names(self) -> list[tuple[str, int]]:
        with Session(self._engine) as session:
            return queries.secret_names(session)

    def rotate_key(self, path: Path) -> int:
        """Re-encrypt every stored version under a new key, then make it the key file.

        Crash-safe: the new key is written (fsynced) to ``<key>.next`` first; the
        re-encryption is one transaction; the rename comes last. Returns the number
        of versions re-encrypted."""
        staged = next_key_file(path)
        if not staged.exists():
            write_private(staged, os.urandom(KEY_SIZE))
        new = staged.read_bytes()
        if len(new) != KEY_SIZE:
            raise SecretStoreError(f"{staged} is not a 32-byte key: remove it and rerun")
        new_id = _key_id(new)
        self._keys[new_id] = AESGCM(new)
        count = 0
        with Session(self._engine) as session, session.begin():
            for row in queries.all_secrets(session):
                if row.key_id == new_id:
                    continue
                value = self._open(_Sealed(row.name, row.version, row.key_id, row.nonce,
                                           row.ciphertext))
                row.nonce = os.urandom(12)
                row.ciphertext = self._keys[new_id].encrypt(row.nonce, value,
                                                            _aad(row.name, row.version))
                row.key_id = new_id
                session.add(row)
                count += 1
        os.replace(staged, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._keys = {new_id: AESGCM(new)}
        self.key_id = new_id
        return count


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _load_keys(path: Path) -> tuple[bytes, tuple[bytes, ...]]:
    """(current key, other keys): ``<key>.next`` is current while a rotation is open."""
    try:
        key = path.read_bytes()
        staged = next_key_file(path)
        if staged.exists():
            return staged.read_bytes(), (key,)
    except OSError as exc:
        raise SecretStoreError(f"cannot read the secret-store key: {exc}") from exc
    return key, ()
