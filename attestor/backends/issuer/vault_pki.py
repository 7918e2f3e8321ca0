"""Issuer backend ``vault``: workload certificates from Vault's PKI secrets engine.

Only ``<mount>/sign/<role>`` is used, never ``sign-verbatim``: the role bounds what
Vault will put in a certificate. The attestor asks for names built from the device
record (``spiffe://<trust-domain>/device/<id>``, optionally ``<id>.<dns_suffix>``)
and checks what comes back: the CSR's key, exactly those names, a lifetime within
what was asked. A certificate that differs is not handed out (the role must have
``use_csr_sans = false`` and ``use_csr_common_name = false``; a role that copies a
CSR's names would be caught here). The TTL is clamped to the role's ``max_ttl``,
read with the CA chain and cached for ``ca_chain_cache_seconds``.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import hvac
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestor.backends.issuer import IssuedCertificate
from attestor.backends.vault.connection import VaultConnection
from identity.errors import IssuerMismatch, VaultRefused
from identity.x509.csr import CheckedCsr, same_key
from identity.x509.profiles import spiffe_id

LIFETIME_SLACK = dt.timedelta(minutes=5)  # Vault backdates notBefore by 30 s by default


def _certs(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []
    except ValueError as exc:
        raise VaultRefused(f"Vault returned a certificate that does not parse: {exc}") from exc


def _seconds(value: Any) -> int:
    """A role's max_ttl: Vault's role read gives durations in seconds."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VaultRefused(f"cannot read the role's max_ttl {value!r}") from None


class VaultPki:
    assigns_serials = True

    def __init__(self, connection: VaultConnection, *, trust_domain: str) -> None:
        self.vault = connection
        self.mount = connection.settings.pki_mount
        self.role = connection.settings.pki_role
        self.dns_suffix = connection.settings.dns_suffix
        self.trust_domain = trust_domain
        self.cache_for = dt.timedelta(seconds=connection.settings.ca_chain_cache_seconds)
        self._chain: list[x509.Certificate] = []
        self._max_ttl: dt.timedelta | None = None
        self._fetched: dt.datetime | None = None
        self._lock = threading.Lock()

    def _refresh(self, now: dt.datetime) -> None:
        with self._lock:
            if self._fetched is not None and now - self._fetched < self.cache_for:
                return
            chain = self.vault.call(lambda c: c.secrets.pki.read_ca_certificate_chain(
                mount_point=self.mount))
            role = self.vault.call(lambda c: c.secrets.pki.read_role(
                self.role, mount_point=self.mount))
            certs = _certs(chain)
            if not certs:
                raise VaultRefused(f"{self.mount}/ca_chain is empty: no issuer configured")
            max_ttl = _seconds(role["data"].get("max_ttl") or 0)
            self._chain = certs
            self._max_ttl = dt.timedelta(seconds=max_ttl) if max_ttl else None
            self._fetched = now

    def clamp(self, ttl: dt.timedelta, now: dt.datetime) -> dt.timedelta:
        self._refresh(now)
        return min(ttl, self._max_ttl) if self._max_ttl else ttl

    def roots_pem(self) -> str:
        self._refresh(self.vault.clock())
        roots = [c for c in self._chain if c.issuer == c.subject] or self._chain[-1:]
        return "".join(c.public_bytes(Encoding.PEM).decode() for c in roots)

    def health(self, now: dt.datetime) -> None:
        self.vault.health()
        self._refresh(now)

    def ca_certificates(self, now: dt.datetime) -> list[x509.Certificate]:
        self._refresh(now)
        return list(self._chain)

    def issue_workload(
        self, csr: CheckedCsr, *, device_id: str, now: dt.datetime, ttl: dt.timedelta,
        serial: int | None = None,
    ) -> IssuedCertificate:
        if not csr.pem:
            raise VaultRefused("Vault signs CSRs: this request carries none")
        ttl = self.clamp(ttl, now)
        uri = spiffe_id(self.trust_domain, device_id)
        dns = f"{device_id}.{self.dns_suffix}" if self.dns_suffix else None
        params: dict[str, Any] = {"ttl": f"{int(ttl.total_seconds())}s", "uri_sans": uri,
                                  "exclude_cn_from_sans": True, "format": "pem"}
        if dns:
            params["alt_names"] = dns

        def sign(client: hvac.Client) -> Any:
            return client.secrets.pki.sign_certificate(
                self.role, csr.pem, device_id, extra_params=params, mount_point=self.mount)

        data = self.vault.call(sign).get("data") or {}
        certs = _certs(data.get("certificate", ""))
        if len(certs) != 1:
            raise VaultRefused("Vault's sign answer holds no single certificate")
        cert = certs[0]
        self._check(cert, csr, uri, dns, now, ttl)
        chain = tuple(_certs("\n".join(data.get("ca_chain") or [])
                             or data.get("issuing_ca", "")))
        chain = tuple(c for c in chain if c.issuer != c.subject) or chain[:1]
        return IssuedCertificate(cert, chain)

    @staticmethod
    def _check(cert: x509.Certificate, csr: CheckedCsr, uri: str, dns: str | None,
               now: dt.datetime, ttl: dt.timedelta) -> None:
        if not same_key(cert.public_key(), csr.public_key):  # type: ignore[arg-type]
            raise IssuerMismatch("Vault certified another key than the CSR's")
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise IssuerMismatch("Vault's certificate has no subject alternative names") \
                from None
        uris = set(sans.get_values_for_type(x509.UniformResourceIdentifier))
        dnss = set(sans.get_values_for_type(x509.DNSName))
        others = [n for n in sans if not isinstance(
            n, x509.UniformResourceIdentifier | x509.DNSName)]
        if uris != {uri} or dnss != ({dns} if dns else set()) or others:
            raise IssuerMismatch(f"Vault's certificate names {sorted(uris | dnss)}, not the "
                                 "device's (does the role copy CSR names?)")
        if cert.not_valid_after_utc > now + ttl + LIFETIME_SLACK:
            raise IssuerMismatch("Vault's certificate outlives the requested TTL")
