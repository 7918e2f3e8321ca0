"""Database tables (SQLModel). Schema changes go through Alembic migrations.

Times are stored as timezone-aware UTC on both SQLite and PostgreSQL.
Nothing here ever holds a secret value in clear: activation secrets are kept
as digests, embedded-store secrets as AES-GCM ciphertext.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from attestor.db.types import UtcDateTime


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))


class Device(SQLModel, table=True):
    __tablename__ = "devices"

    id: str = Field(primary_key=True, max_length=64)
    serial: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    device_class: str = Field(default="default", max_length=64, index=True)
    state: str = Field(default="active", max_length=16, index=True)
    state_reason: str | None = Field(default=None, max_length=256)
    state_changed_at: dt.datetime | None = _time(nullable=True)
    ek_public: bytes
    ek_certificate: bytes | None = None
    ak_public: bytes
    ak_name: str = Field(max_length=132)
    ak_qualified_name: str | None = Field(default=None, max_length=132)
    devid_public: bytes
    devid_cert_serial: str | None = Field(default=None, max_length=64)
    enrolled_at: dt.datetime = _time()
    last_attested_at: dt.datetime | None = _time(nullable=True, index=True)
    last_verdict: str | None = Field(default=None, max_length=16)
    last_reasons: str = Field(default="", max_length=1024, sa_column_kwargs={
        "server_default": ""})  # ",code,code," of the last attestation: filterable
    clock_reset_count: int | None = Field(default=None, sa_type=sa.BigInteger)
    clock_restart_count: int | None = Field(default=None, sa_type=sa.BigInteger)
    clock_value: int | None = Field(default=None, sa_type=sa.BigInteger)
    ima_state: dict[str, Any] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON, nullable=True)
    )  # entries accepted since the last TPM reset, running PCR10, reset count


class Enrollment(SQLModel, table=True):
    """A pending factory enrollment, waiting for the activated credential."""

    __tablename__ = "enrollments"

    id: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(max_length=64, index=True)
    serial: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    device_class: str = Field(default="default", max_length=64)
    ek_public: bytes
    ek_certificate: bytes | None = None
    ak_public: bytes
    ak_qualified_name: str | None = Field(default=None, max_length=132)
    devid_public: bytes
    secret_digest: bytes
    created_at: dt.datetime = _time()
    expires_at: dt.datetime = _time()
    used_at: dt.datetime | None = _time(nullable=True)


class Nonce(SQLModel, table=True):
    __tablename__ = "nonces"

    value: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(max_length=64, index=True)
    expires_at: dt.datetime = _time(index=True)
    used_at: dt.datetime | None = _time(nullable=True)


class Attestation(SQLModel, table=True):
    __tablename__ = "attestations"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64, index=True)
    at: dt.datetime = _time(index=True)
    verdict: str = Field(max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    checks: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False)
    )
    warnings: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    policy_id: int | None = None
    policy_version: int | None = None
    quote_verified: bool = False
    pcr_values: dict[str, Any] = _json()
    evidence_sha256: str = Field(max_length=64)
    certificate_serial: str | None = Field(default=None, max_length=64)
    event_log: bytes | None = None  # kept when the quote verified: for learning and dry runs


class Certificate(SQLModel, table=True):
    __tablename__ = "certificates"

    serial: str = Field(primary_key=True, max_length=64)
    device_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # "identity" or "workload"
    not_before: dt.datetime = _time()
    not_after: dt.datetime = _time(index=True)
    pem: str
    status: str = Field(default="issued", max_length=16, index=True)  # pending/issued/void
    revoked_at: dt.datetime | None = _time(nullable=True)
    revoked_reason: str | None = Field(default=None, max_length=64)


class Policy(SQLModel, table=True):
    """Immutable policy versions per device class; the highest version is in force."""

    __tablename__ = "policies"
    __table_args__ = (sa.UniqueConstraint("device_class", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    device_class: str = Field(max_length=64, index=True)
    version: int
    document: dict[str, Any] = _json()
    created_at: dt.datetime = _time()
    created_by: str = Field(max_length=128)


class StoredSecret(SQLModel, table=True):
    """Embedded secret store: AES-GCM ciphertext, one row per version."""

    __tablename__ = "secrets"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, index=True)
    version: int
    key_id: str = Field(max_length=32)
    nonce: bytes
    ciphertext: bytes
    created_at: dt.datetime = _time()


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: ``hash`` covers this entry and ``prev_hash``."""

    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={
        "autoincrement": False})
    at: dt.datetime = _time(index=True)
    actor: str = Field(max_length=128, index=True)
    action: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=16, index=True)
    device_id: str | None = Field(default=None, max_length=64, index=True)
    subject: str | None = Field(default=None, max_length=128)
    reasons: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    request_id: str | None = Field(default=None, max_length=64)
    client_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=256)
    details: dict[str, Any] = _json()
    # The hash format (attestor/db/chain.py); for version 1, the values migration 0006
    # replaced with the current vocabulary's.
    version: int = Field(default=2, sa_column_kwargs={"server_default": "1"})
    legacy: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(
        sa.JSON(none_as_null=True), nullable=True))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The chain's head, one row: locked by every append, so appends are serialised.
    ``base_seq``/``base_hash``: the anchor the chain starts after once entries up to a
    signed checkpoint were pruned (attestor/services/audit_prune.py); 0 and the genesis
    hash until then."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=sa.BigInteger)
    hash: str = Field(default="0" * 64, max_length=64)
    base_seq: int = Field(default=0, sa_type=sa.BigInteger,
                          sa_column_kwargs={"server_default": "0"})
    base_hash: str = Field(default="0" * 64, max_length=64,
                           sa_column_kwargs={"server_default": "0" * 64})


