"""Measured-boot simulator: a UEFI Secure Boot (shim, GRUB, Linux) extended into a real
(emulated) TPM's PCRs 0-9, and the matching TCG crypto-agile event log.

The events have the structure of real UEFI logs: Spec ID and StartupLocality,
CRTM and firmware blobs, Secure Boot variables with EFI_SIGNATURE_LISTs, boot
variables, separators, boot applications with device paths, the db authority
that verified them, shim's SBAT level, GRUB's commands and kernel command line
(PCR8) and files (PCR9), and Exit Boot Services. Boot application digests stand
in for Authenticode hashes: SHA-256 of the simulated image bytes.

``tamper`` reproduces one attack or misconfiguration per kind (see TAMPERS).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from agent.files import atomic_write
from agent.sim import firmware
from agent.tpm.device import Tpm
from identity.eventlog import events as ev
from identity.eventlog.tcg import (
    STARTUP_LOCALITY_SIGNATURE,
    encode_agile_event,
    encode_spec_id_event,
)
from identity.eventlog.uefi import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, SHIM_LOCK_GUID

TAMPERS = {
    "bootloader": "a modified GRUB image (PCR4 changes)",
    "secureboot-off": "Secure Boot disabled",
    "unknown-app": "an extra, unknown EFI application loaded before GRUB",
    "relabel": "GRUB's measurement relabelled EV_EVENT_TAG in the log (replay still matches)",
    "after-separator": "a boot services driver measured into PCR2 after its separator",
    "config-after-separator": "a Secure Boot variable measured after PCR7's separator",
    "cmdline": "init=/bin/sh added to the kernel command line",
    "stale-dbx": "a dbx lacking recent revocations",
}
KERNEL = "/boot/vmlinuz-6.1.0-edge"
INITRD = "/boot/initrd.img-6.1.0-edge"
CMDLINE = f"{KERNEL} root=/dev/mmcblk0p2 ro quiet"


@dataclass(frozen=True)
class SimEvent:
    pcr: int
    type: int
    data: bytes
    measured: bytes  # what the firmware hashed (image bytes, or the event data itself)
    logged_type: int | None = None  # a different type in the log (the relabel attack)


def variable_data(guid: uuid.UUID, name: str, value: bytes) -> bytes:
    """UEFI_VARIABLE_DATA: VariableName GUID, lengths, UTF-16 name, data."""
    encoded = name.encode("utf-16-le")
    return guid.bytes_le + struct.pack("<QQ", len(name), len(value)) + encoded + value


def image_load_event(path: str, length: int) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT with a media file-path device path node."""
    file_path = (path + "\x00").encode("utf-16-le")
    node = struct.pack("<BBH", 0x04, 0x04, 4 + len(file_path)) + file_path
    device_path = node + struct.pack("<BBH", 0x7F, 0xFF, 4)
    return struct.pack("<QQQQ", 0x7E000000, length, 0, len(device_path)) + device_path


def _image(name: str, version: str) -> bytes:
    return (f"edgeproof simulated EFI image {name} {version}\n".encode()) * 64


