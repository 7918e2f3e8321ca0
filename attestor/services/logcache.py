"""Parsed TCG event logs, kept by the SHA-256 of their bytes (bounded, least recently used
first out). A device sends the same measured-boot log at every attestation until it
reboots, and parsing and summarising it cost 0.2–1.3 ms of CPU per attestation on the
corpus logs: hashing it costs a few microseconds. The cached values are the parser's own
results (``EventLog``, ``BootSummary``), which nothing downstream changes; a log that
fails to parse is not kept, so it is refused again, each time, with the same reason.
Keyed by a collision-resistant digest, a different log can never get another's parse."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from identity.eventlog.summary import BootSummary, summarize
from identity.eventlog.tcg import EventLog, parse_event_log

# Bounded by count and by the logs' bytes: a parsed log with its summary takes about 3.5
# times its size in memory (135 KiB for a 38 KB Ubuntu log), so 8 MB of logs is some 30 MB.
# A log over an eighth of the budget (a request may carry 4 MB) is parsed every time, so a
# device sending huge logs cannot push the others out or grow the process.
DEFAULT_SIZE = 256
DEFAULT_BYTES = 8 * 1024 * 1024


class ParsedLog:
    """One log's parse, and its boot summary once asked for."""

    __slots__ = ("log", "_summary")

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._summary: BootSummary | None = None

    def summary(self) -> BootSummary:
        if self._summary is None:
            self._summary = summarize(self.log)
        return self._summary


class ParsedLogs:
    """Thread-safe; a miss parses outside the lock (two threads may both parse one new
    log, and either result is the same)."""

    def __init__(self, size: int = DEFAULT_SIZE, max_bytes: int = DEFAULT_BYTES) -> None:
        if size < 1 or max_bytes < 1:
            raise ValueError("the cache holds at least one log")
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[bytes, tuple[ParsedLog, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, data: bytes) -> ParsedLog:
        """The parse of ``data``; raises the parser's error for a malformed log."""
        key = hashlib.sha256(data).digest()
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found[0]
        entry = ParsedLog(parse_event_log(data))  # raises for a malformed log: nothing kept
        if len(data) * 8 > self._max_bytes:
            return entry
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (entry, len(data))
                self._bytes += len(data)
            while len(self._entries) > self._size or self._bytes > self._max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][1]
        return entry

    @property
    def held_bytes(self) -> int:
        """The bytes of the logs kept (what the budget counts)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
