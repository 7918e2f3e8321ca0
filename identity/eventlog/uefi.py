"""Decoders for the event data of UEFI firmware logs (PC Client PFP 10.4, UEFI 2.x).

UEFI_VARIABLE_DATA and the EFI_SIGNATURE_LISTs of PK/KEK/db/dbx,
UEFI_IMAGE_LOAD_EVENT with its device path as text, UEFI_GPT_DATA, and the
strings of EFI actions and IPL events. Every length is bounded by the input;
malformed data raises :class:`EventLogMalformed`.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import NamedTuple

from cryptography import x509

from identity.errors import EventLogMalformed

EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SHIM_LOCK_GUID = uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23")
EFI_CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA256 = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
MAX_PARTITIONS = 256


class UefiVariable(NamedTuple):
    guid: uuid.UUID
    name: str
    data: bytes


class SignatureEntry(NamedTuple):
    """One EFI_SIGNATURE_DATA: an X.509 certificate or a SHA-256 hash."""

    kind: str  # "x509", "sha256" or the type GUID
    owner: uuid.UUID
    value: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (or the hash itself), hex: what policies name."""
        return hashlib.sha256(self.value).hexdigest() if self.kind == "x509" else self.value.hex()

    def describe(self) -> str:
        if self.kind == "x509":
            try:
                cert = x509.load_der_x509_certificate(self.value)
                return f"x509 {cert.subject.rfc4514_string()} sha256:{self.fingerprint}"
            except ValueError:
                return f"x509 (unparsable) sha256:{self.fingerprint}"
        return f"{self.kind} {self.value.hex()}"


class ImageLoad(NamedTuple):
    location: int
    length: int
    link_address: int
    device_path: str


class Partition(NamedTuple):
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    name: str


def _guid(data: bytes, pos: int = 0) -> uuid.UUID:
    return uuid.UUID(bytes_le=data[pos:pos + 16])


def decode_variable(data: bytes) -> UefiVariable:
    """UEFI_VARIABLE_DATA: VariableName GUID, name and data lengths, UTF-16 name, data."""
    if len(data) < 32:
        raise EventLogMalformed("UEFI_VARIABLE_DATA shorter than its header")
    name_chars, data_len = struct.unpack_from("<QQ", data, 16)
    name_end = 32 + 2 * name_chars
    if name_chars > 1024 or name_end + data_len > len(data):
        raise EventLogMalformed("UEFI_VARIABLE_DATA lengths exceed the event")
    try:
        name = data[32:name_end].decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise EventLogMalformed(f"UEFI variable name is not UTF-16: {exc}") from exc
    return UefiVariable(_guid(data), name, data[name_end:name_end + data_len])


def decode_signature_lists(data: bytes) -> list[SignatureEntry]:
    """The EFI_SIGNATURE_LISTs of PK, KEK, db or dbx."""
    entries: list[SignatureEntry] = []
    pos = 0
    while pos < len(data):
        if pos + 28 > len(data):
            raise EventLogMalformed("EFI_SIGNATURE_LIST header truncated")
        kind = _guid(data, pos)
        list_size, header_size, sig_size = struct.unpack_from("<III", data, pos + 16)
        body = pos + 28 + header_size
        end = pos + list_size
        if list_size < 28 or end > len(data) or body > end or sig_size < 16:
            raise EventLogMalformed("EFI_SIGNATURE_LIST sizes are inconsistent")
        if (end - body) % sig_size:
            raise EventLogMalformed("EFI_SIGNATURE_LIST size is not a multiple of entries")
        name = ("x509" if kind == EFI_CERT_X509 else "sha256" if kind == EFI_CERT_SHA256
                else str(kind))
        for at in range(body, end, sig_size):
            entries.append(SignatureEntry(name, _guid(data, at), data[at + 16:at + sig_size]))
        pos = end
    return entries


def device_path_text(data: bytes) -> str:
    """An EFI device path as text, in the style of the UEFI shell (best effort)."""
    parts: list[str] = []
    pos = 0
    while pos + 4 <= len(data):
        kind, sub, length = data[pos], data[pos + 1], struct.unpack_from("<H", data, pos + 2)[0]
        if length < 4 or pos + length > len(data):
            raise EventLogMalformed("device path node length is inconsistent")
        node = data[pos + 4:pos + length]
        pos += length
        if kind == 0x7F:
            if sub == 0xFF:
                break
            parts.append(",")
            continue
        parts.append(_node_text(kind, sub, node))
    return "/".join(p for p in parts if p != ",") if parts else ""


