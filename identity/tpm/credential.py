"""Credential activation, server side (TPM2_MakeCredential in software).

The secret is encrypted to the EK and bound to the AK's Name, so only the TPM
holding both can recover it with TPM2_ActivateCredential. The verifier keeps
only a digest of the secret, compares in constant time, and never puts the
expected value in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from tpm2_pytss import TPM2B_NAME, TPM2B_PUBLIC, TSS2_Exception
from tpm2_pytss.utils import make_credential

from identity.errors import ActivationMismatch, EkPublicInvalid, IdentityError
from identity.tpm.ak import DECRYPT, FIXED_PARENT, FIXED_TPM, RESTRICTED, SIGN
from identity.tpm.keys import public_key
from identity.tpm.structures import HASH_ALGS, NAME_HASHES, parse_public
from identity.tpm.wire import Public

SECRET_SIZE = 32  # fits TPM2B_DIGEST of every nameAlg we accept


@dataclass(frozen=True, slots=True)
class ActivationChallenge:
    credential_blob: bytes  # marshalled TPM2B_ID_OBJECT
    encrypted_secret: bytes  # marshalled TPM2B_ENCRYPTED_SECRET


def check_ek_public(ek_public: bytes) -> Public:
    """An EK public area: restricted decryption key, fixed to its TPM, RSA or ECC."""
    try:
        public = parse_public(ek_public)
        public_key(public)
    except IdentityError as exc:
        raise EkPublicInvalid(f"EK public area: {exc.detail}") from exc
    attrs = public.attributes
    problems = []
    for label, bit in (("restricted", RESTRICTED), ("decrypt", DECRYPT), ("fixedTPM", FIXED_TPM),
                       ("fixedParent", FIXED_PARENT)):
        if not attrs & bit:
            problems.append(f"{label} is not set")
    if attrs & SIGN:
        problems.append("sign is set")
    if HASH_ALGS.get(public.name_alg) not in NAME_HASHES:
        problems.append("nameAlg is weaker than SHA-256")
    if problems:
        raise EkPublicInvalid("EK rejected: " + "; ".join(problems))
    return public


def make_activation(ek_public: bytes, ak_name: bytes, secret: bytes) -> ActivationChallenge:
    """MakeCredential to the EK (OAEP/KDFa/HMAC with its nameAlg), bound to ``ak_name``.

    ``ek_public`` must have passed :func:`check_ek_public`.
    """
    if len(secret) != SECRET_SIZE:
        raise ValueError("activation secret must be 32 bytes")
    try:
        ek, _ = TPM2B_PUBLIC.unmarshal(bytes(ek_public))
        blob, encrypted = make_credential(ek, secret, TPM2B_NAME(ak_name))
    except (TSS2_Exception, ValueError, TypeError) as exc:
        raise EkPublicInvalid(f"cannot encrypt a credential to this EK: {exc}") from exc
    return ActivationChallenge(blob.marshal(), encrypted.marshal())


def secret_digest(secret: bytes) -> bytes:
    """What the verifier stores instead of the secret itself."""
    return hashlib.sha256(b"edgeproof/activation/v1\x00" + secret).digest()


def check_activation(expected_digest: bytes, presented: bytes) -> None:
    """Constant-time comparison; the error never carries either value."""
    if not hmac.compare_digest(secret_digest(presented), expected_digest):
        raise ActivationMismatch("the activated credential does not match the challenge")