def boot_events(*, tamper: str | None = None) -> list[SimEvent]:
    """The event sequence of one simulated UEFI Secure Boot."""
    if tamper is not None and tamper not in TAMPERS:
        raise ValueError(f"unknown tamper {tamper!r}; one of {', '.join(TAMPERS)}")
    out: list[SimEvent] = []

    def data_event(pcr: int, etype: int, data: bytes) -> None:
        out.append(SimEvent(pcr, etype, data, data))

    def variable(pcr: int, etype: int, guid: uuid.UUID, name: str, value: bytes) -> None:
        data_event(pcr, etype, variable_data(guid, name, value))

    firmware_image = _image("firmware", "1.4.2")
    data_event(0, ev.EV_S_CRTM_VERSION, "1.4.2".encode("utf-16-le") + b"\x00\x00")
    out.append(SimEvent(0, ev.EV_EFI_PLATFORM_FIRMWARE_BLOB,
                        struct.pack("<QQ", 0xFF000000, len(firmware_image)), firmware_image))
    secure_boot = b"\x00" if tamper == "secureboot-off" else b"\x01"
    variable(7, ev.EV_EFI_VARIABLE_DRIVER_CONFIG, EFI_GLOBAL_VARIABLE, "SecureBoot", secure_boot)
    for name, guid in (("PK", EFI_GLOBAL_VARIABLE), ("KEK", EFI_GLOBAL_VARIABLE),
                       ("db", EFI_IMAGE_SECURITY_DATABASE), ("dbx", EFI_IMAGE_SECURITY_DATABASE)):
        value = firmware.database(name, stale_dbx=tamper == "stale-dbx")
        variable(7, ev.EV_EFI_VARIABLE_DRIVER_CONFIG, guid, name, value)
    data_event(7, ev.EV_SEPARATOR, b"\x00\x00\x00\x00")
    variable(1, ev.EV_EFI_VARIABLE_BOOT, EFI_GLOBAL_VARIABLE, "BootOrder", b"\x01\x00")
    variable(1, ev.EV_EFI_VARIABLE_BOOT, EFI_GLOBAL_VARIABLE, "Boot0001", b"edge os")
    data_event(4, ev.EV_EFI_ACTION, ev.CALLING_EFI_APPLICATION)
    for pcr in (0, 1, 2, 3, 4, 5, 6):
        data_event(pcr, ev.EV_SEPARATOR, b"\x00\x00\x00\x00")
    if tamper == "after-separator":
        driver = _image("late-driver", "0.1")
        out.append(SimEvent(2, ev.EV_EFI_BOOT_SERVICES_DRIVER,
                            image_load_event("\\EFI\\late.efi", len(driver)), driver))
    if tamper == "config-after-separator":
        variable(7, ev.EV_EFI_VARIABLE_DRIVER_CONFIG, EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x00")
    _boot_applications(out, tamper)
    data_event(5, ev.EV_EFI_ACTION, ev.EXIT_BOOT_SERVICES_INVOCATION)
    data_event(5, ev.EV_EFI_ACTION, ev.EXIT_BOOT_SERVICES_RETURNED)
    return out


def _boot_applications(out: list[SimEvent], tamper: str | None) -> None:
    shim = _image("shim", "15.7")
    out.append(SimEvent(4, ev.EV_EFI_BOOT_SERVICES_APPLICATION,
                        image_load_event("\\EFI\\BOOT\\BOOTX64.EFI", len(shim)), shim))
    authority = variable_data(EFI_IMAGE_SECURITY_DATABASE, "db", firmware.db_entry())
    out.append(SimEvent(7, ev.EV_EFI_VARIABLE_AUTHORITY, authority, authority))
    sbat = variable_data(SHIM_LOCK_GUID, "SbatLevel", b"sbat,1,2022111500\n")
    out.append(SimEvent(7, ev.EV_EFI_VARIABLE_AUTHORITY, sbat, sbat))
    if tamper == "unknown-app":
        rootkit = _image("bootkit", "6.6.6")
        out.append(SimEvent(4, ev.EV_EFI_BOOT_SERVICES_APPLICATION,
                            image_load_event("\\EFI\\BOOT\\fbx64.efi", len(rootkit)), rootkit))
    grub = _image("grub", "2.06-tampered" if tamper == "bootloader" else "2.06")
    out.append(SimEvent(4, ev.EV_EFI_BOOT_SERVICES_APPLICATION,
                        image_load_event("\\EFI\\debian\\grubx64.efi", len(grub)), grub,
                        logged_type=ev.EV_EVENT_TAG if tamper == "relabel" else None))
    cmdline = CMDLINE + (" init=/bin/sh" if tamper == "cmdline" else "")
    for text in (f"grub_cmd: linux {cmdline}", f"kernel_cmdline: {cmdline}",
                 f"grub_cmd: initrd {INITRD}"):
        data = text.encode() + b"\x00"
        out.append(SimEvent(8, ev.EV_IPL, data, data))
    for path in (KERNEL, INITRD):
        contents = _image(path, "6.1.0")
        out.append(SimEvent(9, ev.EV_IPL, path.encode() + b"\x00", contents))
    kernel = _image("linux", "6.1.0-edge")
    out.append(SimEvent(4, ev.EV_EFI_BOOT_SERVICES_APPLICATION,
                        image_load_event(KERNEL.replace("/", "\\"), len(kernel)), kernel))


def encode_log(events: list[SimEvent], banks: tuple[str, ...]) -> bytes:
    out = bytearray(encode_spec_id_event(banks))
    locality = STARTUP_LOCALITY_SIGNATURE + b"\x00"  # swtpm starts at locality 0
    out += encode_agile_event(0, ev.EV_NO_ACTION, {b: b"\x00" * len(hashlib.new(b).digest())
                                                   for b in banks}, locality)
    for event in events:
        digests = {bank: hashlib.new(bank, event.measured).digest() for bank in banks}
        logged = event.logged_type if event.logged_type is not None else event.type
        out += encode_agile_event(event.pcr, logged, digests, event.data)
    return bytes(out)


def simulate_boot(tpm: Tpm, log_path: Path, *, tamper: str | None = None) -> bytes:
    """Extend the boot's measurements into the TPM and write the matching event log.

    Call on a freshly started TPM (PCRs at their reset values).
    """
    banks = tuple(tpm.active_banks())
    events = boot_events(tamper=tamper)
    for event in events:
        tpm.pcr_extend(event.pcr, {bank: hashlib.new(bank, event.measured).digest()
                                   for bank in banks})
    log = encode_log(events, banks)
    atomic_write(log_path, log)
    return log
