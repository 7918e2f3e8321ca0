"""Issuer backends: who signs device certificates (local CA by default)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from identity.x509.csr import CheckedCsr


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, up to (not including) the root

    @property
    def serial(self) -> str:
        return f"{self.cert.serial_number:x}"

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def chain_pem(self) -> str:
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain)


class Issuer(Protocol):
    """Signs short-lived workload certificates for checked CSRs. Names come from the
    device record, never from the CSR. Device identity certificates (long-lived, for
    TPM keys that have no CSR) and their CRL stay with the local CA."""

    #: True when the backend chooses the certificate's serial (Vault): the caller's
    #: reservation is then re-keyed to the serial actually issued.
    assigns_serials: bool

    def roots_pem(self) -> str:
        """Trust anchors a relying party needs to verify what this issuer signs."""
        ...

    def issue_workload(
        self, csr: CheckedCsr, *, device_id: str, now: dt.datetime, ttl: dt.timedelta,
        serial: int | None = None,
    ) -> IssuedCertificate:
        """A certificate for the CSR's key, lifetime at most ``ttl`` (the backend may
        clamp it further); ``serial`` is used unless the backend assigns serials."""
        ...

    def health(self, now: dt.datetime) -> None:
        """Return if the issuer can sign now; raise a ServiceError if not."""
        ...

    def ca_certificates(self, now: dt.datetime) -> list[x509.Certificate]:
        """The CA certificates workload certificates chain to, issuing CA first (their
        expiry is monitored); raise a ServiceError if the backend cannot say."""
        ...
