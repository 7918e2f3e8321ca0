"""API keys for factory stations: ``ep_<id>_<secret>``; only SHA-256 of it is stored.

The secret is 32 random bytes, so a fast hash is enough; lookups are by id and the
comparison is constant-time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlmodel import Session

from attestor.auth import ROLES, Principal
from attestor.db.models import ApiKey
from identity.errors import AuthInvalid

PREFIX = "ep_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(session: Session, name: str, role: str, now: dt.datetime) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    key_id = secrets.token_hex(8)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, name=name, role=role, key_hash=_digest(secret),
                       created_at=now))
    return secret


def verify(session: Session, presented: str) -> Principal:
    if not presented.startswith(PREFIX) or presented.count("_") < 2:
        raise AuthInvalid("not an edgeproof API key")
    key_id = presented[len(PREFIX):].split("_", 1)[0]
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or not hmac.compare_digest(
            row.key_hash, _digest(presented)):
        raise AuthInvalid("unknown or revoked API key")
    return Principal("apikey", f"{row.name}({row.id})", role=row.role)
