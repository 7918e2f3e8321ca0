"""The embedded two-level CA: a root and an issuing CA, P-256, keys encrypted on disk.

Layout under ``<data-dir>/ca``: ``root.pem``, ``root.key``, ``issuing.pem``,
``issuing.key`` (keys 0600, PKCS#8 encrypted with the CA passphrase).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestor.backends.files import write_private
from attestor.backends.issuer import IssuedCertificate, pem_text
from identity.errors import ServiceError
from identity.tpm.keys import PublicKey
from identity.x509.crl import build_crl
from identity.x509.csr import CheckedCsr
from identity.x509.profiles import (
    SigningCa,
    device_identity_certificate,
    issuing_ca,
    root_ca,
    tls_server_certificate,
    workload_certificate,
)

CRL_VALIDITY = dt.timedelta(days=1)


class CaError(ServiceError):
    code = "issuer.local_ca"


def _encrypted(key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class LocalCa:
    """Issuer backed by the on-disk CA pair; also the device identity CA and its CRL."""

    assigns_serials = False

    def __init__(
        self,
        root: x509.Certificate,
        issuing: SigningCa,
        *,
        trust_domain: str,
        device_identity_days: int,
    ) -> None:
        self.root = root
        self.issuing = issuing
        self.trust_domain = trust_domain
        self.device_identity_days = device_identity_days

    @staticmethod
    def create(
        ca_dir: Path,
        passphrase: bytes,
        now: dt.datetime,
        *,
        name: str,
        root_days: int,
        issuing_days: int,
    ) -> None:
        """Generate and store a new root and issuing CA; refuses to overwrite."""
        if (ca_dir / "root.pem").exists():
            raise CaError(f"a CA already exists in {ca_dir}")
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_cert = root_ca(root_key, f"{name} root CA", now, root_days)
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        issuing_cert = issuing_ca(
            SigningCa(root_key, root_cert), issuing_key, f"{name} issuing CA", now, issuing_days
        )
        ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(ca_dir / "root.key", _encrypted(root_key, passphrase))
        write_private(ca_dir / "issuing.key", _encrypted(issuing_key, passphrase))
        write_private(ca_dir / "root.pem", _pem(root_cert), mode=0o644)
        write_private(ca_dir / "issuing.pem", _pem(issuing_cert), mode=0o644)

    @classmethod
    def load(
        cls, ca_dir: Path, passphrase: bytes, *, trust_domain: str, device_identity_days: int
    ) -> LocalCa:
        try:
            root = x509.load_pem_x509_certificate((ca_dir / "root.pem").read_bytes())
            cert = x509.load_pem_x509_certificate((ca_dir / "issuing.pem").read_bytes())
            key_pem = (ca_dir / "issuing.key").read_bytes()
        except (OSError, ValueError) as exc:
            raise CaError(f"cannot read the local CA in {ca_dir}: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(key_pem, passphrase)
        except (ValueError, TypeError) as exc:
            raise CaError("cannot decrypt the issuing CA key: wrong passphrase?") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError("the issuing CA key is not an EC key")
        return cls(
            root,
            SigningCa(key, cert),
            trust_domain=trust_domain,
            device_identity_days=device_identity_days,
        )

    def health(self, now: dt.datetime) -> None:
        cert = self.issuing.cert
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise CaError("the issuing CA certificate is not valid now")

    def roots_pem(self) -> str:
        return pem_text((self.root,))

    def ca_certificates(self, now: dt.datetime) -> list[x509.Certificate]:
        return [self.issuing.cert, self.root]

    def issue_device_identity(
        self, public: PublicKey, *, device_id: str, serial: str | None, now: dt.datetime,
        cert_serial: int | None = None,
    ) -> IssuedCertificate:
        cert = device_identity_certificate(
            self.issuing, public, device_id=device_id, serial=serial,
            trust_domain=self.trust_domain, now=now, days=self.device_identity_days,
            cert_serial=cert_serial,
        )
        return IssuedCertificate(cert, (self.issuing.cert,))

    def issue_workload(
        self, csr: CheckedCsr, *, device_id: str, now: dt.datetime, ttl: dt.timedelta,
        serial: int | None = None,
    ) -> IssuedCertificate:
        cert = workload_certificate(
            self.issuing, csr.public_key, device_id=device_id, trust_domain=self.trust_domain,
            now=now, ttl=ttl, serial=serial,
        )
        return IssuedCertificate(cert, (self.issuing.cert,))

    def issue_tls_server(
        self, public: PublicKey, *, dns_names: tuple[str, ...],
        ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
        now: dt.datetime, days: int,
    ) -> IssuedCertificate:
        """The attestor's HTTPS certificate, from the same issuing CA: an agent that trusts
        the attestor's root (``attestor ca``) then verifies it with no other bundle."""
        cert = tls_server_certificate(self.issuing, public, dns_names=dns_names,
                                      ip_addresses=ip_addresses, now=now, days=days)
        return IssuedCertificate(cert, (self.issuing.cert,))

    def crl(self, revoked: list[tuple[int, dt.datetime, str]], now: dt.datetime,
            number: int) -> bytes:
        return build_crl(self.issuing, revoked, now, CRL_VALIDITY, number).public_bytes(
            serialization.Encoding.DER)
