"""The EK trust store for operators: what it holds, and importing vendor CAs over the API
(the same files ``attestor trust add`` writes; every replica sharing the directory
follows it, attestor/trust.py says how)."""

from __future__ import annotations

import hashlib
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestor import audit
from attestor.auth import Principal
from attestor.models.fleet import (
    TrustAdd,
    TrustCertificate,
    TrustFileProblem,
    TrustImport,
    TrustStorePublic,
)
from attestor.services.context import Services
from attestor.trust import store_certificates
from identity.errors import Conflict
from identity.truststore import TrustStore, load_certificates


def _certificate(kind: Literal["root", "intermediate"], cert: x509.Certificate) -> TrustCertificate:
    der = cert.public_bytes(serialization.Encoding.DER)
    return TrustCertificate(kind=kind, subject=cert.subject.rfc4514_string(),
                            issuer=cert.issuer.rfc4514_string(),
                            not_after=cert.not_valid_after_utc,
                            sha256=hashlib.sha256(der).hexdigest())


def view(store: TrustStore) -> TrustStorePublic:
    """The store as the API and ``attestor trust list -o json`` show it."""
    return TrustStorePublic(
        certificates=[*(_certificate("root", c) for c in store.roots),
                      *(_certificate("intermediate", c) for c in store.intermediates)],
        re_encoded=list(store.normalized),
        not_loaded=[TrustFileProblem(source=s, problem=p) for s, p in store.rejected])


def file_name(data: bytes) -> str:
    """The store's name for an imported item: its first certificate's digest, so the
    same certificate imported twice is one file."""
    first = load_certificates(data)[0].public_bytes(serialization.Encoding.DER)
    suffix = "pem" if b"-----BEGIN" in data else "der"
    return f"api-{hashlib.sha256(first).hexdigest()[:24]}.{suffix}"


def add(svc: Services, request: TrustAdd, caller: Principal) -> TrustImport:
    """Import each item that holds certificates; audited with the stored names and the
    certificates' subjects (public data)."""
    directory = svc.settings.trust_dir
    imported: list[str] = []
    subjects: list[str] = []
    refused: list[TrustFileProblem] = []
    for index, data in enumerate(request.certificates):
        try:
            name = file_name(data)
            store_certificates(directory, name, data)
        except ValueError as exc:
            refused.append(TrustFileProblem(source=f"certificates[{index}]", problem=str(exc)))
            continue
        except OSError as exc:
            raise Conflict(f"the trust store {directory} cannot be written here "
                           f"({exc.strerror or exc}); under Kubernetes it is a ConfigMap: "
                           "change that instead") from exc
        imported.append(name)
        subjects += [c.subject.rfc4514_string() for c in load_certificates(data)]
    now = svc.clock()
    with svc.session() as session, session.begin():
        audit.append(session, at=now, actor=caller.actor, action="trust.add",
                     outcome="done" if imported else "refused", subject="trust:ek-roots",
                     details={"imported": imported, "subjects": subjects,
                              "refused": [r.model_dump() for r in refused]})
    return TrustImport(imported=imported, refused=refused)
