"""Checks on the attestation key (AK) presented at enrollment.

An AK is only worth trusting if the TPM guarantees it signs nothing but
TPM-generated data (``restricted`` + ``sign``) and it can never leave the TPM
(``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``). Verifiers that forgot
``restricted`` accepted "quotes" that were plain signatures over forged bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from identity.errors import AttestationKeyInvalid, IdentityError
from identity.tpm import wire
from identity.tpm.keys import PublicKey, SigningScheme, key_scheme, public_key
from identity.tpm.structures import HASH_ALGS, object_name, parse_public

# TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3).
FIXED_TPM = 1 << 1
FIXED_PARENT = 1 << 4
SENSITIVE_DATA_ORIGIN = 1 << 5
USER_WITH_AUTH = 1 << 6
RESTRICTED = 1 << 16
DECRYPT = 1 << 17
SIGN = 1 << 18

AK_REQUIRED = {
    "restricted": RESTRICTED,
    "sign": SIGN,
    "fixedTPM": FIXED_TPM,
    "fixedParent": FIXED_PARENT,
    "sensitiveDataOrigin": SENSITIVE_DATA_ORIGIN,
    "userWithAuth": USER_WITH_AUTH,
}
STRONG_NAME_ALGS = {"sha256", "sha384", "sha512"}
SIGNING_HASHES = {"sha256", "sha384", "sha512"}


@dataclass(frozen=True, slots=True)
class TpmKey:
    """A TPM-resident signing key, parsed and checked once: Name, key, scheme."""

    public: bytes
    name: bytes
    key: PublicKey
    scheme: SigningScheme | None
    attributes: int


def load_key(public_bytes: bytes) -> TpmKey:
    """Parse a marshalled TPM2B_PUBLIC into a :class:`TpmKey` (no policy checks)."""
    public = parse_public(public_bytes)
    return TpmKey(
        public=bytes(public_bytes),
        name=object_name(public),
        key=public_key(public),
        scheme=key_scheme(public),
        attributes=public.attributes,
    )


def key_strength_problem(key: PublicKey) -> str | None:
    """Why a key is too weak (RSA < 2048, ECC < P-256), or None."""
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= 2048 else f"RSA-{key.key_size} is below 2048 bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.key_size >= 256 else f"curve {key.curve.name} is below P-256"
    return "unsupported key type"


def check_attestation_key(public_bytes: bytes) -> TpmKey:
    """Check an AK public area and return it with its pinned signing scheme.

    Raises :class:`AttestationKeyInvalid` listing every violated requirement.
    """
    try:
        public = parse_public(public_bytes)
        ak = load_key(public_bytes)
    except IdentityError as exc:
        raise AttestationKeyInvalid(f"AK public area: {exc.detail}") from exc
    problems: list[str] = []
    attrs = ak.attributes
    for label, bit in AK_REQUIRED.items():
        if not attrs & bit:
            problems.append(f"{label} is not set")
    if attrs & DECRYPT:
        problems.append("decrypt is set")
    name_alg = HASH_ALGS.get(public.name_alg, "unknown")
    if name_alg not in STRONG_NAME_ALGS:
        problems.append(f"nameAlg {name_alg} is weaker than SHA-256")
    weak = key_strength_problem(ak.key)
    if weak:
        problems.append(weak)
    scheme = ak.scheme
    if scheme is None:
        problems.append("no signing scheme is fixed in the key (TPM_ALG_NULL)")
    else:
        if scheme.hash_name not in SIGNING_HASHES:
            problems.append(f"signing hash {scheme.hash_name} is not accepted")
        if (public.type == wire.ECC) != (scheme.alg == wire.ECDSA):
            problems.append(f"scheme {scheme} does not fit the key type")
    if problems:
        raise AttestationKeyInvalid("AK rejected: " + "; ".join(problems))
    return ak
