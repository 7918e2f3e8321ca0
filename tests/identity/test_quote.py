"""Quote verification against forgeries: genuine TPM structures signed by software AKs.

A real TPM refuses to sign these; a verifier that skips a check accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import TPM2_ALG, TPMS_SIGNATURE_ECC, TPMT_SIGNATURE, TPMU_SIGNATURE

from agent.sim.softtpm import SoftKey, software_pcrs
from identity.checks import CheckRunner
from identity.errors import TpmStructureMalformed, UnsupportedAlgorithm
from identity.pcr import PcrSelection
from identity.tpm.ak import check_attestation_key
from identity.tpm.quote import ClockState, QuoteResult, verify_quote

pytestmark = pytest.mark.adversarial

NONCE = bytes(range(32))
SEL = PcrSelection.of({"sha256": range(8)})


@dataclass(frozen=True)
class Verified:
    """The runner the quote's checks were recorded in, and the quote's result."""

    checks: CheckRunner
    quote: QuoteResult

    @property
    def selection(self) -> PcrSelection | None:
        return self.quote.selection

    @property
    def reset_since_last(self) -> bool:
        return self.quote.reset_since_last


def verify(ak: SoftKey, attest: bytes, sig: bytes,
           values: dict[str, dict[int, bytes]] | None = None, **kw: Any) -> Verified:
    kw.setdefault("nonce", NONCE)
    kw.setdefault("required", SEL)
    pcrs = values if values is not None else software_pcrs(SEL)
    runner = CheckRunner()
    result = verify_quote(runner, check_attestation_key(ak.public), attest, sig,
                          pcr_values=pcrs, **kw)
    assert result.passed == runner.passed  # the quote's checks are all the runner has
    return Verified(runner, result)


def codes(result: Verified) -> list[str]:
    return result.checks.reason_codes


def test_genuine_quote_passes() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE))
    assert result.checks.passed
    assert result.selection == SEL


def test_quote_with_another_nonce_is_refused() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), b"\x00" * 32))
    assert codes(result) == ["quote.nonce_mismatch"]


def test_quote_signed_by_another_key_is_refused() -> None:
    ak, other = SoftKey(), SoftKey()
    attest, _ = ak.quote(SEL, software_pcrs(SEL), NONCE)
    assert codes(verify(ak, attest, other.sign(attest))) == ["quote.signature_invalid"]


def test_quote_with_forged_magic_is_refused() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE, magic=0x12345678))
    assert codes(result) == ["quote.magic_invalid"]


def test_certify_structure_presented_as_quote_is_refused() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE, st=0x8017))
    assert "quote.type_invalid" in codes(result)


def test_quote_relabelled_pcr_is_refused() -> None:
    """The device presents PCR 8 in place of the signed PCR 7: indices come from the signature."""
    ak = SoftKey()
    values = software_pcrs(SEL)
    attest, sig = ak.quote(SEL, values, NONCE)
    relabelled = {"sha256": {**{i: v for i, v in values["sha256"].items() if i != 7},
                             8: values["sha256"][7]}}
    assert codes(verify(ak, attest, sig, relabelled)) == ["quote.pcr_selection_mismatch"]


def test_quote_over_fewer_pcrs_than_policy_requires_is_refused() -> None:
    ak = SoftKey()
    partial = PcrSelection.of({"sha256": range(7)})
    values = software_pcrs(partial)
    result = verify(ak, *ak.quote(partial, values, NONCE), values)
    assert codes(result) == ["quote.pcr_selection_mismatch"]
    assert "sha256:7" in result.checks.failed[0].detail


def test_quote_in_another_bank_is_refused() -> None:
    ak = SoftKey()
    sha1 = PcrSelection.of({"sha1": range(8)})
    values = software_pcrs(sha1)
    assert codes(verify(ak, *ak.quote(sha1, values, NONCE), values)) == [
        "quote.pcr_selection_mismatch"]


def test_altered_pcr_value_is_refused() -> None:
    ak = SoftKey()
    values = software_pcrs(SEL)
    attest, sig = ak.quote(SEL, values, NONCE)
    altered = {"sha256": {**values["sha256"], 4: b"\x00" * 32}}
    assert codes(verify(ak, attest, sig, altered)) == ["quote.pcr_digest_mismatch"]


def _ecdsa(ak: SoftKey, data: bytes, digest: hashes.HashAlgorithm, alg: int) -> bytes:
    r, s = decode_dss_signature(ak.private.sign(data, ec.ECDSA(digest)))
    ecc = TPMS_SIGNATURE_ECC(hash=alg)
    ecc.signatureR.buffer = r.to_bytes(32, "big")
    ecc.signatureS.buffer = s.to_bytes(32, "big")
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=ecc))
    return bytes(sig.marshal())


@pytest.mark.parametrize(("digest", "alg"), [(hashes.SHA1(), TPM2_ALG.SHA1),
                                             (hashes.SHA384(), TPM2_ALG.SHA384)])
def test_signature_with_unpinned_hash_is_refused(digest: hashes.HashAlgorithm, alg: int) -> None:
    """Valid signatures, but not with the scheme pinned at enrollment (SHA-1 never)."""
    ak = SoftKey()
    attest, _ = ak.quote(SEL, software_pcrs(SEL), NONCE)
    result = verify(ak, attest, _ecdsa(ak, attest, digest, alg))
    assert codes(result) == ["quote.scheme_mismatch"]
    assert not result.checks.passed  # the skipped signature check counts as a failure


def test_zero_signature_is_never_success() -> None:
    ak = SoftKey()
    attest, _ = ak.quote(SEL, software_pcrs(SEL), NONCE)
    ecc = TPMS_SIGNATURE_ECC(hash=TPM2_ALG.SHA256)
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=ecc))
    assert codes(verify(ak, attest, bytes(sig.marshal()))) == ["quote.signature_invalid"]


def test_reset_count_rollback_is_refused() -> None:
    ak = SoftKey()
    previous = ClockState(clock=1, reset_count=5, restart_count=0, safe=True)
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE), previous=previous)
    assert codes(result) == ["quote.reset_count_rollback"]


def test_clock_rollback_is_refused_while_safe() -> None:
    ak = SoftKey()
    previous = ClockState(clock=10**9, reset_count=1, restart_count=0, safe=True)
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE), previous=previous)
    assert codes(result) == ["quote.clock_rollback"]


def test_clock_rollback_after_power_loss_is_a_warning_only() -> None:
    ak = SoftKey()
    ak.clock.safe = False
    previous = ClockState(clock=10**9, reset_count=1, restart_count=0, safe=True)
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE), previous=previous)
    assert result.checks.passed
    assert result.checks.warnings and result.checks.warnings[0].startswith("clock.unsafe")


def test_reset_is_reported() -> None:
    ak = SoftKey()
    ak.clock.reset_count = 7
    previous = ClockState(clock=10, reset_count=6, restart_count=3, safe=True)
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE), previous=previous)
    assert result.checks.passed and result.reset_since_last


def test_denied_firmware_is_refused() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE),
                    firmware_denied=lambda v: v == ak.firmware_version)
    assert codes(result) == ["quote.firmware_denied"]


def test_qualified_signer_mismatch_is_refused() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE),
                    expected_signer=b"\x00\x0b" + b"\x01" * 32)
    assert codes(result) == ["quote.signer_mismatch"]


def test_every_failure_is_reported_together() -> None:
    ak = SoftKey()
    values = software_pcrs(SEL)
    attest, sig = ak.quote(SEL, values, b"\x01" * 32, magic=0)
    altered = {"sha256": {**values["sha256"], 0: b"\x00" * 32}}
    assert set(codes(verify(ak, attest, sig, altered))) == {
        "quote.magic_invalid", "quote.nonce_mismatch", "quote.pcr_digest_mismatch"}


def test_trailing_bytes_are_malformed() -> None:
    ak = SoftKey()
    attest, sig = ak.quote(SEL, software_pcrs(SEL), NONCE)
    with pytest.raises(TpmStructureMalformed):
        verify(ak, attest + b"\x00", sig)
    with pytest.raises(TpmStructureMalformed):
        verify(ak, attest, sig + b"\x00")


def test_quote_result_is_frozen() -> None:
    ak = SoftKey()
    result = verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE))
    with pytest.raises(AttributeError):
        result.quote.firmware_version = 0  # type: ignore[misc]


def test_hmac_signature_is_an_unsupported_algorithm() -> None:
    from tpm2_pytss import TPMT_HA

    from identity.errors import UnsupportedAlgorithm

    ak = SoftKey()
    attest, _ = ak.quote(SEL, software_pcrs(SEL), NONCE)
    ha = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.HMAC, signature=TPMU_SIGNATURE(hmac=ha))
    with pytest.raises(UnsupportedAlgorithm):
        verify(ak, attest, bytes(sig.marshal()))


@pytest.mark.parametrize("signature", [
    b"", b"\x00", b"\x00\x18\x00\x0b", bytes(range(72)), b"\xff" * 72,
])
def test_empty_truncated_or_garbage_signatures_are_malformed(signature: bytes) -> None:
    ak = SoftKey()
    attest, _ = ak.quote(SEL, software_pcrs(SEL), NONCE)
    with pytest.raises((TpmStructureMalformed, UnsupportedAlgorithm)):
        verify(ak, attest, signature)


def test_truncated_genuine_signature_is_malformed() -> None:
    ak = SoftKey()
    attest, sig = ak.quote(SEL, software_pcrs(SEL), NONCE)
    for cut in (2, 6, 40, len(sig) - 1):
        with pytest.raises(TpmStructureMalformed):
            verify(ak, attest, sig[:cut])


@pytest.mark.parametrize("salt", [0, 20, 32, 222])
def test_rsapss_quotes_verify_with_any_salt_length(salt: int) -> None:
    """TPMs differ in the PSS salt length they use; the verifier accepts any."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    ak = SoftKey(private=rsa.generate_private_key(65537, 2048), pss_salt=salt)
    assert str(check_attestation_key(ak.public).scheme) == "rsapss-sha256"
    assert verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE)).checks.passed


def test_ecdsa_p384_sha384_quote_verifies_with_digest_in_sha384() -> None:
    """pcrDigest is computed with the signing scheme's hash, not the PCR bank's."""
    ak = SoftKey(private=ec.generate_private_key(ec.SECP384R1()), hash_name="sha384")
    assert str(check_attestation_key(ak.public).scheme) == "ecdsa-sha384"
    assert verify(ak, *ak.quote(SEL, software_pcrs(SEL), NONCE)).checks.passed


def test_sha1_only_ak_cannot_be_enrolled() -> None:
    from identity.errors import AttestationKeyInvalid

    with pytest.raises(AttestationKeyInvalid, match="sha1") as refused:
        check_attestation_key(SoftKey(hash_name="sha1").public)
    assert refused.value.code == "ak.scheme_invalid"
