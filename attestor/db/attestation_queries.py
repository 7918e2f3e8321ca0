"""The attestation cycle's statements: Core, built once, run on the caller's connection
inside its transaction; rows come back as plain frozen records, never ORM objects (the
unit of work and model construction cost more CPU per cycle than the database did)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from attestor.db.models import Attestation, Device, Nonce, Policy
from identity.errors import DeviceUnknown


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """The device columns an attestation reads (the rest of the row is not loaded)."""

    id: str
    device_class: str
    model: str | None
    state: str
    ek_public: bytes
    ak_public: bytes
    ak_name: str
    ak_qualified_name: str | None
    devid_public: bytes
    last_verdict: str | None
    clock_reset_count: int | None
    clock_restart_count: int | None
    clock_value: int | None
    ima_state: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    id: int
    version: int
    document: dict[str, Any]


_DEVICE_COLUMNS = tuple(col(getattr(Device, name)) for name in DeviceRecord.__slots__)
_LATEST_VERSION = (sa.select(sa.func.max(col(Policy.version)))
                   .where(col(Policy.device_class) == col(Device.device_class))
                   .correlate(Device).scalar_subquery())
_DEVICE_AND_POLICY = (
    sa.select(*_DEVICE_COLUMNS, col(Policy.id), col(Policy.version), col(Policy.document))
    .select_from(Device)
    .outerjoin(Policy, sa.and_(col(Policy.device_class) == col(Device.device_class),
                               col(Policy.version) == _LATEST_VERSION))
    .where(col(Device.id) == sa.bindparam("d")))
_WIDTH = len(_DEVICE_COLUMNS)


def device_and_policy(conn: sa.Connection,
                      device_id: str) -> tuple[DeviceRecord, PolicyRecord | None]:
    """The device and its class's policy in force, in one query."""
    row = conn.execute(_DEVICE_AND_POLICY, {"d": device_id}).first()
    if row is None:
        raise DeviceUnknown(f"no enrolled device {device_id!r}")
    device = DeviceRecord(*row[:_WIDTH])
    policy_id, version, document = row[_WIDTH:]
    return device, (PolicyRecord(policy_id, version, document) if policy_id is not None
                    else None)


def spend_nonce(conn: sa.Connection, value: str, device_id: str, expires_at: dt.datetime,
                now: dt.datetime) -> bool:
    """Record a challenge nonce as spent; False if it was spent before (a replay). One
    insert-if-absent on the primary key, so of two replicas racing with one nonce,
    exactly one inserts."""
    insert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(Nonce)
    statement = (insert.values(value=value, device_id=device_id, expires_at=expires_at,
                               used_at=now)
                 .on_conflict_do_nothing().returning(col(Nonce.value)))
    return conn.execute(statement).first() is not None


_INSERT_ATTESTATION = sa.insert(Attestation)
_REFUSED = (sa.update(Device).where(col(Device.id) == sa.bindparam("device_id_"))
            .values(last_attested_at=sa.bindparam("at"), last_verdict="fail",
                    last_reasons=sa.bindparam("reasons")))


def add_attestation(conn: sa.Connection, **fields: Any) -> None:
    """One attestation record (the columns of ``Attestation`` but its id)."""
    conn.execute(_INSERT_ATTESTATION, [fields])


def record_refused(conn: sa.Connection, device_id: str, at: dt.datetime,
                   reasons: list[str]) -> None:
    """The device's last verdict is a failure for ``reasons``."""
    conn.execute(_REFUSED, {"device_id_": device_id, "at": at,
                            "reasons": ("," + ",".join(reasons) + ",")[:1024]})
