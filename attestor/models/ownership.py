"""Models of the ownership API (``/v1/ownership``, docs/onboarding.md): manufacturer roots
and the records that pre-authorize serials for zero-touch onboarding. The routes, the
services and the operator client share them (none of those imports the others)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from attestor.models.common import Request
from identity.messages import LABEL_PATTERN

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
DeviceClass = Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)]
STATES = ("owned", "onboarded", "revoked")


class RootsIn(Request):
    certificates: str = Field(min_length=1, max_length=256 * 1024,
                              description="manufacturer CA certificates (PEM)")


class RootPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sha256: str
    subject: str
    is_root: bool
    imported_by: str
    imported_at: dt.datetime


class ManifestIn(Request):
    manifest: str = Field(min_length=1, max_length=16 * 1024 * 1024,
                          description="the OEM's signed batch manifest (JSON text)")
    device_class: DeviceClass = "default"


class SerialsIn(Request):
    csv: str = Field(min_length=1, max_length=4 * 1024 * 1024,
                     description="serials, one per line (first column)")
    root_sha256: Sha256 = Field(description="the imported manufacturer root (SHA-256 of its "
                                "DER) these devices' IAK and IDevID chain to")
    device_class: DeviceClass = "default"


class ImportResult(BaseModel):
    created: int
    updated: int
    already_onboarded: list[str] = Field(description="left as they were: release first")
    kept_revoked: list[str] = Field(default_factory=list, description="left revoked: an "
                                    "import never undoes a revocation; release first")
    kept_conflicting: list[str] = Field(
        default_factory=list, description="left as they were: owned with another IDevID "
        "certificate or bound to another manufacturer root, which an import never "
        "replaces or drops")


class OwnershipPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    serial: str
    device_class: str
    idevid_sha256: str | None
    root_sha256: str | None = Field(description="the manufacturer root the device must "
                                    "chain to; null: imported before root binding, "
                                    "refused until imported again")
    oem: str | None
    batch: str | None
    state: str
    device_id: str | None
    imported_by: str
    imported_at: dt.datetime
    changed_at: dt.datetime | None
