"""What booted, extracted from a (replay-verified) event log, for policy and operators.

Secure Boot state and the PK/KEK/db/dbx contents from PCR7; boot applications
with their Authenticode digests from PCR4; kernel, initrd and command line from
the boot loader's IPL events (GRUB: PCR8/9); the SBAT level and MokList from shim.
Undecodable data is reported, never guessed: a value that cannot be read stays
unknown, and policies treat unknown as failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from identity.errors import EventLogMalformed
from identity.eventlog.events import (
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
)
from identity.eventlog.replay import has_exit_boot_services
from identity.eventlog.tcg import Event, EventLog
from identity.eventlog.uefi import (
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    SignatureEntry,
    decode_image_load,
    decode_signature_lists,
    decode_text,
    decode_variable,
)

SIGNATURE_DATABASES = {"PK": EFI_GLOBAL_VARIABLE, "KEK": EFI_GLOBAL_VARIABLE,
                       "db": EFI_IMAGE_SECURITY_DATABASE, "dbx": EFI_IMAGE_SECURITY_DATABASE}


@dataclass(frozen=True)
class BootApplication:
    path: str
    digests: dict[str, str]  # bank -> Authenticode digest (hex), as the firmware measured it
    event: int


@dataclass
class BootSummary:
    secure_boot: bool | None = None
    databases: dict[str, list[SignatureEntry]] = field(default_factory=dict)
    boot_applications: list[BootApplication] = field(default_factory=list)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    sbat_level: str | None = None
    moklist: list[str] = field(default_factory=list)
    exit_boot_services: bool = False
    problems: list[str] = field(default_factory=list)

    def fingerprints(self, database: str) -> list[str]:
        return [entry.fingerprint for entry in self.databases.get(database, [])]

    def as_dict(self) -> dict[str, object]:
        return {
            "secure_boot": self.secure_boot,
            "databases": {name: [e.describe() for e in entries]
                          for name, entries in self.databases.items()},
            "boot_applications": [{"path": a.path, "digests": a.digests, "event": a.event}
                                  for a in self.boot_applications],
            "kernel": self.kernel, "initrd": self.initrd, "cmdline": self.cmdline,
            "sbat_level": self.sbat_level, "moklist": self.moklist,
            "exit_boot_services": self.exit_boot_services, "problems": self.problems,
        }


def summarize(log: EventLog) -> BootSummary:
    summary = BootSummary(exit_boot_services=has_exit_boot_services(log))
    for event in log.events:
        try:
            _take(summary, event)
        except EventLogMalformed as exc:
            summary.problems.append(f"event {event.seq}: {exc.detail}")
    return summary


def _take(summary: BootSummary, event: Event) -> None:
    if event.pcr == 7 and event.type == EV_EFI_VARIABLE_DRIVER_CONFIG:
        var = decode_variable(event.data)
        if var.name == "SecureBoot" and var.guid == EFI_GLOBAL_VARIABLE:
            summary.secure_boot = var.data[:1] == b"\x01"
        elif SIGNATURE_DATABASES.get(var.name) == var.guid:
            summary.databases[var.name] = decode_signature_lists(var.data)
    elif event.pcr == 7 and event.type == EV_EFI_VARIABLE_AUTHORITY:
        var = decode_variable(event.data)
        if var.name == "SbatLevel":
            summary.sbat_level = decode_text(var.data).strip()
    elif event.pcr == 4 and event.type == EV_EFI_BOOT_SERVICES_APPLICATION:
        image = decode_image_load(event.data)
        summary.boot_applications.append(BootApplication(
            image.device_path, {bank: d.hex() for bank, d in event.digests.items()}, event.seq))
    elif event.type == EV_IPL and event.pcr in (8, 9):
        _grub(summary, decode_text(event.data))
    elif event.type == EV_IPL and event.pcr == 14:
        summary.moklist.append(decode_text(event.data))


def _grub(summary: BootSummary, text: str) -> None:
    """GRUB's IPL strings: ``grub_cmd: linux /vmlinuz ...``, ``kernel_cmdline: ...``."""
    if text.startswith("kernel_cmdline: "):
        summary.cmdline = text.removeprefix("kernel_cmdline: ")
    elif text.startswith(("grub_cmd: linux ", "grub_cmd: linuxefi ")):
        words = text.split(" ", 3)
        summary.kernel = words[2] if len(words) > 2 else None
    elif text.startswith(("grub_cmd: initrd ", "grub_cmd: initrdefi ")):
        words = text.split(" ")
        summary.initrd = " ".join(words[2:]) or None
