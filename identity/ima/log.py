"""Linux IMA measurement lists: binary (``binary_runtime_measurements``) and ASCII.

Templates ``ima``, ``ima-ng``, ``ima-sig`` and ``ima-buf``; any other parses to
:class:`ImaUnsupportedTemplate`. Each entry keeps its template data exactly, so
the template hash can be recomputed (SHA-1 in the list, any bank for replay).
Binary layout (kernel ``ima_measurements_show``): PCR (u32 LE), template hash,
template name (u32 length + name), template data (u32 length + data; no length
for ``ima``), each ``-ng`` field itself length-prefixed. The template hash is
SHA-1 (20 bytes) in ``binary_runtime_measurements`` (``..._sha1``); kernels with
per-bank lists also expose ``binary_runtime_measurements_<bank>``, whose template
hash is the template data hashed with that bank's algorithm and has its size
(``e->digests[algo_idx]``, ``hash_digest_size[algo]``). The template data is the
same in every list. The PCR is whatever the policy rule said (``pcr=``; 10 by
default).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final, NamedTuple

from identity.errors import ImaMalformed, ImaUnsupportedTemplate
from identity.ima.entry import (
    _U32,
    IMA_NAME_PADDED,
    MAX_FIELD,
    TEMPLATES,
    ImaEntries,
    ImaEntry,
    _entry,
)
from identity.tpm.structures import DIGEST_SIZES

# Re-exported: the entry types and constants are read from here.
__all__ = ["IMA_NAME_PADDED", "MAX_FIELD", "TEMPLATES", "ImaEntries", "ImaEntry", "ImaList",
           "parse_ascii", "parse_binary"]

_TEMPLATE_NAMES = frozenset(t.encode() for t in TEMPLATES)
MAX_ENTRIES = 2_000_000
LIST_FILE: Final = "binary_runtime_measurements"
# The kernel names per-bank lists with hash_algo_name[] (crypto/hash_info.c);
# edgeproof names banks as TPM 2.0 does.
KERNEL_HASH_NAMES: Final = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384",
                            "sha512": "sha512", "sm3": "sm3_256"}
LIST_BANKS: Final = tuple(KERNEL_HASH_NAMES.values())
_HEADS = {size: struct.Struct(f"<I{size}sI") for size in sorted(set(DIGEST_SIZES.values()))}


class ImaList(NamedTuple):
    entries: ImaEntries
    trailing: int  # bytes after the last complete entry (a copy cut mid-entry)
    offsets: list[int]  # byte offset of each entry, then the end of the last complete one
    bank: str = "sha1"  # the template hashes' algorithm
    cut: str = ""  # what the trailing bytes are, when they start an entry

    def tail(self, data: bytes, start: int) -> bytes:
        """The bytes of entries ``start`` onwards (for sending only new entries)."""
        return data[self.offsets[start]:self.offsets[-1]]


def bank_of_file(name: str) -> str | None:
    """The template-hash bank a list's file name says: ``binary_runtime_measurements``
    (and ``..._sha1``) is SHA-1, ``..._sha256`` SHA-256, ``..._sm3`` SM3; None when the
    name says nothing (a copy under another name)."""
    if name == LIST_FILE:
        return "sha1"
    prefix = LIST_FILE + "_"
    if name.startswith(prefix):
        kernel_name = name[len(prefix):]
        if kernel_name not in KERNEL_HASH_NAMES:
            raise ImaMalformed(f"{name}: no PCR bank is named {kernel_name!r}")
        return KERNEL_HASH_NAMES[kernel_name]
    return None


def list_file_for(bank: str) -> str:
    """The per-bank list's file name (``binary_runtime_measurements_sha256``)."""
    kernel = {v: k for k, v in KERNEL_HASH_NAMES.items()}[bank]
    return f"{LIST_FILE}_{kernel}"


def _fits(data: bytes, size: int) -> bool:
    """Whether the first entry reads sensibly with a ``size``-byte template hash: a
    template name (printable, as the kernel's names and custom formats are) follows."""
    head = _HEADS[size]
    if len(data) < head.size:
        return False
    _, _, name_len = head.unpack_from(data, 0)
    name = data[head.size:head.size + name_len]
    return 0 < name_len <= 255 and len(name) == name_len and all(0x20 < b < 0x7F for b in name)


def detect_bank(data: bytes) -> str:
    """The template-hash bank, from the first entry: the digest size at which a known
    template name follows. 32 bytes is SHA-256 or SM3: told apart by which of them
    the first non-violation entry's hash verifies with."""
    sizes = [size for size in _HEADS if _fits(data, size)]
    if len(sizes) != 1:
        raise ImaMalformed("cannot tell the list's template-hash size from its first entry"
                           if sizes else "entry 0: no template name after a 20, 32, 48 or "
                           "64-byte template hash")
    candidates = [bank for bank in LIST_BANKS if DIGEST_SIZES[bank] == sizes[0]]
    if len(candidates) == 1:
        return candidates[0]
    for entry in parse_binary(data[:MAX_FIELD], "sha256").entries:
        if entry.violation:
            continue
        for bank in candidates:
            if bank in hashlib.algorithms_available and hashlib.new(
                    bank.replace("_256", ""), template_data_for_hash(entry)).digest() \
                    == entry.template_hash:
                return bank
        break
    raise ImaMalformed(f"a {sizes[0]}-byte template hash is one of {', '.join(candidates)}: "
                       "name the list's bank")


