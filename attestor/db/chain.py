"""The audit chain's entry hash. Wire format of the audit log: never change it in place
(a new format needs a new version tag and a migration that re-chains)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

GENESIS = "0" * 64
VERSION = "edgeproof-audit-v1"


def entry_hash(*, seq: int, at: dt.datetime, actor: str, action: str, outcome: str,
               device_id: str | None, subject: str | None, reasons: list[str],
               request_id: str | None, details: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the canonical JSON of every field and the previous entry's hash."""
    body = {
        "v": VERSION, "seq": seq, "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": actor, "action": action, "outcome": outcome, "device_id": device_id,
        "subject": subject, "reasons": reasons, "request_id": request_id, "details": details,
        "prev": prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
