"""Verification of TPM2_Certify: the AK vouches that a key lives in the same TPM.

Used for the DevID at enrollment and for every workload key a CSR names.
"""

from __future__ import annotations

import hmac

from identity.checks import CheckRunner
from identity.errors import (
    CertifiedKeyInvalid,
    CertifyMagicInvalid,
    CertifyNameMismatch,
    CertifyQualifyingMismatch,
    CertifySchemeMismatch,
    CertifySignatureInvalid,
    CertifyTypeInvalid,
    IdentityError,
)
from identity.tpm.ak import FIXED_TPM, RESTRICTED, SIGN, TpmKey, key_strength_problem, load_key
from identity.tpm.quote import TPM_ST_ATTEST_CERTIFY, AttestErrors, check_signed_attest

CERTIFY_ERRORS = AttestErrors(CertifySchemeMismatch, CertifySignatureInvalid, CertifyMagicInvalid)


def verify_certify(
    runner: CheckRunner,
    ak: TpmKey,
    attest: bytes,
    signature: bytes,
    certified_public: bytes,
    *,
    qualifying_data: bytes,
    what: str = "certify",
) -> TpmKey | None:
    """Check a TPM2_Certify of ``certified_public`` by ``ak``; record every check.

    Returns the certified key when every check passed, else None.
    """
    before = len(runner.checks)
    att = check_signed_attest(runner, ak, attest, signature, what, CERTIFY_ERRORS)
    try:
        certified = load_key(certified_public)
    except IdentityError as exc:
        runner.fail(f"{what}.key", CertifiedKeyInvalid(f"certified public area: {exc.detail}"))
        return None

    is_certify = att.type == TPM_ST_ATTEST_CERTIFY
    # Each check decided in line and recorded (the error built only when it failed).
    runner.record(f"{what}.type", None if is_certify else CertifyTypeInvalid(
        f"type 0x{att.type:04x} is not TPM_ST_ATTEST_CERTIFY"))
    runner.record(f"{what}.name", CertifyNameMismatch(
        "no certified name in a non-certify structure") if not is_certify
        else None if hmac.compare_digest(att.certified_name, certified.name)
        else CertifyNameMismatch("certified Name is not the Name of the presented key"))
    runner.record(f"{what}.qualifying_data", None if hmac.compare_digest(
        att.extra_data, qualifying_data) else CertifyQualifyingMismatch(
        "qualifying data is not bound to this challenge"))
    problems = _attribute_problems(certified)
    runner.record(f"{what}.key_attributes", None if not problems else CertifiedKeyInvalid(
        "certified key rejected: " + "; ".join(problems)))
    ok = all(c.passed for c in runner.checks[before:])
    return certified if ok else None


def _attribute_problems(certified: TpmKey) -> list[str]:
    problems = []
    if not certified.attributes & FIXED_TPM:
        problems.append("fixedTPM is not set")
    if not certified.attributes & SIGN:
        problems.append("sign is not set")
    if certified.attributes & RESTRICTED:
        problems.append("restricted is set")
    weak = key_strength_problem(certified.key)
    if weak:
        problems.append(weak)
    return problems
