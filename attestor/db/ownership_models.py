"""Tables of zero-touch onboarding (docs/onboarding.md): the manufacturer roots the
owner trusts for IAK/IDevID certificates, the ownership records that pre-authorize
serials for a device class and bind them to one manufacturer root, and the single-use
onboarding challenges."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from attestor.db.types import UtcDateTime


def _time(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=nullable))


class ManufacturerRoot(SQLModel, table=True):
    """A manufacturer CA certificate (root or intermediate) trusted for DevID chains."""

    __tablename__ = "manufacturer_roots"

    sha256: str = Field(primary_key=True, max_length=64)
    subject: str = Field(max_length=512)
    certificate: bytes
    is_root: bool
    imported_by: str = Field(max_length=128)
    imported_at: dt.datetime = _time()
    removed_at: dt.datetime | None = _time(nullable=True)


class Ownership(SQLModel, table=True):
    """One serial the owner bought: ``owned`` (may onboard), ``onboarded`` (done; a second
    onboarding is refused until released), ``revoked`` (never)."""

    __tablename__ = "ownership"

    serial: str = Field(primary_key=True, max_length=128)
    device_class: str = Field(default="default", max_length=64)
    idevid_sha256: str | None = Field(default=None, max_length=64)
    # The manufacturer root (SHA-256 of its DER) the IAK/IDevID must chain to; None only
    # for records from before root binding (refused at onboarding until imported again).
    root_sha256: str | None = Field(default=None, max_length=64)
    oem: str | None = Field(default=None, max_length=128)
    batch: str | None = Field(default=None, max_length=128)
    state: str = Field(default="owned", max_length=16, index=True)
    device_id: str | None = Field(default=None, max_length=64)
    imported_by: str = Field(max_length=128)
    imported_at: dt.datetime = _time()
    changed_at: dt.datetime | None = _time(nullable=True)


class OnboardingChallenge(SQLModel, table=True):
    __tablename__ = "onboarding_challenges"

    id: str = Field(primary_key=True, max_length=64)
    nonce: bytes
    serial: str = Field(max_length=128)
    idevid_sha256: str = Field(max_length=64)
    created_at: dt.datetime = _time()
    expires_at: dt.datetime = _time()
    used_at: dt.datetime | None = _time(nullable=True)
