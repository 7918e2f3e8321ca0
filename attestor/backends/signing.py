"""The attestor's own signing key (ES256): local bearer tokens, audit checkpoints and,
later, attestation-result tokens. P-256, PKCS#8 encrypted with the CA passphrase, 0600."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestor.backends.files import write_private
from identity.ear import public_jwk
from identity.errors import ServiceError


class SigningKeyError(ServiceError):
    code = "signing.key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key
        self.public = key.public_key()
        spki = self.public.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(spki).hexdigest()[:16]

    @staticmethod
    def create(path: Path, passphrase: bytes) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase)))

    @classmethod
    def load(cls, path: Path, passphrase: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), passphrase)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyError(f"cannot load the signing key {path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SigningKeyError("the signing key is not an EC key")
        return cls(key)

    def jwk(self) -> dict[str, str]:
        return jwk_of(self.kid, self.public)


def jwk_of(kid: str, public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7517) for ES256."""
    return public_jwk(kid, public)
