"""Satisfying the EK's authorization policy for TPM2_ActivateCredential.

TCG EK Credential Profile 2.x: low-range EK templates (RSA-2048, ECC P-256) use
PolicyA = PolicySecret(TPM_RH_ENDORSEMENT) in SHA-256; high-range templates use
PolicyOR(PolicyA, PolicyC) in the EK's nameAlg, PolicyC being the profile's
fixed digest for a policy stored in NV. PolicyA is computed here; PolicyC is
the profile's constant (checked in tests: PolicyOR of the two gives the
templates' authPolicy).
"""

from __future__ import annotations

import hashlib

TPM_CC_POLICY_SECRET = 0x00000151
TPM_CC_POLICY_OR = 0x00000171
TPM_RH_ENDORSEMENT = 0x4000000B

POLICY_C: dict[str, bytes] = {
    "sha256": bytes.fromhex("3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde"),
    "sha384": bytes.fromhex(
        "d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5"
        "b4947c2d73e63005eed2dc2b3593d165"),
    "sha512": bytes.fromhex(
        "589ee1e146544716e8deafe6db247b01b81e9f9c7dd16b814aa159138749105f"
        "ba5388dd1dea702f35240c184933121e2c61b8f50d3ef91393a49a38c3f73fc8"),
}


def policy_a(hash_name: str) -> bytes:
    """PolicySecret(TPM_RH_ENDORSEMENT) with an empty policyRef (Part 3, 23.4)."""
    size = hashlib.new(hash_name).digest_size
    step = hashlib.new(hash_name, b"\x00" * size + TPM_CC_POLICY_SECRET.to_bytes(4, "big")
                       + TPM_RH_ENDORSEMENT.to_bytes(4, "big")).digest()
    return hashlib.new(hash_name, step).digest()


def policy_or(hash_name: str, branches: list[bytes]) -> bytes:
    size = hashlib.new(hash_name).digest_size
    return hashlib.new(hash_name, b"\x00" * size + TPM_CC_POLICY_OR.to_bytes(4, "big")
                       + b"".join(branches)).digest()


def or_branches(hash_name: str, auth_policy: bytes) -> list[bytes] | None:
    """The PolicyOR branches to present after PolicySecret, None if PolicySecret alone
    satisfies ``auth_policy``; ValueError for a policy this agent cannot satisfy."""
    a = policy_a(hash_name)
    if auth_policy == a:
        return None
    branches = [a, POLICY_C[hash_name]] if hash_name in POLICY_C else []
    if branches and policy_or(hash_name, branches) == auth_policy:
        return branches
    raise ValueError("the EK's authPolicy is not one of the TCG EK profile's policies")
