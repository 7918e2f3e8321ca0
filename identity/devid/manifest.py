"""The OEM's signed batch manifest: which devices (serial, IDevID certificate SHA-256)
a batch holds, for the buyer to import as ownership records.

Shape (JSON): ``{"manifest": <base64 of the canonical JSON payload>, "signature":
<base64 DER ECDSA-SHA256 or PKCS#1 v1.5>, "signer": <PEM of the signing certificate>}``.
The payload is ``{"format": "edgeproof-batch-manifest/v1", "oem": ..., "batch": ...,
"issued_at": RFC 3339, "devices": [{"serial": ..., "idevid_sha256": ...}, ...]}``. The
signer is a manufacturer root the owner imported, or a CA certificate it issued, valid
at ``now``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity.devid.evidence import verify_signature
from identity.errors import DeviceFieldInvalid, ManifestInvalid
from identity.x509.names import check_serial

FORMAT = "edgeproof-batch-manifest/v1"
MAX_DEVICES = 100_000
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    serial: str
    idevid_sha256: str | None  # None for a bare CSV of serials


@dataclass(frozen=True, slots=True)
class Manifest:
    oem: str
    batch: str
    issued_at: dt.datetime
    devices: tuple[ManifestEntry, ...]
    root_sha256: str  # the imported root the signer chains to: the devices are bound to it


def sign_manifest(key: ec.EllipticCurvePrivateKey, signer: x509.Certificate, *, oem: str,
                  batch: str, issued_at: dt.datetime,
                  devices: Sequence[ManifestEntry]) -> bytes:
    payload = json.dumps({
        "format": FORMAT, "oem": oem, "batch": batch,
        "issued_at": issued_at.astimezone(dt.UTC).isoformat(),
        "devices": [{"serial": d.serial, "idevid_sha256": d.idevid_sha256} for d in devices],
    }, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return json.dumps({
        "manifest": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(signature).decode(),
        "signer": signer.public_bytes(serialization.Encoding.PEM).decode(),
    }, indent=1).encode()


def _entry(raw: object, index: int) -> ManifestEntry:
    if not isinstance(raw, dict) or set(raw) != {"serial", "idevid_sha256"}:
        raise ManifestInvalid(f"device {index}: expected serial and idevid_sha256")
    serial, digest = raw["serial"], raw["idevid_sha256"]
    if not isinstance(serial, str) or not isinstance(digest, str) \
            or not _SHA256_HEX.fullmatch(digest):
        raise ManifestInvalid(f"device {index}: serial must be text, idevid_sha256 64 hex")
    try:
        check_serial(serial, f"device {index}")
    except DeviceFieldInvalid as exc:
        raise ManifestInvalid(exc.detail) from exc
    return ManifestEntry(serial, digest)


def certificate_sha256(cert: x509.Certificate) -> str:
    """The hex SHA-256 of a certificate's DER: how the owner names a manufacturer root."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _trusted_signer(signer: x509.Certificate, roots: Sequence[x509.Certificate],
                    now: dt.datetime) -> x509.Certificate | None:
    """The imported root that is the signer, or that signed the signer (a CA), if the
    signer is valid at ``now``; None otherwise."""
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        return None
    if signer in roots:
        return signer
    for root in roots:
        try:
            signer.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        try:
            ca = signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return None
        return root if ca else None
    return None


def verify_manifest(data: bytes, roots: Sequence[x509.Certificate], now: dt.datetime
                    ) -> Manifest:
    """The manifest's devices, once its signer chains to ``roots`` and its signature
    verifies; ManifestInvalid otherwise."""
    try:
        outer = json.loads(data)
        payload = base64.b64decode(outer["manifest"], validate=True)
        signature = base64.b64decode(outer["signature"], validate=True)
        signer = x509.load_pem_x509_certificate(outer["signer"].encode())
        body = json.loads(payload)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ManifestInvalid(f"manifest does not parse: {exc}") from exc
    root = _trusted_signer(signer, roots, now)
    if root is None:
        raise ManifestInvalid("the manifest's signer is not an imported manufacturer root "
                              "or a CA it issued, valid now")
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not verify_signature(
            key, signature, payload):
        raise ManifestInvalid("the manifest's signature does not verify with its signer")
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ManifestInvalid(f"not a {FORMAT} document")
    devices = body.get("devices")
    if not isinstance(devices, list) or not 0 < len(devices) <= MAX_DEVICES:
        raise ManifestInvalid(f"devices must list 1 to {MAX_DEVICES} entries")
    try:
        issued = dt.datetime.fromisoformat(str(body["issued_at"]))
        oem, batch = str(body["oem"]), str(body["batch"])
    except (KeyError, ValueError) as exc:
        raise ManifestInvalid(f"manifest header: {exc}") from exc
    entries = tuple(_entry(raw, i) for i, raw in enumerate(devices, 1))
    if len({e.serial for e in entries}) != len(entries):
        raise ManifestInvalid("a serial appears twice")
    return Manifest(oem, batch, issued, entries, certificate_sha256(root))


def parse_serial_csv(text: str) -> tuple[ManifestEntry, ...]:
    """A CSV of serials, one per line (first column; a ``serial`` header is skipped)."""
    entries: list[ManifestEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        serial = line.split(",")[0].strip()
        if not serial or (number == 1 and serial.lower() == "serial"):
            continue
        try:
            check_serial(serial, f"line {number}")
        except DeviceFieldInvalid as exc:
            raise ManifestInvalid(exc.detail) from exc
        entries.append(ManifestEntry(serial, None))
    if not entries or len({e.serial for e in entries}) != len(entries):
        raise ManifestInvalid("the CSV lists no serial, or one twice")
    return tuple(entries)
