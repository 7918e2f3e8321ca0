"""Certificate authorities for TLS tests: another CA than the attestor's, and leaves with
chosen names, usages and validity (expired, not yet valid, wrong name)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attestor.backends.issuer.local_ca import LocalCa
from identity.x509.profiles import SigningCa, root_ca


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class TestCa:
    """A one-level CA in ``directory``: ``root.pem`` and the leaves it issues."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str, *, subject: x509.Name | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = root_ca(key, name, now, 30)
        if subject is not None:  # an impostor: another key under a trusted CA's name
            cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(cert.not_valid_before_utc)
                    .not_valid_after(cert.not_valid_after_utc)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                    .sign(key, hashes.SHA256()))
        self.ca = SigningCa(key, cert)
        self.root_pem = directory / "root.pem"
        self.root_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _leaf(self, name: str, sans: list[x509.GeneralName], eku: x509.ObjectIdentifier,
              not_before: dt.datetime, not_after: dt.datetime) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self.ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.ExtendedKeyUsage([eku]), False)
                .add_extension(x509.SubjectAlternativeName(sans), False)
                .sign(self.ca.key, hashes.SHA256()))
        stem = self.directory / f"{name}-{cert.serial_number:x}"[:60]
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return cert_path, key_path

    def issue_server(self, *names: str, valid: tuple[dt.timedelta, dt.timedelta] = (
            dt.timedelta(hours=-1), dt.timedelta(days=1))) -> tuple[Path, Path]:
        """A serverAuth certificate for DNS names and IP addresses, valid ``now + valid``."""
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = dt.datetime.now(dt.UTC)
        return self._leaf(names[0], sans, ExtendedKeyUsageOID.SERVER_AUTH, now + valid[0],
                          now + valid[1])

    def issue_client(self, name: str) -> tuple[Path, Path]:
        now = dt.datetime.now(dt.UTC)
        return self._leaf(name, [x509.DNSName(f"{name}.clients.test")],
                          ExtendedKeyUsageOID.CLIENT_AUTH, now - dt.timedelta(hours=1),
                          now + dt.timedelta(days=1))


def server_files(ca: LocalCa, directory: Path, now: dt.datetime) -> tuple[Path, Path]:
    """``tls.pem`` and ``tls.key`` in ``directory`` for localhost and 127.0.0.1, from the
    attestor's CA, as `attestor tls issue` makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_tls_server(key.public_key(), dns_names=("localhost",),
                                 ip_addresses=(ipaddress.ip_address("127.0.0.1"),), now=now,
                                 days=1)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.pem").write_text(issued.pem + issued.chain_pem)
    (directory / "tls.key").write_bytes(_pem_key(key))
    return directory / "tls.pem", directory / "tls.key"
