"""Issuer backends: who signs device certificates (local CA by default)."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from identity.x509.csr import CheckedCsr


@functools.lru_cache(maxsize=32)
def pem_text(certificates: tuple[x509.Certificate, ...]) -> str:
    """The PEM of CA certificates (a chain, a root): immutable, so each is encoded once
    per process (bounded: an issuer has a handful)."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, up to (not including) the root
    # serial and PEM, encoded once: an attestation reads them several times
    _text: dict[str, str] = field(default_factory=dict, init=False, repr=False,
                                  compare=False)

    @property
    def serial(self) -> str:
        serial = self._text.get("serial")
        if serial is None:
            serial = self._text["serial"] = f"{self.cert.serial_number:x}"
        return serial

    @property
    def pem(self) -> str:
        pem = self._text.get("pem")
        if pem is None:
            pem = self._text["pem"] = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        return pem

    @property
    def chain_pem(self) -> str:
        return pem_text(self.chain)


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
