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

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import Session

from attestor.backends.files import write_private
from attestor.backends.secrets import SecretValue
from attestor.db import queries
from attestor.db.models import StoredSecret
from identity.errors import ServiceError

SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
KEY_SIZE = 32
MAX_SECRET = 64 * 1024


class SecretStoreError(ServiceError):
    code = "secrets.embedded"


def _aad(name: str, version: int) -> bytes:
    return f"edgeproof/secret/v1\x00{name}\x00{version}".encode()


class EmbeddedSecretStore:
    def __init__(self, engine: sa.Engine, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise SecretStoreError("the secret-store key must be 32 bytes")
        self._engine = engine
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:16]

    @staticmethod
    def create_key(path: Path) -> None:
        write_private(path, os.urandom(KEY_SIZE))

    @classmethod
    def from_key_file(cls, engine: sa.Engine, path: Path) -> EmbeddedSecretStore:
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise SecretStoreError(f"cannot read the secret-store key: {exc}") from exc
        return cls(engine, key)

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
                    ciphertext=self._aead.encrypt(nonce, value, _aad(name, version)),
                    created_at=now,
                ),
            )
        return version

    def read(self, name: str) -> SecretValue | None:
        with Session(self._engine) as session:
            row = queries.latest_secret(session, name)
        if row is None:
            return None
        if row.key_id != self.key_id:
            raise SecretStoreError(f"secret {name!r} is encrypted under another key")
        try:
            value = self._aead.decrypt(row.nonce, row.ciphertext, _aad(name, row.version))
        except InvalidTag as exc:
            raise SecretStoreError(f"secret {name!r} fails authentication") from exc
        return SecretValue(name, row.version, value)

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
