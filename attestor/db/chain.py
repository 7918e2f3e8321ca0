"""The audit chain's entry hashes, and the frozen mapping of version-1 entries to the
current vocabulary. Wire format of the audit log: never change either in place (a new
format needs a new version tag; old entries keep the version they were written with).

- Version 1 (``edgeproof-audit-v1``): entries written before the vocabulary of
  docs/audit.md. Their stored fields were moved to the current vocabulary by migration
  0006; the values it replaced are kept in the entry's ``legacy`` field, so the
  original hash still verifies, and :func:`map_v1` (deterministic, frozen) proves the
  mapped fields are exactly what the original says.
- Version 2 (``edgeproof-audit-v2``): the hash also covers the client address and the
  user agent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
VERSION = "edgeproof-audit-v1"
VERSION_2 = "edgeproof-audit-v2"
CURRENT = 2  # the version new entries are written with
OUTCOMES = ("success", "refused", "error", "alert")


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(*, seq: int, at: dt.datetime, actor: str, action: str, outcome: str,
               device_id: str | None, subject: str | None, reasons: list[str],
               request_id: str | None, details: dict[str, Any], prev_hash: str) -> str:
    """Version 1: SHA-256 over the canonical JSON of every field and the previous
    entry's hash."""
    return _digest({
        "v": VERSION, "seq": seq, "at": _when(at), "actor": actor, "action": action,
        "outcome": outcome, "device_id": device_id, "subject": subject, "reasons": reasons,
        "request_id": request_id, "details": details, "prev": prev_hash,
    })


def entry_hash_v2(*, seq: int, at: dt.datetime, actor: str, action: str, outcome: str,
                  device_id: str | None, subject: str | None, reasons: list[str],
                  request_id: str | None, client_address: str | None,
                  user_agent: str | None, details: dict[str, Any], prev_hash: str) -> str:
    """Version 2: version 1's fields plus where the request came from."""
    return _digest({
        "v": VERSION_2, "seq": seq, "at": _when(at), "actor": actor, "action": action,
        "outcome": outcome, "device_id": device_id, "subject": subject, "reasons": reasons,
        "request_id": request_id, "client_address": client_address,
        "user_agent": user_agent, "details": details, "prev": prev_hash,
    })


# Every outcome word version 1 ever wrote (git history of attestor/), and its meaning now.
V1_OUTCOMES = {
    "pass": "success", "ok": "success", "done": "success", "created": "success",
    "enrolled": "success", "challenged": "success", "allow": "success",
    "fail": "refused", "refused": "refused", "deny": "refused",
    "error": "error",
    "alert": "alert", "dropped": "alert", "void": "alert",
}
MAPPED = ("actor", "outcome", "device_id", "reasons")  # the fields map_v1 may change


def map_v1(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The current vocabulary's values of a version-1 entry's ``MAPPED`` fields:
    outcome words to the enum (an unknown word is an ``alert``); reason codes that sat
    in ``details.reasons`` / ``details.reason`` into ``reasons``; a refused request's
    ``details.claimed_device`` into ``device_id``; the bare actor ``device`` of an
    entry about one device to ``device:<id>``."""
    details = entry.get("details") or {}
    outcome = V1_OUTCOMES.get(str(entry["outcome"]), "alert")
    reasons = list(entry.get("reasons") or [])
    if not reasons:
        found = details.get("reasons")
        if isinstance(found, list) and all(isinstance(r, str) for r in found):
            reasons = list(found)
        elif isinstance(details.get("reason"), str):
            reasons = [details["reason"]]
    device_id = entry.get("device_id")
    claimed = details.get("claimed_device")
    if device_id is None and isinstance(claimed, str) and 0 < len(claimed) <= 64:
        device_id = claimed
    actor = entry["actor"]
    if actor == "device" and device_id is not None:
        actor = f"device:{device_id}"
    return {"actor": actor, "outcome": outcome, "device_id": device_id, "reasons": reasons}


def recompute(entry: Mapping[str, Any]) -> tuple[str, bool]:
    """An entry's hash recomputed from its fields (as :func:`attestor.audit.event_json`
    gives them, ``at`` as a datetime), and whether its mapped fields are what its
    version says they must be."""
    version = int(entry.get("version") or 1)
    common = dict(seq=int(entry["seq"]), at=entry["at"], action=entry["action"],
                  subject=entry.get("subject"), request_id=entry.get("request_id"),
                  details=dict(entry.get("details") or {}), prev_hash=entry["prev_hash"])
    if version == 1:
        legacy = entry.get("legacy") or {}
        original = {f: legacy[f] if f in legacy else entry.get(f) for f in MAPPED}
        original["details"] = common["details"]
        digest = entry_hash(**common, actor=str(original["actor"]),
                            outcome=str(original["outcome"]),
                            device_id=original["device_id"],
                            reasons=list(original["reasons"] or []))
        mapped = map_v1(original)
        consistent = (all(mapped[f] == entry.get(f) for f in MAPPED)
                      and set(legacy) <= set(MAPPED))
        return digest, consistent
    if version != CURRENT:
        return "", False
    digest = entry_hash_v2(**common, actor=entry["actor"], outcome=entry["outcome"],
                           device_id=entry.get("device_id"), reasons=list(entry["reasons"]),
                           client_address=entry.get("client_address"),
                           user_agent=entry.get("user_agent"))
    return digest, entry.get("legacy") is None and entry["outcome"] in OUTCOMES
