"""Issuer backends: who signs device certificates (local CA by default)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from identity.tpm.keys import PublicKey


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
    """Signs device certificates; names come from the caller's device record."""

    def roots_pem(self) -> str:
        """Trust anchors a relying party needs to verify what this issuer signs."""
        ...

    def issue_device_identity(
        self, public: PublicKey, *, device_id: str, serial: str | None, now: dt.datetime,
        cert_serial: int | None = None,
    ) -> IssuedCertificate:
        """``serial`` is the device's serial number (subject); ``cert_serial`` the
        certificate's, reserved by the caller before signing."""
        ...

    def issue_workload(
        self, public: PublicKey, *, device_id: str, now: dt.datetime, ttl: dt.timedelta,
        serial: int | None = None,
    ) -> IssuedCertificate: ...

    def health(self, now: dt.datetime) -> None:
        """Return if the issuer can sign now; raise a ServiceError if not."""
        ...

    def crl(self, revoked: list[tuple[int, dt.datetime, str]], now: dt.datetime,
            number: int) -> bytes:
        """A DER CRL of ``revoked`` (serial, time, reason), signed by the issuing CA."""
        ...
