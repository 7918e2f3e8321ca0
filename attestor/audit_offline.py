"""An audit export checked on its own: no database, no CA passphrase, only the
checkpoint public keys (``GET /v1/audit/checkpoint-key``, ``attestor audit key``).

An export (``GET /v1/audit/export``, ``attestor audit export``) is JSON Lines: the
entries in order, each signed checkpoint right after the entry it covers
(``{"checkpoint": …}``), and a last line the attestor signs when it finishes the
export (``{"export": {"seq", "hash", "entries", "filtered", "at", "sha256", "kid",
"signature"}}``), where ``sha256`` is the digest of every byte before that line.
The chain and its checkpoints prove the entries are what the attestor wrote; the
signed last line proves the file is what it exported: a changed byte, a removed,
added or moved line (checkpoint lines included) or a cut-off end all fail.

An unfiltered export of a pruned log starts with the anchor's checkpoint line (before
any entry): the chain is checked from there, as the database's is. An export written
before the prune still starts at genesis and verifies on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestor.audit_verify import AuditReport, ChainWalk, Mark
from attestor.db.chain import GENESIS

EXPORT_TAG = "edgeproof-audit-export-v1"
TRAILER_FIELDS = ("seq", "hash", "entries", "filtered", "at", "sha256", "kid")


def kid_of(public: ec.EllipticCurvePublicKey) -> str:
    """The key id the attestor gives a signing key (attestor/backends/signing.py)."""
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()[:16]


def public_pem(keys: Iterable[ec.EllipticCurvePublicKey]) -> str:
    """Every key as a PEM block, one after another (what ``--key`` reads)."""
    return "".join(k.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()
                   for k in keys)


def load_public_keys(pem: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
    """Every P-256 public key in a PEM file, by key id; ValueError if there is none."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    marker = b"-----END PUBLIC KEY-----"
    for block in pem.split(marker)[:-1]:
        key = serialization.load_pem_public_key(block.strip() + b"\n" + marker + b"\n")
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("a key in the file is not an EC public key")
        keys[kid_of(key)] = key
    if not keys:
        raise ValueError("no PEM public key in the file")
    return keys


def trailer_message(trailer: Mapping[str, Any]) -> bytes:
    body = {name: trailer[name] for name in TRAILER_FIELDS}
    return (EXPORT_TAG + ":" + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode()


def sign_trailer(fields: Mapping[str, Any], key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    signature = key.sign(trailer_message(fields), ec.ECDSA(hashes.SHA256()))
    return {**{name: fields[name] for name in TRAILER_FIELDS},
            "signature": base64.b64encode(signature).decode()}


@dataclass
class ExportReport(AuditReport):
    export_signed: bool = False  # the last line verified: the file is what was exported
    complete: bool = True  # False: a filtered export (entries checked one by one)
    exported_at: str | None = None


def _trailer_ok(report: ExportReport, trailer: Mapping[str, Any], digest: str,
                keys: Mapping[str, ec.EllipticCurvePublicKey], walk: ChainWalk) -> None:
    try:
        key = keys.get(str(trailer["kid"]))
        if key is None:
            raise InvalidSignature
        key.verify(base64.b64decode(trailer["signature"], validate=True),
                   trailer_message(trailer), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, KeyError, TypeError, ValueError):
        report.problem("audit.export_signature", report.last_seq, "the export's last line "
                       "does not verify with the given keys")
        return
    if trailer["sha256"] != digest:
        report.problem("audit.export_altered", report.last_seq, "the lines before the "
                       "signed last line are not the ones exported")
        return
    if (trailer["seq"], trailer["hash"], trailer["entries"]) != (
            report.last_seq, walk.prev, report.entries):
        report.problem("audit.export_altered", report.last_seq, "the signed last line "
                       "names another end of the log")
        return
    report.export_signed = True
    report.complete = not trailer["filtered"]
    report.exported_at = str(trailer["at"])


def _anchor_line(value: Mapping[str, Any]) -> Mark | None:
    try:
        return Mark.parse(value["checkpoint"]) if "checkpoint" in value else None
    except (KeyError, TypeError, ValueError):
        return None  # named as an unreadable checkpoint line


def verify_export(lines: Sequence[bytes], keys: Mapping[str, ec.EllipticCurvePublicKey],
                  external: Sequence[Mark] = ()) -> ExportReport:
    """Check an export's lines (as read, each with its newline): every entry's hash, the
    chain's links and sequence, its checkpoints and ``external`` ones a sink kept, and
    the signed last line over all the rest."""
    report = ExportReport()
    parsed: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, 1):
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            report.problem("audit.export_altered", 0, f"line {number} is not a JSON object")
            value = {}
        parsed.append(value)
    trailer = parsed[-1].get("export") if parsed else None
    filtered = bool(trailer.get("filtered")) if isinstance(trailer, dict) else False
    marks: list[Mark] = []
    for value in parsed[:-1] if trailer is not None else parsed:
        if "checkpoint" in value:
            try:
                marks.append(Mark.parse(value["checkpoint"]))
            except (KeyError, TypeError, ValueError):
                report.problem("audit.checkpoint_invalid", 0, "a checkpoint line is "
                               "unreadable")
    body = parsed[:-1] if trailer is not None else parsed
    # A checkpoint before any entry: the anchor of a pruned chain, which starts after it.
    base = _anchor_line(body[0]) if body and not filtered else None
    walk = ChainWalk(report, {m.seq for m in [*marks, *external]}, linked=not filtered,
                     start=(base.seq, base.hash) if base is not None else (0, GENESIS))
    walk.check_anchor(base, keys)
    for value in body:
        if value and "checkpoint" not in value and "export" not in value:
            walk.feed(value)
        elif "export" in value:
            report.problem("audit.export_altered", report.last_seq, "a signed last line "
                           "before the end")
    report.checkpoints = len(marks)
    walk.check_marks(marks, keys, "the checkpoint")
    report.external_checkpoints = len(set(external))
    walk.check_marks(external, keys, "the checkpoint the sink kept")
    if not isinstance(trailer, dict):
        report.problem("audit.export_unsigned", report.last_seq, "the export does not end "
                       "with its signed last line (cut off?)")
    else:
        digest = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
        _trailer_ok(report, trailer, digest, keys, walk)
    walk.finish()
    return report


def verify_export_file(data: bytes, pem: bytes, external: Sequence[Mark] = ()
                       ) -> ExportReport:
    """:func:`verify_export` on a file's bytes with the keys of a PEM file (ValueError
    if that holds none)."""
    return verify_export(data.splitlines(keepends=True), load_public_keys(pem), external)
