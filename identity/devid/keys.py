"""IAK and IDevID key templates (TCG DevID spec, "Key Templates"), and the checks of
the public areas a device presents.

Both are primary keys in the endorsement hierarchy, told apart from the EK and from
each other by the template's ``unique`` field ("IAK" / "IDEVID"), so they survive an
owner's TPM2_Clear as the spec intends. Departure: the spec's templates set
adminWithPolicy with an authPolicy; ours keep userWithAuth with an empty auth value
and no policy (docs/onboarding.md, "Where we depart").
"""

from __future__ import annotations

from dataclasses import dataclass

from identity.errors import IakAttributesInvalid, IdentityError, IdevidAttributesInvalid
from identity.tpm.ak import (
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN,
    USER_WITH_AUTH,
    TpmKey,
    attestation_key_problems,
    key_strength_problem,
    load_key,
)

# Persistent handles (docs/onboarding.md, "Where keys and certificates live").
IDEVID_HANDLE = 0x81020000
IAK_HANDLE = 0x81020001
# NV indices for the OEM's certificates (DER), written by the factory tool.
IAK_CERT_NV = 0x01C90000
IDEVID_CERT_NV = 0x01C90001
DEVID_CHAIN_NV = 0x01C90002  # the OEM's issuing CA certificate(s), DER back to back

BASE_ATTRIBUTES = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | SIGN


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """One of the spec's templates in tpm2-pytss's template-string form."""

    name: str
    algorithm: str  # TPM2B_PUBLIC.parse() string
    attributes: int  # TPMA_OBJECT bits
    unique: bytes


IAK_TEMPLATES = {
    "ecc256": KeyTemplate("IAK-ECC-P256", "ecc256:ecdsa-sha256:null",
                          BASE_ATTRIBUTES | RESTRICTED, b"IAK"),
    "rsa2048": KeyTemplate("IAK-RSA-2048", "rsa2048:rsassa-sha256:null",
                           BASE_ATTRIBUTES | RESTRICTED, b"IAK"),
}
IDEVID_TEMPLATES = {
    "ecc256": KeyTemplate("IDevID-ECC-P256", "ecc256:ecdsa-sha256:null",
                          BASE_ATTRIBUTES, b"IDEVID"),
    "rsa2048": KeyTemplate("IDevID-RSA-2048", "rsa2048:rsassa-sha256:null",
                           BASE_ATTRIBUTES, b"IDEVID"),
}


def check_iak_public(public: bytes) -> TpmKey:
    """An IAK: restricted signing key fixed to its TPM (the AK rules), else refused with
    every broken requirement in the detail."""
    key, problems = attestation_key_problems(public)
    if problems or key is None:
        raise IakAttributesInvalid("IAK public area: " + "; ".join(
            p.detail for p in problems) or "does not parse")
    return key


def check_idevid_public(public: bytes) -> TpmKey:
    """An IDevID: unrestricted signing key, fixedTPM, fixedParent, made in the TPM."""
    try:
        key = load_key(public)
    except IdentityError as exc:
        raise IdevidAttributesInvalid(f"IDevID public area: {exc.detail}") from exc
    problems = [label for bit, label in ((FIXED_TPM, "fixedTPM"), (FIXED_PARENT, "fixedParent"),
                                         (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
                                         (SIGN, "sign"))
                if not key.attributes & bit]
    problems = [f"{label} is not set" for label in problems]
    if key.attributes & DECRYPT:
        problems.append("decrypt is set")
    weak = key_strength_problem(key.key)
    if weak:
        problems.append(weak)
    if problems:
        raise IdevidAttributesInvalid("IDevID public area: " + "; ".join(problems))
    return key
