"""A readable description of each event, for operators (``attestor eventlog show``)."""

from __future__ import annotations

from identity.errors import EventLogMalformed
from identity.eventlog import events as ev
from identity.eventlog.tcg import SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE, Event
from identity.eventlog.uefi import (
    decode_gpt,
    decode_image_load,
    decode_signature_lists,
    decode_text,
    decode_variable,
)

_TEXT = {ev.EV_EFI_ACTION, ev.EV_IPL, ev.EV_S_CRTM_VERSION, ev.EV_POST_CODE, ev.EV_ACTION,
         ev.EV_COMPACT_HASH}
_VARIABLES = {ev.EV_EFI_VARIABLE_DRIVER_CONFIG, ev.EV_EFI_VARIABLE_BOOT,
              ev.EV_EFI_VARIABLE_BOOT2, ev.EV_EFI_VARIABLE_AUTHORITY}
_IMAGES = {ev.EV_EFI_BOOT_SERVICES_APPLICATION, ev.EV_EFI_BOOT_SERVICES_DRIVER,
           ev.EV_EFI_RUNTIME_SERVICES_DRIVER}


def describe_event(event: Event) -> dict[str, object]:
    out: dict[str, object] = {
        "seq": event.seq, "pcr": event.pcr if event.pcr <= 23 else -1,
        "type": ev.name_of(event.type),
        "digests": {bank: d.hex() for bank, d in event.digests.items()},
    }
    try:
        detail = _detail(event)
    except EventLogMalformed as exc:
        detail = f"(undecodable: {exc.detail})"
    if detail:
        out["detail"] = detail
    return out


def _detail(event: Event) -> str:
    data = event.data
    if event.type == ev.EV_NO_ACTION:
        if data.startswith(SPEC_ID_SIGNATURE):
            return "Spec ID Event03"
        if data.startswith(STARTUP_LOCALITY_SIGNATURE):
            return f"StartupLocality {data[-1]}"
        return f"{len(data)} bytes"
    if event.type == ev.EV_SEPARATOR:
        return "error" if data == b"\xff\xff\xff\xff" else f"0x{data.hex()}"
    if event.type in _TEXT:
        return decode_text(data)
    if event.type in _VARIABLES:
        var = decode_variable(data)
        text = f"{var.guid} {var.name} ({len(var.data)} bytes)"
        if var.name in ("PK", "KEK", "db", "dbx") and event.type != ev.EV_EFI_VARIABLE_AUTHORITY:
            entries = decode_signature_lists(var.data)
            text += "".join(f"\n         {entry.describe()}" for entry in entries[:20])
            if len(entries) > 20:
                text += f"\n         … {len(entries) - 20} more"
        elif len(var.data) <= 64:
            text += f" = {var.data.hex()}"
        return text
    if event.type in _IMAGES:
        image = decode_image_load(data)
        return f"{image.device_path} ({image.length} bytes at 0x{image.location:x})"
    if event.type == ev.EV_EFI_GPT_EVENT:
        parts = decode_gpt(data)
        return f"{len(parts)} partitions: " + ", ".join(p.name or str(p.unique_guid)
                                                        for p in parts[:8])
    return f"{len(data)} bytes"
