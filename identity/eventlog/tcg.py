"""TCG PC Client measured-boot event log: parsing (legacy SHA-1 and crypto-agile).

TCG PC Client Platform Firmware Profile, 10.2 (TCG_PCR_EVENT, TCG_PCR_EVENT2,
TCG_EfiSpecIDEvent). Every length is bounded by the Spec ID table and by the
remaining input, so a forged size fails fast with :class:`EventLogMalformed`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from identity.errors import EventLogMalformed
from identity.tpm.structures import DIGEST_SIZES, HASH_ALGS

EV_NO_ACTION: Final = 0x00000003
EV_SEPARATOR: Final = 0x00000004
EV_S_CRTM_VERSION: Final = 0x00000008
EV_EFI_HCRTM_EVENT: Final = 0x80000010
SPEC_ID_SIGNATURE: Final = b"Spec ID Event03\x00"
STARTUP_LOCALITY_SIGNATURE: Final = b"StartupLocality\x00"

MAX_LOG_SIZE: Final = 16 * 1024 * 1024
MAX_EVENT_SIZE: Final = 1024 * 1024
MAX_ALGORITHMS: Final = 8
MAX_PCR_INDEX: Final = 23


@dataclass(frozen=True, slots=True)
class Event:
    """One log entry; ``digests`` maps bank name to the digest the firmware logged."""

    index: int  # position in the log, for error messages
    pcr: int
    type: int
    digests: MappingProxyType[str, bytes]
    data: bytes


@dataclass(frozen=True, slots=True)
class EventLog:
    """A parsed log: banks in Spec ID order (only ``sha1`` for a legacy log)."""

    banks: tuple[str, ...]
    crypto_agile: bool
    events: tuple[Event, ...]
    spec_version: tuple[int, int, int] | None = None


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.remaining():
            raise EventLogMalformed(
                f"{what}: needs {n} bytes at offset {self.pos}, {self.remaining()} left"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack("<H", self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value


def parse_event_log(data: bytes) -> EventLog:
    """Parse a binary TCG event log as firmware hands it to the OS."""
    if len(data) > MAX_LOG_SIZE:
        raise EventLogMalformed(f"event log of {len(data)} bytes exceeds {MAX_LOG_SIZE}")
    if not data:
        raise EventLogMalformed("empty event log")
    r = _Reader(bytes(data))
    first = _legacy_event(r, 0)
    if first.type == EV_NO_ACTION and first.pcr == 0 and first.data.startswith(SPEC_ID_SIGNATURE):
        sizes, version = _spec_id(first.data)
        events = [first]
        while r.remaining():
            events.append(_agile_event(r, len(events), sizes))
        return EventLog(tuple(sizes), True, tuple(events), version)
    events = [first]
    while r.remaining():
        events.append(_legacy_event(r, len(events)))
    return EventLog(("sha1",), False, tuple(events))


def _check_header(index: int, pcr: int) -> None:
    if pcr > MAX_PCR_INDEX:
        raise EventLogMalformed(f"event {index}: PCR index {pcr} out of range")


def _legacy_event(r: _Reader, index: int) -> Event:
    pcr = r.u32(f"event {index} PCR index")
    _check_header(index, pcr)
    etype = r.u32(f"event {index} type")
    digest = r.take(20, f"event {index} SHA-1 digest")
    size = r.u32(f"event {index} size")
    if size > MAX_EVENT_SIZE:
        raise EventLogMalformed(f"event {index}: eventSize {size} exceeds {MAX_EVENT_SIZE}")
    body = r.take(size, f"event {index} data")
    return Event(index, pcr, etype, MappingProxyType({"sha1": digest}), body)


def _spec_id(body: bytes) -> tuple[dict[str, int], tuple[int, int, int]]:
    """TCG_EfiSpecIDEvent: the banks this log carries and their digest sizes."""
    r = _Reader(body)
    r.take(16, "Spec ID signature")
    r.u32("platformClass")
    minor, major, errata = r.u8("specVersionMinor"), r.u8("specVersionMajor"), r.u8("errata")
    r.u8("uintnSize")
    count = r.u32("numberOfAlgorithms")
    if count == 0 or count > MAX_ALGORITHMS:
        raise EventLogMalformed(f"Spec ID event lists {count} algorithms")
    sizes: dict[str, int] = {}
    for i in range(count):
        alg = r.u16(f"algorithm {i} id")
        size = r.u16(f"algorithm {i} digest size")
        name = HASH_ALGS.get(alg)
        if name is None:
            raise EventLogMalformed(f"Spec ID event lists unknown algorithm 0x{alg:04x}")
        if size != DIGEST_SIZES[name]:
            raise EventLogMalformed(f"Spec ID event gives {name} a digest size of {size}")
        if name in sizes:
            raise EventLogMalformed(f"Spec ID event lists {name} twice")
        sizes[name] = size
    vendor = r.u8("vendorInfoSize")
    r.take(vendor, "vendorInfo")
    return sizes, (major, minor, errata)


_ALG_BY_NAME = {name: alg for alg, name in HASH_ALGS.items()}


def _agile_event(r: _Reader, index: int, sizes: dict[str, int]) -> Event:
    pcr = r.u32(f"event {index} PCR index")
    _check_header(index, pcr)
    etype = r.u32(f"event {index} type")
    count = r.u32(f"event {index} digest count")
    if count != len(sizes):
        raise EventLogMalformed(
            f"event {index}: {count} digests, the Spec ID event lists {len(sizes)} banks"
        )
    digests: dict[str, bytes] = {}
    for _ in range(count):
        alg = r.u16(f"event {index} digest algorithm")
        name = HASH_ALGS.get(alg)
        if name is None or name not in sizes:
            raise EventLogMalformed(f"event {index}: digest algorithm 0x{alg:04x} not in Spec ID")
        if name in digests:
            raise EventLogMalformed(f"event {index}: two {name} digests")
        digests[name] = r.take(sizes[name], f"event {index} {name} digest")
    size = r.u32(f"event {index} size")
    if size > MAX_EVENT_SIZE:
        raise EventLogMalformed(f"event {index}: eventSize {size} exceeds {MAX_EVENT_SIZE}")
    body = r.take(size, f"event {index} data")
    return Event(index, pcr, etype, MappingProxyType(digests), body)


def encode_spec_id_event(banks: tuple[str, ...], vendor: bytes = b"") -> bytes:
    """A TCG_PCR_EVENT carrying TCG_EfiSpecIDEvent for ``banks`` (PC Client 2.0)."""
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    for bank in banks:
        body += struct.pack("<HH", _ALG_BY_NAME[bank], DIGEST_SIZES[bank])
    body += struct.pack("<B", len(vendor)) + vendor
    return struct.pack("<II", 0, EV_NO_ACTION) + b"\x00" * 20 + struct.pack("<I", len(body)) + body


def encode_agile_event(pcr: int, etype: int, digests: dict[str, bytes], data: bytes) -> bytes:
    """A TCG_PCR_EVENT2 with ``digests`` in the given bank order."""
    out = struct.pack("<III", pcr, etype, len(digests))
    for bank, digest in digests.items():
        out += struct.pack("<H", _ALG_BY_NAME[bank]) + digest
    return out + struct.pack("<I", len(data)) + data