class AuditCheckpoint(SQLModel, table=True):
    """A signature over the chain's head at ``seq``: the anchor an attacker cannot forge."""

    __tablename__ = "audit_checkpoints"

    seq: int = Field(primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={
        "autoincrement": False})
    hash: str = Field(max_length=64)
    at: dt.datetime = _time()
    kid: str = Field(max_length=64)
    signature: bytes


class ApiKey(SQLModel, table=True):
    """Factory-station keys: only a SHA-256 of the (high-entropy) secret is stored."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    key_hash: str = Field(max_length=64)
    created_at: dt.datetime = _time()
    revoked_at: dt.datetime | None = _time(nullable=True)


class RequestNonce(SQLModel, table=True):
    """Nonces of signed device requests, kept until their timestamps expire: replays fail."""

    __tablename__ = "request_nonces"

    device_id: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(primary_key=True, max_length=64)
    expires_at: dt.datetime = _time(index=True)


class AuthRefusalCount(SQLModel, table=True):
    """Refused requests per source address, window and reason code, shared by every
    replica: what the failed-authentication limit counts, and what a window's summary
    audit entry is written from (the rows are deleted when it is)."""

    __tablename__ = "auth_refusals"

    source: str = Field(primary_key=True, max_length=64)
    window_start: dt.datetime = Field(sa_column=sa.Column(UtcDateTime(), primary_key=True))
    code: str = Field(primary_key=True, max_length=64)
    count: int = Field(default=0, sa_type=sa.BigInteger)


class Preregistration(SQLModel, table=True):
    """A device announced by the manufacturer before it enrolls (bulk upload)."""

    __tablename__ = "preregistrations"

    id: int | None = Field(default=None, primary_key=True)
    ek_key_sha256: str = Field(max_length=64, unique=True)
    serial: str = Field(max_length=128, index=True)
    model: str | None = Field(default=None, max_length=128)
    device_class: str = Field(default="default", max_length=64)
    ek_certificate: bytes | None = None
    created_by: str = Field(max_length=128)
    created_at: dt.datetime = _time()
    enrolled_device_id: str | None = Field(default=None, max_length=64)
    enrolled_at: dt.datetime | None = _time(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    event: str = Field(max_length=64)
    url: str = Field(max_length=512)
    payload: dict[str, Any] = _json()
    created_at: dt.datetime = _time()
    attempts: int = 0
    next_attempt_at: dt.datetime = _time(index=True)
    delivered_at: dt.datetime | None = _time(nullable=True)
    last_error: str | None = Field(default=None, max_length=512)


class SigningKeyRow(SQLModel, table=True):
    """The attestor's ES256 keys (tokens, attestation results, audit checkpoints).

    The newest key without ``retired_at`` signs; retired keys still verify what
    they signed (published in the JWKS for the token lifetime after retirement,
    kept for audit checkpoints forever). Private keys are PKCS#8, encrypted with
    the CA passphrase."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_pem: bytes
    created_at: dt.datetime = _time()
    retired_at: dt.datetime | None = _time(nullable=True)


# The onboarding tables live in their own module; imported here so that every user of
# the metadata (Alembic, the schema check) sees them.
from attestor.db import ownership_models as _ownership_models  # noqa: E402,F401
