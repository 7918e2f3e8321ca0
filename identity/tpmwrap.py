"""Secrets only the device's TPM can open.

A fresh 32-byte key is sent with TPM2_MakeCredential to the device's EK, bound to
its AK's Name (the same construction as enrollment's credential activation), and
the secret is sealed under it with AES-256-GCM, the secret's name, version and
the device id as associated data. Only the TPM holding that EK and that AK can
recover the key (TPM2_ActivateCredential), so a copied response, a stolen TLS
session or a compromised proxy learns nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.errors import EvidenceError
from identity.tpm.credential import SECRET_SIZE, make_activation


class TpmWrapInvalid(EvidenceError):
    code = "secret.tpm_wrap_invalid"


@dataclass(frozen=True, slots=True)
class TpmWrap:
    credential_blob: bytes  # TPM2B_ID_OBJECT
    encrypted_secret: bytes  # TPM2B_ENCRYPTED_SECRET
    iv: bytes
    ciphertext: bytes  # AES-256-GCM, tag appended


def associated_data(name: str, version: int, device_id: str) -> bytes:
    return f"edgeproof/tpm-wrap/v1\x00{name}\x00{version}\x00{device_id}".encode()


def wrap(value: bytes, *, ek_public: bytes, ak_name: bytes, name: str, version: int,
         device_id: str) -> TpmWrap:
    key = os.urandom(SECRET_SIZE)
    challenge = make_activation(ek_public, ak_name, key)
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, value, associated_data(name, version, device_id))
    return TpmWrap(challenge.credential_blob, challenge.encrypted_secret, iv, sealed)


def unwrap(wrapped: TpmWrap, key: bytes, *, name: str, version: int, device_id: str) -> bytes:
    """``key`` is what the TPM's ActivateCredential returned."""
    try:
        return AESGCM(key).decrypt(wrapped.iv, wrapped.ciphertext,
                                   associated_data(name, version, device_id))
    except (InvalidTag, ValueError) as exc:
        raise TpmWrapInvalid("the TPM-wrapped secret does not open with this key") from exc
