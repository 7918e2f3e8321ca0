"""The audit log as a self-verifying export (format: :mod:`attestor.audit_offline`),
streamed page by page, and the public keys that verify it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from sqlmodel import select

from attestor import audit
from attestor.audit_offline import public_pem, sign_trailer
from attestor.audit_verify import anchor
from attestor.db import queries
from attestor.db.chain import GENESIS
from attestor.db.models import AuditCheckpoint
from attestor.services.context import Services


def _line(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def export_lines(svc: Services, f: queries.AuditFilter) -> Iterator[bytes]:
    """Every matching entry (and, unfiltered, each checkpoint after the entry it covers),
    then the last line signed with the attestor's current key."""
    filtered = f != queries.AuditFilter()
    with svc.session() as session:
        base, base_hash = anchor(session)
        marks = {} if filtered else {
            c.seq: c for c in session.exec(select(AuditCheckpoint)).all()}
    digest = hashlib.sha256()
    # After a prune, an unfiltered export starts with the anchor's checkpoint line.
    after, entries, last_hash = (0, 0, GENESIS) if filtered else (base, 0, base_hash)
    if base and not filtered:
        line = _line({"checkpoint": audit.checkpoint_json(marks[base])}) \
            if base in marks else _line({"checkpoint": None})  # a missing anchor fails
        digest.update(line)
        yield line
    cursor = base  # what a prune left behind is not exported
    while True:
        with svc.session() as session:
            rows = queries.audit_page(session, f, cursor, audit.BATCH)
        if not rows:
            break
        for row in rows:
            lines = [_line(audit.event_json(row))]
            if row.seq in marks:
                lines.append(_line({"checkpoint": audit.checkpoint_json(marks[row.seq])}))
            for line in lines:
                digest.update(line)
                yield line
            entries, last_hash = entries + 1, row.hash
        after = cursor = rows[-1].seq
    signer = svc.signer
    trailer = sign_trailer({"seq": after, "hash": last_hash, "entries": entries,
                            "filtered": filtered, "at": svc.clock().isoformat(),
                            "sha256": digest.hexdigest(), "kid": signer.kid}, signer.key)
    yield _line({"export": trailer})


def checkpoint_keys_pem(svc: Services) -> str:
    """Every key of the ring (retired ones still verify the checkpoints they signed)."""
    return public_pem(svc.keys.all_public().values())
