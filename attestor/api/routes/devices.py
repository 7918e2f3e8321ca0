"""Devices for operators: find, inspect, lifecycle, attestation history."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from attestor.api.deps import Admin, DeviceOrReader, FleetReader, ServicesDep
from attestor.api.protocol import MessageResponse, answer
from attestor.db.queries import DeviceFilter
from attestor.models.common import FILTER_TEXT, problems
from attestor.models.operator import (
    AttestationPublic,
    ClassChange,
    Page,
    StateChange,
)
from attestor.services import devices
from identity.messages import DevicePage, DevicePublic

router = APIRouter(prefix="/v1/devices", tags=["devices"])
DeviceId = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=256, description="from the previous page")]
READ = problems(s401="no credential", s403="not allowed", s404="unknown device")
WRITE = problems(s401="no credential", s403="admins only", s404="unknown device",
                 s409="not possible from the device's current state")


@router.get("", response_class=MessageResponse, responses=answer(DevicePage) | READ)
async def list_devices(
    svc: ServicesDep, caller: FleetReader,
    state: Annotated[Literal["active", "quarantined", "revoked", "decommissioned"] | None,
                     Query()] = None,
    device_class: Annotated[str | None, Query(alias="class", max_length=64,
                                                    pattern=FILTER_TEXT)] = None,
    attested_before: dt.datetime | None = None,
    attested_after: dt.datetime | None = None,
    reason: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$",
                                        description="a reason code of the last attestation")
                      ] = None,
    cursor: Cursor = None, limit: Limit = 100,
) -> MessageResponse:
    """Devices, filtered, in pages."""
    filters = DeviceFilter(state, device_class, attested_before, attested_after, reason)
    return MessageResponse(await run_in_threadpool(devices.find, svc, filters, cursor, limit))


@router.get("/{device_id}", response_class=MessageResponse,
            responses=answer(DevicePublic) | READ)
async def get_device(svc: ServicesDep, caller: DeviceOrReader,
                     device_id: str = DeviceId) -> MessageResponse:
    """One device: state, current certificate, last verdict and its failed checks."""
    return MessageResponse(await run_in_threadpool(devices.get, svc, device_id))


def _lifecycle(action: str, summary: str):  # type: ignore[no-untyped-def]
    async def endpoint(change: StateChange, svc: ServicesDep, caller: Admin,
                       device_id: str = DeviceId) -> MessageResponse:
        return MessageResponse(await run_in_threadpool(
            devices.change_state, svc, device_id, action, change.reason, caller))

    endpoint.__name__ = f"{action}_device"
    endpoint.__doc__ = summary
    router.post(f"/{{device_id}}/{action}", response_class=MessageResponse,
                responses=answer(DevicePublic) | WRITE)(endpoint)


_lifecycle("quarantine", "Quarantine: nothing is issued to the device until it is released.")
_lifecycle("release", "Release a quarantined device.")
_lifecycle("revoke", "Revoke: all its certificates are revoked; nothing is ever issued again.")
_lifecycle("decommission", "Decommission: certificates revoked; the record and its audit "
           "trail stay.")


@router.put("/{device_id}/class", response_class=MessageResponse,
            responses=answer(DevicePublic) | WRITE)
async def set_class(change: ClassChange, svc: ServicesDep, caller: Admin,
                    device_id: str = DeviceId) -> MessageResponse:
    """Assign the device to a class (and so to that class's policy)."""
    return MessageResponse(await run_in_threadpool(devices.change_class, svc, device_id,
                                                   change.device_class, caller))


@router.get("/{device_id}/attestations", response_model=Page[AttestationPublic],
            responses=READ)
async def history(svc: ServicesDep, caller: DeviceOrReader, device_id: str = DeviceId,
                  cursor: Cursor = None, limit: Limit = 50) -> Page[AttestationPublic]:
    """Attestations, newest first: every check's result, evidence digests, policy version."""
    return await run_in_threadpool(devices.history, svc, device_id, cursor, limit)
