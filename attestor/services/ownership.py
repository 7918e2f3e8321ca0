"""Ownership (docs/onboarding.md): the owner imports manufacturer roots and batch
manifests (or CSVs of serials) that pre-authorize devices for a device class, each serial
bound to one manufacturer root (the manifest's, or the one the CSV import names); revokes
and releases them. Every change is an audited operation (outcome success or refused)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session

from attestor import audit
from attestor.db import ownership_queries as q
from attestor.db.ownership_models import ManufacturerRoot, Ownership
from attestor.services.context import Services
from identity.devid.manifest import Manifest, ManifestEntry, parse_serial_csv, verify_manifest
from identity.errors import IdentityError, ManifestInvalid, OwnershipRootUnknown
from identity.truststore import load_certificates, self_signed
from identity.x509.names import check_serial

T = TypeVar("T")
DER = serialization.Encoding.DER


def _audited(svc: Services, actor: str, action: str, subject: str | None,
             work: Callable[[Session], tuple[T, dict[str, object]]]) -> T:
    """Run ``work`` in a transaction that also appends the success entry; a refusal is
    audited in its own transaction with its reason code, then raised."""
    now = svc.clock()
    try:
        with svc.session() as session, session.begin():
            result, details = work(session)
            audit.append(session, at=now, actor=actor, action=action, outcome="success",
                         subject=subject, details=details)
        return result
    except IdentityError as exc:
        with svc.session() as session, session.begin():
            audit.append(session, at=now, actor=actor, action=action, outcome="refused",
                         subject=subject, reasons=[exc.code])
        raise


def trusted_certificates(session: Session) -> tuple[list[x509.Certificate],
                                                    list[x509.Certificate]]:
    """(roots, intermediates) the owner imported for IAK/IDevID chains."""
    rows = q.roots(session)
    certs = [(row.is_root, x509.load_der_x509_certificate(row.certificate)) for row in rows]
    return [c for root, c in certs if root], [c for root, c in certs if not root]


def import_roots(svc: Services, pem: bytes, actor: str) -> list[ManufacturerRoot]:
    """Import manufacturer CA certificates (PEM); self-signed ones become roots."""
    try:
        certs = load_certificates(pem)
    except ValueError as exc:
        raise ManifestInvalid(f"the certificates do not parse: {exc}") from exc

    def work(session: Session) -> tuple[list[ManufacturerRoot], dict[str, object]]:
        added = []
        for cert in certs:
            try:
                ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                ca = False
            if not ca:
                raise ManifestInvalid(f"{cert.subject.rfc4514_string()} is not a CA")
            der = cert.public_bytes(DER)
            row = ManufacturerRoot(sha256=hashlib.sha256(der).hexdigest(),
                                   subject=cert.subject.rfc4514_string()[:512], certificate=der,
                                   is_root=self_signed(cert), imported_by=actor,
                                   imported_at=svc.clock())
            if q.put_root(session, row):
                added.append(row)
        return added, {"sha256": [r.sha256 for r in added]}

    return _audited(svc, actor, "ownership.root_import", None, work)


def remove_root(svc: Services, sha256: str, actor: str) -> ManufacturerRoot:
    """Stop trusting a certificate. Records bound to it stay bound (nothing else may
    onboard them; they onboard again if it is imported again); the audit entry counts
    the owned ones, which cannot onboard meanwhile."""
    return _audited(svc, actor, "ownership.root_remove", sha256, lambda s: (
        q.remove_root(s, sha256, svc.clock()),
        {"owned_bound": q.count_bound(s, sha256, q.OWNED)}))


def _import(svc: Services, entries: Sequence[ManifestEntry], device_class: str, actor: str,
            root_sha256: str, manifest: Manifest | None) -> dict[str, object]:
    def work(session: Session) -> tuple[dict[str, object], dict[str, object]]:
        if q.active_root(session, root_sha256) is None:  # checked in this transaction
            raise OwnershipRootUnknown(f"no imported manufacturer root {root_sha256} (an "
                                       "intermediate or a removed root does not count)")
        done = q.import_entries(
            session, entries, device_class=device_class, root_sha256=root_sha256,
            oem=manifest.oem[:128] if manifest else None,
            batch=manifest.batch[:128] if manifest else None, actor=actor, now=svc.clock())
        summary: dict[str, object] = {
            "created": done.created, "updated": done.updated,
            "already_onboarded": done.onboarded, "kept_revoked": done.revoked,
            "kept_conflicting": done.conflicting}
        return summary, {**summary, "device_class": device_class,
                         "source": "manifest" if manifest else "csv",
                         "root_sha256": root_sha256,
                         "batch": manifest.batch if manifest else None}

    return _audited(svc, actor, "ownership.import", None, work)


def import_manifest(svc: Services, data: bytes, device_class: str,
                    actor: str) -> dict[str, object]:
    """Verify the OEM's signed batch manifest against the imported roots, then own it."""
    with svc.session() as session:
        roots, _ = trusted_certificates(session)
    try:
        manifest = verify_manifest(data, roots, svc.clock())
    except ManifestInvalid as exc:
        with svc.session() as session, session.begin():
            audit.append(session, at=svc.clock(), actor=actor, action="ownership.import",
                         outcome="refused", reasons=[exc.code])
        raise
    return _import(svc, manifest.devices, device_class, actor, manifest.root_sha256,
                   manifest)


def import_csv(svc: Services, text: str, device_class: str, actor: str,
               root_sha256: str) -> dict[str, object]:
    """Own the serials of a CSV for the manufacturer root ``root_sha256`` (no IDevID
    fingerprints: any IDevID naming them may onboard, as long as its chain, and its
    IAK's, ends at that root)."""
    return _import(svc, parse_serial_csv(text), device_class, actor, root_sha256.lower(),
                   None)


def revoke(svc: Services, serial: str, actor: str) -> Ownership:
    check_serial(serial)
    return _audited(svc, actor, "ownership.revoke", serial, lambda s: (
        q.set_state(s, serial, q.REVOKED, svc.clock()), {}))


def release(svc: Services, serial: str, actor: str) -> Ownership:
    """Let an onboarded device onboard once more (a re-imaged or repaired device)."""
    check_serial(serial)
    return _audited(svc, actor, "ownership.release", serial, lambda s: (
        q.set_state(s, serial, q.OWNED, svc.clock()), {}))
