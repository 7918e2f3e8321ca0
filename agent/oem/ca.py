"""The OEM's certificate authority: a root and an issuing CA in one directory.

``root.pem`` is what buyers import (the manufacturer root); ``issuing.pem`` and
``issuing.key`` sign IAK/IDevID certificates and batch manifests. Keys are written
owner-only; a real factory keeps them in an HSM (docs/onboarding.md, "Secrets").
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity.devid.profile import NO_EXPIRY, OemCa


@dataclass(frozen=True, slots=True)
class OemAuthority:
    directory: Path
    organization: str
    root: x509.Certificate
    issuing: OemCa

    @property
    def root_pem(self) -> Path:
        return self.directory / "root.pem"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _name(organization: str, what: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} {what}")])


def _ca(subject: x509.Name, public: ec.EllipticCurvePublicKey, issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey, now: dt.datetime, path_length: int
        ) -> x509.Certificate:
    """A CA certificate that, like the IDevIDs it vouches for, never expires (IEEE
    802.1AR: notAfter 99991231235959Z); an OEM retires it by telling its buyers."""
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(NO_EXPIRY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
            .add_extension(usage, True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer.public_key()), False)
            .sign(signer, hashes.SHA256()))


def init_ca(directory: Path, organization: str, now: dt.datetime) -> OemAuthority:
    """Create the OEM's root and issuing CA (refuses to overwrite an existing one)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "root.pem").exists():
        raise FileExistsError(f"{directory} already holds an OEM CA")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(organization, "DevID Root CA")
    root = _ca(root_name, root_key.public_key(), root_name, root_key, now, 1)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca(_name(organization, "DevID Issuing CA"), key.public_key(), root_name, root_key,
               now, 0)
    _write_key(directory / "root.key", root_key)
    _write_key(directory / "issuing.key", key)
    pem = serialization.Encoding.PEM
    (directory / "root.pem").write_bytes(root.public_bytes(pem))
    (directory / "issuing.pem").write_bytes(cert.public_bytes(pem))
    (directory / "organization").write_text(organization + "\n")
    return OemAuthority(directory, organization, root, OemCa(key, cert))


def load_ca(directory: Path) -> OemAuthority:
    key = serialization.load_pem_private_key((directory / "issuing.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the issuing CA key is not an EC key")
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((directory / "issuing.pem").read_bytes())
    organization = (directory / "organization").read_text().strip()
    return OemAuthority(directory, organization, root, OemCa(key, cert))
