"""Linux IMA measurement lists: binary (``binary_runtime_measurements``) and ASCII.

Templates ``ima``, ``ima-ng``, ``ima-sig`` and ``ima-buf``; any other parses to
:class:`ImaUnsupportedTemplate`. Each entry keeps its template data exactly, so
the template hash can be recomputed (SHA-1 in the list, any bank for replay).
Binary layout (kernel ``ima_measurements_show``): PCR (u32 LE), template hash
(20 bytes), template name (u32 length + name), template data (u32 length +
data; no length for ``ima``), each ``-ng`` field itself length-prefixed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from identity.errors import ImaMalformed, ImaUnsupportedTemplate

TEMPLATES = ("ima", "ima-ng", "ima-sig", "ima-buf")
IMA_NAME_PADDED = 256  # IMA_EVENT_NAME_LEN_MAX + 1: the 'ima' template hashes the name padded
MAX_ENTRIES = 2_000_000
MAX_FIELD = 64 * 1024
_HEAD = struct.Struct("<I20sI")
_U32 = struct.Struct("<I")


class ImaEntry(NamedTuple):
    pcr: int
    template_hash: bytes  # SHA-1 from the list; all zero for a violation
    template: str
    data: bytes  # the template data, exactly as hashed
    digest_alg: str  # "sha1", "sha256", ... (the file digest's algorithm)
    digest: bytes  # the file (or buffer) digest
    path: str
    signature: bytes = b""  # ima-sig
    buffer: bytes = b""  # ima-buf

    @property
    def violation(self) -> bool:
        return not any(self.template_hash)


def _ng_fields(data: bytes, count: int) -> list[bytes]:
    fields, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            raise ImaMalformed("template field length truncated")
        size = _U32.unpack_from(data, pos)[0]
        if size > MAX_FIELD or pos + 4 + size > len(data):
            raise ImaMalformed(f"template field of {size} bytes exceeds the template data")
        fields.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    if pos != len(data):
        raise ImaMalformed(f"{len(data) - pos} trailing bytes in the template data")
    return fields


def _digest_ng(field: bytes) -> tuple[str, bytes]:
    """d-ng: ``<alg>:\\0<digest>`` (or a bare SHA-1/MD5 digest from old kernels)."""
    sep = field.find(b":\x00")
    if sep < 0:
        return ("sha1" if len(field) == 20 else "md5"), field
    return field[:sep].decode("ascii", errors="replace"), field[sep + 2:]


def _entry(pcr: int, template_hash: bytes, template: str, data: bytes) -> ImaEntry:
    if template == "ima":
        if len(data) < 24:
            raise ImaMalformed("'ima' template data truncated")
        size = _U32.unpack_from(data, 20)[0]
        if 24 + size != len(data) or size >= IMA_NAME_PADDED:
            raise ImaMalformed("'ima' template file name length is inconsistent")
        name = data[24:]
        return ImaEntry(pcr, template_hash, template, data[:20] + name, "sha1", data[:20],
                        name.decode("utf-8", errors="replace"))
    if template not in TEMPLATES:
        raise ImaUnsupportedTemplate(f"unsupported IMA template {template!r}")
    fields = _ng_fields(data, {"ima-ng": 2, "ima-sig": 3, "ima-buf": 3}[template])
    alg, digest = _digest_ng(fields[0])
    path = fields[1].rstrip(b"\x00").decode("utf-8", errors="replace")
    extra = fields[2] if len(fields) > 2 else b""
    return ImaEntry(pcr, template_hash, template, data, alg, digest, path,
                    signature=extra if template == "ima-sig" else b"",
                    buffer=extra if template == "ima-buf" else b"")


class ImaList(NamedTuple):
    entries: list[ImaEntry]
    trailing: int  # bytes after the last complete entry (a copy cut mid-entry)
    offsets: list[int]  # byte offset of each entry, then the end of the last complete one

    def tail(self, data: bytes, start: int) -> bytes:
        """The bytes of entries ``start`` onwards (for sending only new entries)."""
        return data[self.offsets[start]:self.offsets[-1]]


def parse_binary(data: bytes) -> ImaList:
    """Entries of a binary measurement list.

    The list only grows, and a copy may end mid-entry (or with a stray newline):
    bytes after the last complete entry are counted, not parsed. That is safe
    because nothing is accepted unless it replays to the quoted PCR10.
    One tight loop (this runs for every entry of every attestation).
    """
    data = bytes(data)
    entries: list[ImaEntry] = []
    offsets: list[int] = []
    append, mark = entries.append, offsets.append
    head, head_size, u32 = _HEAD.unpack_from, _HEAD.size, _U32.unpack_from
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        if pos + head_size > end:
            break
        pcr, template_hash, name_len = head(data, pos)
        pos += head_size
        if name_len == 0 or name_len > 255:
            raise ImaMalformed(f"entry {len(entries)}: template name length {name_len}")
        name_end = pos + name_len
        if name_end + 4 > end:
            break
        template_bytes = data[pos:name_end]
        if template_bytes == b"ima":
            # No template-data length: a 20-byte digest, then a length-prefixed name.
            if name_end + 24 > end:
                break
            pos = name_end
            size = 24 + u32(data, pos + 20)[0]
        else:
            pos = name_end + 4
            size = u32(data, name_end)[0]
        if size > MAX_FIELD:
            raise ImaMalformed(f"entry {len(entries)}: template data of {size} bytes")
        if pos + size > end:
            break
        body = data[pos:pos + size]
        pos += size
        mark(start)
        if template_bytes == b"ima-ng":
            append(_ng_entry(pcr, template_hash, body))
        else:
            append(_entry(pcr, template_hash, template_bytes.decode("ascii", errors="replace"),
                          body))
        if len(entries) > MAX_ENTRIES:
            raise ImaMalformed(f"more than {MAX_ENTRIES} entries")
    else:
        mark(pos)
        return ImaList(entries, 0, offsets)
    mark(start)
    return ImaList(entries, end - start, offsets)


_ALGORITHMS: dict[bytes, str] = {}


def _ng_entry(pcr: int, template_hash: bytes, data: bytes) -> ImaEntry:
    """ima-ng, the common case, decoded inline; anything irregular takes the general path."""
    n = len(data)
    if n >= 8:
        d_len = _U32.unpack_from(data, 0)[0]
        name_at = 4 + d_len
        if name_at + 4 <= n and name_at + 4 + _U32.unpack_from(data, name_at)[0] == n:
            field = data[4:name_at]
            sep = field.find(b":\x00")
            if sep > 0:
                raw_alg = field[:sep]
                alg = _ALGORITHMS.get(raw_alg)
                if alg is None:
                    alg = _ALGORITHMS.setdefault(raw_alg, raw_alg.decode("ascii", "replace"))
                path = data[name_at + 4:n].rstrip(b"\x00").decode("utf-8", "replace")
                return ImaEntry(pcr, template_hash, "ima-ng", data, alg, field[sep + 2:], path)
    return _entry(pcr, template_hash, "ima-ng", data)


def parse_ascii(text: str) -> list[ImaEntry]:
    """Entries of ``ascii_runtime_measurements``: ``PCR hash template fields...``."""
    entries: list[ImaEntry] = []
    for number, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        parts = line.split(" ", 4)
        if len(parts) < 5:
            raise ImaMalformed(f"line {number + 1}: fewer than five fields")
        pcr_text, hash_hex, template, digest_text, rest = parts
        try:
            pcr = int(pcr_text)
            template_hash = bytes.fromhex(hash_hex)
        except ValueError as exc:
            raise ImaMalformed(f"line {number + 1}: {exc}") from exc
        entries.append(_ascii_entry(number, pcr, template_hash, template, digest_text, rest))
    return entries


def _field(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _looks_like_signature(token: str) -> bool:
    """An ima-sig list prints the signature (type 0x03, IMA digital signature) last;
    an entry without one ends with its path, which may contain spaces."""
    if len(token) < 18 or len(token) % 2 or not token.startswith("03"):
        return False
    try:
        bytes.fromhex(token)
    except ValueError:
        return False
    return True


def _ascii_entry(number: int, pcr: int, template_hash: bytes, template: str,
                 digest_text: str, rest: str) -> ImaEntry:
    try:
        if template == "ima":
            digest = bytes.fromhex(digest_text)
            return ImaEntry(pcr, template_hash, template, digest + rest.encode(), "sha1",
                            digest, rest)
        if template not in TEMPLATES:
            raise ImaUnsupportedTemplate(f"line {number + 1}: unsupported template {template!r}")
        alg, _, hex_digest = digest_text.rpartition(":")
        digest = bytes.fromhex(hex_digest)
        path, extra = rest, b""
        if template in ("ima-sig", "ima-buf"):
            head, _, last = rest.rpartition(" ")
            if template == "ima-buf":
                path, extra = head, bytes.fromhex(last)
            elif head and _looks_like_signature(last):
                path, extra = head, bytes.fromhex(last)
    except ValueError as exc:
        raise ImaMalformed(f"line {number + 1}: {exc}") from exc
    d_ng = (alg.encode() + b":\x00" + digest) if alg else digest
    data = _field(d_ng) + _field(path.encode() + b"\x00")
    if template in ("ima-sig", "ima-buf"):
        data += _field(extra)
    return ImaEntry(pcr, template_hash, template, data, alg or "sha1", digest, path,
                    signature=extra if template == "ima-sig" else b"",
                    buffer=extra if template == "ima-buf" else b"")
