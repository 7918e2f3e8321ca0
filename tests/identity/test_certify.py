"""TPM2_Certify verification against forgeries signed by software AKs."""

from __future__ import annotations

import hmac

import pytest
from tpm2_pytss import TPMA_OBJECT

from agent.sim.softtpm import SIGNING_KEY_ATTRS, SoftKey, software_pcrs
from identity.checks import CheckRunner
from identity.errors import (
    CertifiedKeyInvalid,
    CertifyNameMismatch,
    CertifyQualifyingMismatch,
    CertifyTypeInvalid,
    IdentityError,
)
from identity.pcr import PcrSelection
from identity.tpm.ak import (
    FIXED_TPM,
    RESTRICTED,
    SIGN,
    TpmKey,
    check_attestation_key,
    key_strength_problem,
    load_key,
)
from identity.tpm.certify import CERTIFY_ERRORS, verify_certify
from identity.tpm.quote import TPM_ST_ATTEST_CERTIFY, check_signed_attest

pytestmark = pytest.mark.adversarial

Q = b"challenge-nonce-0123456789abcdef"


def run(ak: SoftKey, attest: bytes, sig: bytes, key: SoftKey,
        qualifying: bytes = Q) -> tuple[bool, list[str]]:
    runner = CheckRunner()
    certified = verify_certify(runner, check_attestation_key(ak.public), attest, sig, key.public,
                               qualifying_data=qualifying)
    return certified is not None, runner.reason_codes


def test_genuine_certify_passes() -> None:
    ak, key = SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    assert run(ak, *ak.certify(key.public, Q), key) == (True, [])


def test_certify_of_another_key_is_refused() -> None:
    ak = SoftKey()
    certified, presented = (SoftKey(attributes=int(SIGNING_KEY_ATTRS)) for _ in range(2))
    assert run(ak, *ak.certify(certified.public, Q), presented) == (
        False, ["certify.name_mismatch"])


def test_certify_for_another_challenge_is_refused() -> None:
    ak, key = SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    assert run(ak, *ak.certify(key.public, b"old challenge"), key) == (
        False, ["certify.qualifying_data_mismatch"])


def test_quote_presented_as_certify_is_refused() -> None:
    ak, key = SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    selection = PcrSelection.of({"sha256": [0]})
    ok, codes = run(ak, *ak.quote(selection, software_pcrs(selection), Q), key)
    assert not ok and "certify.type_invalid" in codes and "certify.name_mismatch" in codes


def test_certify_signed_by_another_ak_is_refused() -> None:
    ak, rogue, key = SoftKey(), SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    attest, _ = ak.certify(key.public, Q)
    assert run(ak, attest, rogue.sign(attest), key) == (False, ["certify.signature_invalid"])


def test_certified_key_that_can_leave_the_tpm_is_refused() -> None:
    ak = SoftKey()
    exportable = SoftKey(attributes=int(SIGNING_KEY_ATTRS) & ~int(TPMA_OBJECT.FIXEDTPM))
    assert run(ak, *ak.certify(exportable.public, Q), exportable) == (
        False, ["certify.key_attributes_invalid"])


def test_restricted_key_is_not_a_workload_key() -> None:
    ak, other_ak = SoftKey(), SoftKey()
    assert run(ak, *ak.certify(other_ak.public, Q), other_ak) == (
        False, ["certify.key_attributes_invalid"])


def test_certify_with_forged_magic_is_refused() -> None:
    """A software-signed TPMS_ATTEST a TPM would never produce (magic != TPM_GENERATED)."""
    from tpm2_pytss import TPMS_ATTEST

    ak, key = SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    attest, _ = ak.certify(key.public, Q)
    att, _ = TPMS_ATTEST.unmarshal(attest)
    att.magic = 0x54435047  # bytes swapped
    forged = bytes(att.marshal())
    assert run(ak, forged, ak.sign(forged), key) == (False, ["certify.magic_invalid"])


def test_certify_signed_with_unpinned_scheme_is_refused() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from tpm2_pytss import TPM2_ALG, TPMS_SIGNATURE_ECC, TPMT_SIGNATURE, TPMU_SIGNATURE

    ak, key = SoftKey(), SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    attest, _ = ak.certify(key.public, Q)
    r, s = decode_dss_signature(ak.private.sign(attest, ec.ECDSA(hashes.SHA512())))
    ecc = TPMS_SIGNATURE_ECC(hash=TPM2_ALG.SHA512)
    ecc.signatureR.buffer, ecc.signatureS.buffer = r.to_bytes(32, "big"), s.to_bytes(32, "big")
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=ecc))
    assert run(ak, attest, bytes(sig.marshal()), key) == (False, ["certify.scheme_mismatch"])


# -- the checks are recorded exactly as before issue 15 (closures run one by one) ----------


def old_verify_certify(runner: CheckRunner, ak: TpmKey, attest: bytes, signature: bytes,
                       certified_public: bytes, *, qualifying_data: bytes,
                       what: str = "certify") -> TpmKey | None:
    """verify_certify before issue 15."""
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


def _cases() -> list[tuple[SoftKey, bytes, bytes, bytes, bytes]]:
    """(ak, attest, signature, presented public, qualifying data): genuine and forged."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    ak, rogue = SoftKey(), SoftKey()
    keys = [SoftKey(attributes=int(SIGNING_KEY_ATTRS)),
            SoftKey(attributes=int(SIGNING_KEY_ATTRS) & ~int(TPMA_OBJECT.FIXEDTPM)),
            SoftKey(attributes=int(SIGNING_KEY_ATTRS) & ~int(TPMA_OBJECT.SIGN_ENCRYPT)
                    & ~int(TPMA_OBJECT.FIXEDTPM)),
            SoftKey(private=ec.generate_private_key(ec.SECP384R1()), hash_name="sha384",
                    attributes=int(SIGNING_KEY_ATTRS)),
            SoftKey(private=rsa.generate_private_key(65537, 2048),
                    attributes=int(SIGNING_KEY_ATTRS)),
            SoftKey()]  # an AK: restricted
    selection = PcrSelection.of({"sha256": [0]})
    quote = ak.quote(selection, software_pcrs(selection), Q)
    cases = []
    for key in keys:
        attest, sig = ak.certify(key.public, Q)
        cases += [(ak, attest, sig, key.public, Q), (ak, attest, sig, key.public, b"other"),
                  (ak, attest, rogue.sign(attest), key.public, Q),
                  (ak, attest, sig, keys[0].public, Q), (ak, *quote, key.public, Q),
                  (ak, attest, sig, key.public[:-3], Q), (rogue, attest, sig, key.public, Q)]
    return cases


@pytest.mark.parametrize("case", _cases())
def test_checks_recorded_as_before(case: tuple[SoftKey, bytes, bytes, bytes, bytes]) -> None:
    ak, attest, sig, public, qualifying = case
    key = check_attestation_key(ak.public)
    outcomes = []
    for verify in (verify_certify, old_verify_certify):
        runner = CheckRunner()
        try:
            certified = verify(runner, key, attest, sig, public, qualifying_data=qualifying,
                               what="key.certify")
        except IdentityError as exc:
            outcomes.append((type(exc), exc.detail))
            continue
        outcomes.append((runner.checks, runner.warnings,
                         None if certified is None else certified.public))
    assert outcomes[0] == outcomes[1]
