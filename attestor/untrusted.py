"""Untrusted text on its way into storage: any value becomes storable in any text column
of PostgreSQL and SQLite, bounded, and the original bytes stay recoverable as hex.

PostgreSQL refuses NUL in text, neither database can encode a lone surrogate (what
Python makes of invalid UTF-8 with ``surrogateescape``, or of a JSON ``"\\udc80"``),
and a ``varchar(n)`` refuses longer values. So a request whose path, header or claim
holds such a value must not be able to make its own audit entry fail (and the
refusal vanish). :func:`storable` escapes what a column cannot hold or a terminal
should not print (control characters as ``\\xNN``, a byte that was not UTF-8 as
``\\xNN``, other lone surrogates as ``\\uXXXX``) and cuts at a bound with a marker;
:func:`raw` keeps what was changed: the original bytes (a bounded prefix) in hex,
their length and, when cut, their SHA-256. Backslashes are left alone, so ordinary
values are stored unchanged; where an escape and a literal backslash could be
confused, the hex is the record. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

HEX_BYTES = 256  # raw bytes kept as hex per changed value
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PARTIAL_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3})?$")
TRUNCATED = "…[cut]"
DETAIL_TEXT, DETAIL_KEY, DETAILS_BYTES, DETAILS_DEPTH = 2048, 128, 65536, 8


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def from_bytes(data: bytes) -> str:
    """Bytes received from the network as text that still carries every byte."""
    return data.decode("utf-8", "surrogateescape")


def storable(value: str, limit: int) -> str:
    """``value`` with unstorable characters escaped, at most ``limit`` characters."""
    head = value[:limit + 1]  # escaping never shortens: nothing past this can fit
    text = _UNSAFE.sub(_escape, head)
    if len(value) <= limit and len(text) <= limit:
        return text
    cut = text[:max(0, limit - len(TRUNCATED))]
    return _PARTIAL_ESCAPE.sub("", cut) + TRUNCATED


def original_bytes(value: str) -> bytes:
    """The bytes a (possibly surrogate-escaped) string stands for."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def raw(value: str) -> dict[str, object]:
    """What :func:`storable` changed in ``value``: its bytes as hex (the first
    ``HEX_BYTES``), their length, and their SHA-256 when the hex is partial."""
    data = original_bytes(value)
    record: dict[str, object] = {"hex": data[:HEX_BYTES].hex(), "bytes": len(data)}
    if len(data) > HEX_BYTES:
        record["sha256"] = hashlib.sha256(data).hexdigest()
    return record


class Cleaner:
    """Makes every string of a record storable; remembers the raw bytes of what changed
    (at most ``max_raw`` values, each under the clean name of where it was)."""

    def __init__(self, max_raw: int = 8) -> None:
        self.raw: dict[str, object] = {}
        self.max_raw = max_raw

    def text(self, where: str, value: str, limit: int) -> str:
        clean = storable(value, limit)
        if clean != value and len(self.raw) < self.max_raw:
            self.raw[where] = raw(value)
        return clean

    def optional(self, where: str, value: str | None, limit: int) -> str | None:
        return None if value is None else self.text(where, value, limit)

    def json(self, where: str, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(where, value, DETAIL_TEXT)
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)  # NaN is not JSON
        if depth < DETAILS_DEPTH and isinstance(value, Mapping):
            cleaned: dict[str, Any] = {}
            for key, item in value.items():
                name = storable(str(key), DETAIL_KEY)
                place = f"{where}.{name[:32]}"  # made of clean text only
                if name != str(key) and len(self.raw) < self.max_raw:
                    self.raw[f"{place}:key"] = raw(str(key))
                cleaned[name] = self.json(place, item, depth + 1)
            return cleaned
        if depth < DETAILS_DEPTH and isinstance(value, list | tuple):
            return [self.json(f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)]
        return self.text(where, str(value), DETAIL_TEXT)

    def details(self, details: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A JSON object for a bounded column; the raw bytes of what changed under
        ``"raw"`` (by where they were)."""
        clean: dict[str, Any] = self.json(where, details)
        size = len(json.dumps(clean, separators=(",", ":")))
        if size > DETAILS_BYTES:  # keep a fingerprint, not the bulk
            digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
            clean = {"cut": True, "bytes": size, "sha256": digest, "keys": sorted(clean)[:50]}
        if self.raw:
            clean["raw"] = self.raw
        return clean