def template_data_for_hash(entry: ImaEntry) -> bytes:
    """The bytes the kernel hashes: for 'ima', the digest and the name padded to 256."""
    if entry.template == "ima":
        return entry.digest + entry.data[20:].ljust(IMA_NAME_PADDED, b"\x00")
    return entry.data


def parse_binary(data: bytes, bank: str | None = None) -> ImaList:
    """Entries of a binary measurement list whose template hashes are in ``bank``
    (None: told from the first entry, see :func:`detect_bank`).

    The list only grows, and a copy may end mid-entry (or with a stray newline):
    bytes after the last complete entry are counted, not parsed. That is safe
    because nothing is accepted unless it replays to the quoted PCRs.
    One tight loop (this runs for every entry of every attestation).
    """
    data = bytes(data)
    if bank is None:  # too short to tell: nothing in it parses anyway
        bank = detect_bank(data) if len(data) > _HEADS[20].size else "sha1"
    if bank not in LIST_BANKS:
        raise ImaMalformed(f"no IMA measurement list is kept in bank {bank!r}")
    offsets: list[int] = []
    data_starts: list[int] = []
    pcrs: list[int] = []
    plain = True
    mark, mark_data, mark_pcr = offsets.append, data_starts.append, pcrs.append
    header = _HEADS[DIGEST_SIZES[bank]]
    head, head_size, u32 = header.unpack_from, header.size, _U32.unpack_from
    pos, end, count = 0, len(data), 0
    while pos < end:
        start = pos
        if pos + head_size > end:
            break
        pcr, _, name_len = head(data, pos)
        pos += head_size
        if name_len == 0 or name_len > 255:
            raise ImaMalformed(f"entry {count}: template name length {name_len} "
                               f"(is the list's template hash {bank}?)")
        name_end = pos + name_len
        if name_end + 4 > end:
            break
        template = data[pos:name_end]
        if template == b"ima":
            # No template-data length: a 20-byte digest, then a length-prefixed name.
            if name_end + 24 > end:
                break
            pos = name_end
            size = 24 + u32(data, pos + 20)[0]
        else:
            pos = name_end + 4
            size = u32(data, name_end)[0]
        if size > MAX_FIELD:
            raise ImaMalformed(f"entry {count}: template data of {size} bytes")
        if pos + size > end:
            break
        if not _regular(data, pos, size, template):
            # Decoded now for its checks (a malformed or unsupported entry raises here).
            _entry(pcr, b"", template.decode("ascii", errors="replace"), data[pos:pos + size])
            plain = plain and template != b"ima"
        mark(start)
        mark_data(pos)
        mark_pcr(pcr)
        pos += size
        count += 1
        if count > MAX_ENTRIES:
            raise ImaMalformed(f"more than {MAX_ENTRIES} entries")
    else:
        mark(pos)
        return ImaList(ImaEntries(data, header.size - 8, offsets, data_starts, pcrs, plain), 0,
                       offsets, bank)
    mark(start)
    return ImaList(ImaEntries(data, header.size - 8, offsets, data_starts, pcrs, plain),
                   end - start, offsets, bank, _describe_cut(data, start, header, count))


_FIELDS = {b"ima-ng": 2, b"ima-sig": 3}


def _regular(data: bytes, pos: int, size: int, template: bytes) -> bool:
    """Whether an ima-ng or ima-sig entry's template data is exactly its length-prefixed
    fields (what decoding it would check); False for anything else, decoded instead."""
    fields = _FIELDS.get(template)
    if fields is None:
        return False
    end, u32 = pos + size, _U32.unpack_from
    for _ in range(fields):
        if pos + 4 > end:
            return False
        pos += 4 + u32(data, pos)[0]
    return pos == end


def _describe_cut(data: bytes, start: int, header: struct.Struct, index: int) -> str:
    """What the bytes after the last complete entry are: the start of entry ``index``
    (its PCR and how much of it is there), or stray bytes."""
    present = len(data) - start
    if present < header.size:
        return f"{present} stray bytes after entry {index - 1}" if index else \
            f"{present} bytes, shorter than an entry header"
    pcr, _, name_len = header.unpack_from(data, start)
    name = data[start + header.size:start + header.size + name_len]
    if name not in _TEMPLATE_NAMES:
        return f"{present} stray bytes after entry {index - 1}"
    at = start + header.size + name_len
    if name == b"ima" or at + 4 > len(data):
        return f"entry {index} (PCR {pcr}, {name.decode()}) is cut after {present} bytes"
    declared = _U32.unpack_from(data, at)[0]
    return (f"entry {index} (PCR {pcr}, {name.decode()}) declares {declared} bytes of "
            f"template data, {len(data) - at - 4} follow")


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
