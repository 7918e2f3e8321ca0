"""Attestation-key checks at enrollment, against public areas a TPM could produce."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tpm2_pytss import TPM2_ALG, TPM2B_PUBLIC, TPMA_OBJECT, TPMT_ASYM_SCHEME

from agent.sim.softtpm import AK_ATTRS, SoftKey
from identity.checks import CheckRunner
from identity.errors import AttestationKeyInvalid
from identity.tpm.ak import check_attestation_key, record_attestation_key

pytestmark = pytest.mark.adversarial


def test_genuine_ak_is_accepted_with_its_scheme_pinned() -> None:
    ak = check_attestation_key(SoftKey().public)
    assert str(ak.scheme) == "ecdsa-sha256"
    assert ak.name[:2] == b"\x00\x0b"


@pytest.mark.parametrize(("missing", "code"), [
    ("RESTRICTED", "ak.not_restricted"), ("FIXEDTPM", "ak.not_fixed_tpm"),
    ("FIXEDPARENT", "ak.not_fixed_parent"), ("SENSITIVEDATAORIGIN", "ak.not_sensitive_data_origin"),
    ("SIGN_ENCRYPT", "ak.not_signing"), ("USERWITHAUTH", "ak.no_user_with_auth"),
])
def test_ak_without_required_attribute_is_refused(missing: str, code: str) -> None:
    attrs = int(AK_ATTRS) & ~int(getattr(TPMA_OBJECT, missing))
    with pytest.raises(AttestationKeyInvalid, match="is not set") as refused:
        check_attestation_key(SoftKey(attributes=attrs).public)
    assert refused.value.code == code


def test_ak_that_can_decrypt_is_refused() -> None:
    with pytest.raises(AttestationKeyInvalid, match="decrypt is set") as refused:
        check_attestation_key(SoftKey(attributes=int(AK_ATTRS | TPMA_OBJECT.DECRYPT)).public)
    assert refused.value.code == "ak.decrypt_set"


def _rsa_public(bits: int, name_alg: int = TPM2_ALG.SHA256, scheme: int = TPM2_ALG.RSASSA) -> bytes:
    key = rsa.generate_private_key(65537, bits)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    asym = TPMT_ASYM_SCHEME(scheme=scheme)
    if scheme != TPM2_ALG.NULL:
        asym.details.rsassa.hashAlg = TPM2_ALG.SHA256
    return bytes(TPM2B_PUBLIC.from_pem(pem, nameAlg=name_alg, objectAttributes=AK_ATTRS,
                                       scheme=asym).marshal())


def test_rsa_2048_ak_is_accepted() -> None:
    assert str(check_attestation_key(_rsa_public(2048)).scheme) == "rsassa-sha256"


def test_rsa_1024_ak_is_refused() -> None:
    with pytest.raises(AttestationKeyInvalid, match="RSA-1024") as refused:
        check_attestation_key(_rsa_public(1024))
    assert refused.value.code == "ak.weak_key"


def test_sha1_name_alg_is_refused() -> None:
    with pytest.raises(AttestationKeyInvalid, match="nameAlg") as refused:
        check_attestation_key(_rsa_public(2048, name_alg=TPM2_ALG.SHA1))
    assert refused.value.code == "ak.weak_name_alg"


def test_ak_without_fixed_scheme_is_refused() -> None:
    with pytest.raises(AttestationKeyInvalid, match="no signing scheme") as refused:
        check_attestation_key(_rsa_public(2048, scheme=TPM2_ALG.NULL))
    assert refused.value.code == "ak.scheme_invalid"


def test_every_problem_is_its_own_failed_check() -> None:
    attrs = int(AK_ATTRS) & ~int(TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.FIXEDTPM)
    runner = CheckRunner()
    assert record_attestation_key(runner, SoftKey(attributes=attrs).public) is None
    assert runner.reason_codes == ["ak.not_restricted", "ak.not_fixed_tpm"]
    good = CheckRunner()
    assert record_attestation_key(good, SoftKey().public) is not None and good.passed


def test_garbage_is_refused_as_ak() -> None:
    with pytest.raises(AttestationKeyInvalid):
        check_attestation_key(b"\x00\x10" + b"\xff" * 16)