def _node_text(kind: int, sub: int, node: bytes) -> str:
    if kind == 0x04 and sub == 0x04:  # media: file path
        return node.decode("utf-16-le", errors="replace").rstrip("\x00")
    if kind == 0x04 and sub == 0x01 and len(node) >= 38:  # media: hard drive
        part, start, size = struct.unpack_from("<IQQ", node)
        return f"HD({part},GPT,{_guid(node, 20)},0x{start:x},0x{size:x})"
    if kind == 0x04 and sub in (0x06, 0x07) and len(node) >= 16:  # PIWG firmware file/volume
        return f"{'FvFile' if sub == 0x06 else 'Fv'}({_guid(node)})"
    if kind == 0x01 and sub == 0x01 and len(node) >= 2:
        return f"Pci(0x{node[1]:x},0x{node[0]:x})"
    if kind == 0x02 and sub == 0x01 and len(node) >= 8:
        hid, uid = struct.unpack_from("<II", node)
        return f"PciRoot(0x{uid:x})" if hid == 0x0A0341D0 else f"Acpi(0x{hid:x},0x{uid:x})"
    if kind == 0x03 and sub == 0x17 and len(node) >= 4:
        return f"NVMe(0x{struct.unpack_from('<I', node)[0]:x})"
    if kind == 0x03 and sub == 0x02 and len(node) >= 4:
        return "Scsi(0x{:x},0x{:x})".format(*struct.unpack_from("<HH", node))
    if kind == 0x03 and sub == 0x12 and len(node) >= 6:
        return "Sata(0x{:x},0x{:x},0x{:x})".format(*struct.unpack_from("<HHH", node))
    return f"Path({kind},{sub},{node.hex()})"


def decode_image_load(data: bytes) -> ImageLoad:
    """UEFI_IMAGE_LOAD_EVENT (boot and runtime services applications and drivers)."""
    if len(data) < 32:
        raise EventLogMalformed("UEFI_IMAGE_LOAD_EVENT shorter than its header")
    location, length, link, path_len = struct.unpack_from("<QQQQ", data)
    if 32 + path_len > len(data):
        raise EventLogMalformed("UEFI_IMAGE_LOAD_EVENT device path exceeds the event")
    return ImageLoad(location, length, link, device_path_text(data[32:32 + path_len]))


def decode_gpt(data: bytes) -> list[Partition]:
    """UEFI_GPT_DATA: the partition table header, then the used partition entries."""
    if len(data) < 100 or data[:8] != b"EFI PART":
        raise EventLogMalformed("UEFI_GPT_DATA lacks the 'EFI PART' header")
    header_size = struct.unpack_from("<I", data, 12)[0]
    entry_size = struct.unpack_from("<I", data, 84)[0]
    count = struct.unpack_from("<Q", data, header_size)[0] if header_size + 8 <= len(data) else -1
    if (not 92 <= header_size <= len(data) - 8 or entry_size < 128
            or not 0 <= count <= MAX_PARTITIONS):
        raise EventLogMalformed("UEFI_GPT_DATA sizes are inconsistent")
    start = header_size + 8
    if start + count * entry_size > len(data):
        raise EventLogMalformed("UEFI_GPT_DATA partitions exceed the event")
    out = []
    for i in range(count):
        at = start + i * entry_size
        first, last = struct.unpack_from("<QQ", data, at + 32)
        name = data[at + 56:at + 128].decode("utf-16-le", errors="replace").rstrip("\x00")
        out.append(Partition(_guid(data, at), _guid(data, at + 16), first, last, name))
    return out


def decode_text(data: bytes) -> str:
    """EFI actions, IPL strings, CRTM versions: ASCII/UTF-8, or UTF-16 when it looks so."""
    if len(data) >= 2 and len(data) % 2 == 0 and data[1:2] == b"\x00" and data[0:1] != b"\x00":
        return data.decode("utf-16-le", errors="replace").rstrip("\x00")
    return data.decode("utf-8", errors="replace").rstrip("\x00")
