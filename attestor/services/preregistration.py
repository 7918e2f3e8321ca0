"""Pre-registration of devices by their manufacturer (JSON or CSV), before they enroll."""

from __future__ import annotations

import base64
import csv
import hashlib
import io

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attestor import audit
from attestor.auth import Principal
from attestor.db import queries
from attestor.db.models import Preregistration
from attestor.models.operator import (
    Page,
    PreregistrationIn,
    PreregistrationPublic,
    PreregistrationResult,
)
from attestor.services.context import Services
from attestor.services.devices import decode_position, encode_cursor
from identity.errors import MalformedInput
from identity.roca import roca_vulnerable
from identity.truststore import load_certificates
from identity.x509.names import check_serial

CSV_COLUMNS = ("serial", "model", "device_class", "ek_certificate", "ek_public_key")
MAX_ROWS = 10_000


def _ek_key(item: PreregistrationIn, row: int) -> tuple[str, bytes | None]:
    """(SHA-256 of the EK's SubjectPublicKeyInfo, the certificate if given)."""
    key: object
    if item.ek_certificate:
        try:
            key = load_certificates(item.ek_certificate)[0].public_key()
        except ValueError as exc:
            raise MalformedInput(f"device {row}: the EK certificate does not parse") from exc
        cert: bytes | None = item.ek_certificate
    elif item.ek_public_key:
        data = item.ek_public_key
        try:
            key = (serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----")
                   else serialization.load_der_public_key(data))
        except (ValueError, TypeError) as exc:
            raise MalformedInput(f"device {row}: the EK public key does not parse") from exc
        cert = None
    else:
        raise MalformedInput(f"device {row}: give an EK certificate or an EK public key")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise MalformedInput(f"device {row}: the EK is neither RSA nor ECC")
    if isinstance(key, rsa.RSAPublicKey) and roca_vulnerable(key.public_numbers().n):
        raise MalformedInput(f"device {row}: the EK's RSA modulus is ROCA-vulnerable")
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest(), cert


def create(svc: Services, items: list[PreregistrationIn],
           caller: Principal) -> PreregistrationResult:
    now = svc.clock()
    rows = []
    for number, item in enumerate(items, 1):
        check_serial(item.serial, f"device {number}")  # it goes into the certificate
        digest, cert = _ek_key(item, number)
        rows.append(Preregistration(ek_key_sha256=digest, serial=item.serial, model=item.model,
                                    device_class=item.device_class, ek_certificate=cert,
                                    created_by=caller.actor, created_at=now))
    if len({r.ek_key_sha256 for r in rows}) != len(rows):
        raise MalformedInput("the batch names the same EK twice")
    with svc.session() as session, session.begin():
        queries.add_preregistrations(session, rows)
        audit.append(session, at=now, actor=caller.actor, action="preregistration.create",
                     outcome="done", details={"count": len(rows),
                                              "serials": [r.serial for r in rows[:20]]})
    return PreregistrationResult(created=len(rows))


def parse_csv(text: str) -> list[PreregistrationIn]:
    """CSV with a header: serial, model, device_class, ek_certificate (base64 DER or PEM),
    ek_public_key (base64 DER)."""
    try:
        return _parse_csv(text)
    except csv.Error as exc:
        raise MalformedInput(f"the CSV does not parse: {exc}") from exc


def _parse_csv(text: str) -> list[PreregistrationIn]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or "serial" not in reader.fieldnames:
        raise MalformedInput(f"the CSV needs a header with {', '.join(CSV_COLUMNS)}")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise MalformedInput(f"unknown CSV columns: {', '.join(sorted(unknown))}")
    items = []
    for number, row in enumerate(reader, 1):
        if number > MAX_ROWS:
            raise MalformedInput(f"more than {MAX_ROWS} rows")
        try:
            fields: dict[str, object] = {"serial": row["serial"]}
            for name in ("model", "device_class"):
                if row.get(name):
                    fields[name] = row[name]
            for name in ("ek_certificate", "ek_public_key"):
                value = (row.get(name) or "").strip()
                if value:
                    fields[name] = (value.encode() if value.startswith("-----")
                                    else base64.b64decode(value, validate=True))
            items.append(PreregistrationIn.model_validate(fields))
        except ValueError as exc:
            raise MalformedInput(f"CSV row {number}: {exc}") from exc
    if not items:
        raise MalformedInput("the CSV holds no devices")
    return items


def pending(svc: Services, cursor: str | None, limit: int) -> Page[PreregistrationPublic]:
    after = decode_position(cursor) or 0
    with svc.session() as session:
        rows = queries.pending_preregistrations(session, after, limit + 1)
    items = [PreregistrationPublic.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)
