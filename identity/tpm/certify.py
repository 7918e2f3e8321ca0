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

    def certify_type() -> None:
        if att.type != TPM_ST_ATTEST_CERTIFY:
            raise CertifyTypeInvalid(f"type 0x{att.type:04x} is not TPM_ST_ATTEST_CERTIFY")

    def name_matches() -> None:
        if att.type != TPM_ST_ATTEST_CERTIFY:
            raise CertifyNameMismatch("no certified name in a non-certify structure")
        if not hmac.compare_digest(att.certified_name, certified.name):
            raise CertifyNameMismatch("certified Name is not the Name of the presented key")

    def qualifying() -> None:
        if not hmac.compare_digest(att.extra_data, qualifying_data):
            raise CertifyQualifyingMismatch("qualifying data is not bound to this challenge")

    def attributes() -> None:
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
        if problems:
            raise CertifiedKeyInvalid("certified key rejected: " + "; ".join(problems))

    runner.run(f"{what}.type", certify_type)
    runner.run(f"{what}.name", name_matches)
    runner.run(f"{what}.qualifying_data", qualifying)
    runner.run(f"{what}.key_attributes", attributes)
    ok = all(c.passed for c in runner.checks[before:])
    return certified if ok else None
