"""TPM2_Certify verification against forgeries signed by software AKs."""

from __future__ import annotations

import pytest
from tpm2_pytss import TPMA_OBJECT

from agent.sim.softtpm import SIGNING_KEY_ATTRS, SoftKey, software_pcrs
from identity.checks import CheckRunner
from identity.pcr import PcrSelection
from identity.tpm.ak import check_attestation_key
from identity.tpm.certify import verify_certify

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
