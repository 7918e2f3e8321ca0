"""Checks on the attestation key (AK) presented at enrollment.

An AK is only worth trusting if the TPM guarantees it signs nothing but
TPM-generated data (``restricted`` + ``sign``) and it can never leave the TPM
(``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``). Verifiers that forgot
``restricted`` accepted "quotes" that were plain signatures over forged bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from identity.checks import Check, CheckRunner
from identity.errors import (
    AkCanDecrypt,
    AkNotFixedParent,
    AkNotFixedTpm,
    AkNotRestricted,
    AkNotSensitiveDataOrigin,
    AkNotSigning,
    AkNoUserWithAuth,
    AkSchemeInvalid,
    AkWeakKey,
    AkWeakNameAlg,
    AttestationKeyInvalid,
    IdentityError,
)
from identity.roca import roca_vulnerable
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

AK_REQUIRED: tuple[tuple[type[AttestationKeyInvalid], int, str], ...] = (
    (AkNotRestricted, RESTRICTED, "restricted"),
    (AkNotSigning, SIGN, "sign"),
    (AkNotFixedTpm, FIXED_TPM, "fixedTPM"),
    (AkNotFixedParent, FIXED_PARENT, "fixedParent"),
    (AkNotSensitiveDataOrigin, SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (AkNoUserWithAuth, USER_WITH_AUTH, "userWithAuth"),
)
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
        if key.key_size < 2048:
            return f"RSA-{key.key_size} is below 2048 bits"
        if roca_vulnerable(key.public_numbers().n):
            return "RSA modulus is from the ROCA-vulnerable generator (CVE-2017-15361)"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.key_size >= 256 else f"curve {key.curve.name} is below P-256"
    return "unsupported key type"


def attestation_key_problems(public_bytes: bytes) -> tuple[TpmKey | None,
                                                          list[AttestationKeyInvalid]]:
    """Every requirement the AK public area breaks, each as its own typed error."""
    try:
        public = parse_public(public_bytes)
    except IdentityError as exc:
        return None, [AttestationKeyInvalid(f"AK public area: {exc.detail}")]
    problems: list[AttestationKeyInvalid] = []
    for error, bit, label in AK_REQUIRED:
        if not public.attributes & bit:
            problems.append(error(f"AK attribute {label} is not set"))
    if public.attributes & DECRYPT:
        problems.append(AkCanDecrypt("AK attribute decrypt is set: it could decrypt too"))
    name_alg = HASH_ALGS.get(public.name_alg, f"0x{public.name_alg:04x}")
    if name_alg not in STRONG_NAME_ALGS:
        problems.append(AkWeakNameAlg(f"AK nameAlg {name_alg} is weaker than SHA-256"))
        return None, problems
    try:
        ak = load_key(public_bytes)
    except IdentityError as exc:
        return None, [*problems, AttestationKeyInvalid(f"AK public area: {exc.detail}")]
    weak = key_strength_problem(ak.key)
    if weak:
        problems.append(AkWeakKey(f"AK key: {weak}"))
    scheme = ak.scheme
    if scheme is None:
        problems.append(AkSchemeInvalid("no signing scheme is fixed in the AK (TPM_ALG_NULL)"))
    elif scheme.hash_name not in SIGNING_HASHES:
        problems.append(AkSchemeInvalid(f"AK signing hash {scheme.hash_name} is not accepted"))
    elif (public.type == wire.ECC) != (scheme.alg == wire.ECDSA):
        problems.append(AkSchemeInvalid(f"AK scheme {scheme} does not fit the key type"))
    return ak, problems


def check_attestation_key(public_bytes: bytes) -> TpmKey:
    """Check an AK public area and return it with its pinned signing scheme.

    Raises the first violated requirement's error; its detail lists them all.
    """
    ak, problems = attestation_key_problems(public_bytes)
    if problems or ak is None:
        first = problems[0] if problems else AttestationKeyInvalid("AK did not parse")
        raise type(first)("; ".join(p.detail for p in problems) or first.detail)
    return ak


def record_attestation_key(runner: CheckRunner, public_bytes: bytes) -> TpmKey | None:
    """Each AK requirement as its own check; the key only if every one passed."""
    ak, problems = attestation_key_problems(public_bytes)
    for problem in problems:
        runner.fail("ak." + problem.code.removeprefix("ak."), problem)
    if problems:
        return None
    runner.checks.append(Check("ak.attributes", True))
    return ak
