"""Certificate revocation lists (RFC 5280) for the long-lived device identity certificates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from identity.x509.profiles import SigningCa

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}


def build_crl(issuer: SigningCa, revoked: Iterable[tuple[int, dt.datetime, str]],
              now: dt.datetime, next_update: dt.timedelta,
              number: int) -> x509.CertificateRevocationList:
    """A CRL signed by ``issuer``: (serial, revocation time, reason) per entry."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject)
               .last_update(now)
               .next_update(now + next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.key.public_key()), critical=False))
    for serial, when, reason in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
                 .add_extension(x509.CRLReason(REASONS.get(reason, x509.ReasonFlags.unspecified)),
                                critical=False).build())
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256())
