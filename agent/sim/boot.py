"""Measured-boot simulator: UEFI-like events extended into PCRs 0-7 of a real (emulated)
TPM, and the matching TCG crypto-agile event log written to a file.

The event data follow the PC Client Platform Firmware Profile structures
(UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT, separators, EFI actions), so the
log parses like a firmware's. Boot application digests stand in for
Authenticode hashes: SHA-256 of the simulated image bytes. ``tamper=True``
changes the boot loader's bytes, as a modified GRUB would.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from agent.files import atomic_write
from agent.tpm.device import Tpm
from identity.eventlog.tcg import encode_agile_event, encode_spec_id_event

EV_SEPARATOR = 0x00000004
EV_S_CRTM_VERSION = 0x00000008
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_VARIABLE_BOOT = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007
EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
EV_EFI_VARIABLE_AUTHORITY = 0x800000E0

EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")


@dataclass(frozen=True)
class SimEvent:
    pcr: int
    type: int
    data: bytes
    measured: bytes  # what the firmware hashed (image bytes, or the event data itself)


def variable_data(guid: uuid.UUID, name: str, value: bytes) -> bytes:
    """UEFI_VARIABLE_DATA: VariableName GUID, lengths, UTF-16 name, data."""
    encoded = name.encode("utf-16-le")
    return guid.bytes_le + struct.pack("<QQ", len(name), len(value)) + encoded + value


def image_load_event(path: str, length: int) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT with a media file-path device path node."""
    file_node_path = (path + "\x00").encode("utf-16-le")
    node = struct.pack("<BBH", 0x04, 0x04, 4 + len(file_node_path)) + file_node_path
    end = struct.pack("<BBH", 0x7F, 0xFF, 4)
    device_path = node + end
    return struct.pack("<QQQQ", 0x7E000000, length, 0, len(device_path)) + device_path


def _image(name: str, version: str) -> bytes:
    return (f"edgeproof simulated EFI image {name} {version}\n".encode()) * 64


def boot_events(*, tamper: bool = False, kernel_version: str = "6.1.0-edge") -> list[SimEvent]:
    """The event sequence of one simulated UEFI Secure Boot."""
    events: list[SimEvent] = []

    def data_event(pcr: int, etype: int, data: bytes) -> None:
        events.append(SimEvent(pcr, etype, data, data))

    firmware = _image("firmware", "1.4.2")
    data_event(0, EV_S_CRTM_VERSION, "1.4.2".encode("utf-16-le") + b"\x00\x00")
    events.append(SimEvent(0, EV_EFI_PLATFORM_FIRMWARE_BLOB,
                           struct.pack("<QQ", 0xFF000000, len(firmware)), firmware))
    data_event(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
               variable_data(EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x01"))
    for var in ("PK", "KEK"):
        data_event(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
                   variable_data(EFI_GLOBAL_VARIABLE, var, f"simulated {var}".encode()))
    for var in ("db", "dbx"):
        data_event(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
                   variable_data(EFI_IMAGE_SECURITY_DATABASE, var, f"simulated {var}".encode()))
    data_event(7, EV_SEPARATOR, b"\x00\x00\x00\x00")
    data_event(1, EV_EFI_VARIABLE_BOOT,
               variable_data(EFI_GLOBAL_VARIABLE, "BootOrder", b"\x01\x00"))
    data_event(1, EV_EFI_VARIABLE_BOOT,
               variable_data(EFI_GLOBAL_VARIABLE, "Boot0001", b"edge os"))
    data_event(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    for pcr in (0, 1, 2, 3, 4, 5, 6):
        data_event(pcr, EV_SEPARATOR, b"\x00\x00\x00\x00")
    loader_version = "2.06-tampered" if tamper else "2.06"
    for path, image in (
        ("\\EFI\\BOOT\\BOOTX64.EFI", _image("shim", "15.7")),
        ("\\EFI\\debian\\grubx64.efi", _image("grub", loader_version)),
        ("\\boot\\vmlinuz", _image("linux", kernel_version)),
    ):
        events.append(SimEvent(4, EV_EFI_BOOT_SERVICES_APPLICATION,
                               image_load_event(path, len(image)), image))
        if path.endswith("BOOTX64.EFI"):
            data_event(7, EV_EFI_VARIABLE_AUTHORITY,
                       variable_data(EFI_IMAGE_SECURITY_DATABASE, "db", b"simulated db cert"))
    data_event(5, EV_EFI_ACTION, b"Exit Boot Services Invocation")
    data_event(5, EV_EFI_ACTION, b"Exit Boot Services Returned with Success")
    return events


def encode_log(events: list[SimEvent], banks: tuple[str, ...]) -> bytes:
    out = bytearray(encode_spec_id_event(banks))
    for ev in events:
        digests = {bank: hashlib.new(bank, ev.measured).digest() for bank in banks}
        out += encode_agile_event(ev.pcr, ev.type, digests, ev.data)
    return bytes(out)


def simulate_boot(tpm: Tpm, log_path: Path, *, tamper: bool = False) -> bytes:
    """Extend the boot's measurements into the TPM and write the matching event log.

    Call on a freshly started TPM (PCRs at their reset values).
    """
    banks = tuple(tpm.active_banks())
    events = boot_events(tamper=tamper)
    for ev in events:
        tpm.pcr_extend(ev.pcr, {bank: hashlib.new(bank, ev.measured).digest() for bank in banks})
    log = encode_log(events, banks)
    atomic_write(log_path, log)
    return log
