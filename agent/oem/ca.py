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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity.devid.profile import OemCa
from identity.x509.profiles import SigningCa, issuing_ca, root_ca

ROOT_DAYS = 365 * 30
ISSUING_DAYS = 365 * 25


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


def init_ca(directory: Path, organization: str, now: dt.datetime) -> OemAuthority:
    """Create the OEM's root and issuing CA (refuses to overwrite an existing one)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "root.pem").exists():
        raise FileExistsError(f"{directory} already holds an OEM CA")
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = root_ca(root_key, f"{organization} DevID Root CA", now, ROOT_DAYS)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issuing_ca(SigningCa(root_key, root), key, f"{organization} DevID Issuing CA", now,
                      ISSUING_DAYS)
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
