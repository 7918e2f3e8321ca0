"""One IMA measurement-list entry, decoded from its template data, and the entries of a
binary list kept as offsets into its bytes until one is read (see :mod:`identity.ima.log`
for the format)."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload

from identity.errors import ImaMalformed, ImaUnsupportedTemplate

TEMPLATES = ("ima", "ima-ng", "ima-sig", "ima-buf")
IMA_NAME_PADDED = 256  # IMA_EVENT_NAME_LEN_MAX + 1: the 'ima' template hashes the name padded
MAX_FIELD = 64 * 1024
_U32 = struct.Struct("<I")


class ImaEntry(NamedTuple):
    pcr: int
    template_hash: bytes  # in the list's bank (SHA-1 unless per-bank); all zero: a violation
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


class ImaEntries(Sequence[ImaEntry]):
    """The entries of a binary list, checked at parse time but kept as offsets into its
    bytes: an :class:`ImaEntry` is built only when one is read (appraisal, the boot
    aggregate), and the replay hashes the template data in place
    (:func:`identity.ima.replay.replay_ima`). Slices share the bytes."""

    __slots__ = ("data", "hash_size", "starts", "data_starts", "pcrs", "lo", "hi", "plain")

    def __init__(self, data: bytes, hash_size: int, starts: list[int], data_starts: list[int],
                 pcrs: list[int], plain: bool, lo: int = 0, hi: int | None = None) -> None:
        self.data, self.hash_size = data, hash_size
        self.starts = starts  # each entry's offset, then the end of the last one
        self.data_starts = data_starts  # where each entry's template data begins
        self.pcrs = pcrs
        self.plain = plain  # no 'ima' entry: every entry's hash input is its template data
        self.lo, self.hi = lo, len(pcrs) if hi is None else hi

    def __len__(self) -> int:
        return self.hi - self.lo

    @overload
    def __getitem__(self, index: int) -> ImaEntry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ImaEntry]: ...

    def __getitem__(self, index: int | slice) -> ImaEntry | Sequence[ImaEntry]:
        if isinstance(index, slice):
            lo, hi, step = index.indices(len(self))
            if step != 1:
                return list(self)[index]
            return ImaEntries(self.data, self.hash_size, self.starts, self.data_starts,
                              self.pcrs, self.plain, self.lo + lo, self.lo + max(lo, hi))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("IMA entry index out of range")
        return self._entry(self.lo + index)

    def __iter__(self) -> Iterator[ImaEntry]:
        return map(self._entry, range(self.lo, self.hi))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ImaEntries({len(self)} entries)"

    def _entry(self, i: int) -> ImaEntry:
        data, start = self.data, self.starts[i]
        name_at = start + 8 + self.hash_size
        name = data[name_at:name_at + _U32.unpack_from(data, name_at - 4)[0]]
        template_hash = data[start + 4:start + 4 + self.hash_size]
        body = data[self.data_starts[i]:self.starts[i + 1]]
        if name == b"ima-ng":
            return _ng_entry(self.pcrs[i], template_hash, body)
        return _entry(self.pcrs[i], template_hash, name.decode("ascii", errors="replace"), body)


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
