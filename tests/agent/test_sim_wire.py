"""The simulator's ``struct`` marshalling (agent/sim/tpmwire.py) writes the very bytes
tpm2-pytss does: each structure is built here the way SoftKey built it with tpm2-pytss
objects, from the same key, nonce, clock and PCR values, and compared byte for byte."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss import (
    TPM2_ALG,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_NAME,
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMS_CERTIFY_INFO,
    TPMS_CLOCK_INFO,
    TPMS_QUOTE_INFO,
    TPMS_SIGNATURE_ECC,
    TPMS_SIGNATURE_RSA,
    TPMT_ASYM_SCHEME,
    TPMT_SIGNATURE,
    TPMU_ATTEST,
    TPMU_SIGNATURE,
)
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from agent.sim import tpmwire
from agent.sim.softtpm import AK_ATTRS, SIGNING_KEY_ATTRS, Clock, SoftKey, software_pcrs
from identity.pcr import PcrSelection, pcr_digest
from identity.tpm.quote import TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_QUOTE

HASHES = {"sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384,
          "sha512": TPM2_ALG.SHA512}
SELECTIONS = [PcrSelection.of({"sha256": [0, 1, 2, 3, 4, 5, 6, 7]}),
              PcrSelection.of({"sha256": [0, 7, 14], "sha1": [10]}),
              PcrSelection.of({"sha384": list(range(24))})]


def reference_public(key: SoftKey) -> TPM2B_PUBLIC:
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if isinstance(key.private, rsa.RSAPrivateKey):
        alg = TPM2_ALG.RSAPSS if key.pss_salt is not None else TPM2_ALG.RSASSA
    else:
        alg = TPM2_ALG.ECDSA
    scheme = TPMT_ASYM_SCHEME(scheme=alg)
    scheme.details.anySig.hashAlg = HASHES[key.hash_name]
    return TPM2B_PUBLIC.from_pem(pem, objectAttributes=key.attributes, scheme=scheme)


def reference_attest(key: SoftKey, st_: int, extra: bytes, attested: TPMU_ATTEST,
                     magic: int, clock: Clock) -> bytes:
    info = TPMS_CLOCK_INFO(clock=clock.clock, resetCount=clock.reset_count,
                           restartCount=clock.restart_count, safe=clock.safe)
    name = bytes(reference_public(key).get_name())
    return bytes(TPMS_ATTEST(magic=magic, type=st_, qualifiedSigner=TPM2B_NAME(name),
                             extraData=TPM2B_DATA(extra), clockInfo=info,
                             firmwareVersion=key.firmware_version,
                             attested=attested).marshal())


def reference_ecdsa(hash_name: str, der: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(der)
    ecc = TPMS_SIGNATURE_ECC(hash=HASHES[hash_name])
    ecc.signatureR.buffer = r.to_bytes(size, "big")
    ecc.signatureS.buffer = s.to_bytes(size, "big")
    return bytes(TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA,
                                signature=TPMU_SIGNATURE(ecdsa=ecc)).marshal())


def verify_ecdsa(key: SoftKey, data: bytes, signature: bytes) -> bytes:
    """The DER signature inside ``signature``, checked against ``data``."""
    parsed, _ = TPMT_SIGNATURE.unmarshal(signature)
    der = encode_dss_signature(int.from_bytes(bytes(parsed.signature.ecdsa.signatureR), "big"),
                               int.from_bytes(bytes(parsed.signature.ecdsa.signatureS), "big"))
    assert isinstance(key.private, ec.EllipticCurvePrivateKey)
    digest = getattr(hashes, key.hash_name.upper())()
    key.private.public_key().verify(der, data, ec.ECDSA(digest))
    return der


KEYS = st.sampled_from([
    ("secp256r1", "sha256", int(AK_ATTRS)), ("secp256r1", "sha256", int(SIGNING_KEY_ATTRS)),
    ("secp384r1", "sha384", int(AK_ATTRS)), ("secp521r1", "sha512", int(AK_ATTRS)),
    ("secp256r1", "sha1", int(AK_ATTRS)), ("secp224r1", "sha256", int(SIGNING_KEY_ATTRS))])
CURVES = {"secp224r1": ec.SECP224R1, "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1,
          "secp521r1": ec.SECP521R1}


@settings(max_examples=150, deadline=None)
@given(KEYS, st.integers(0, 2**63), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.booleans(), st.integers(0, 2**64 - 1), st.binary(max_size=64),
       st.sampled_from(SELECTIONS), st.integers(0, 2**32 - 1))
def test_quote_certify_and_public_are_byte_identical_to_tpm2_pytss(
        spec: tuple[str, str, int], clock: int, resets: int, restarts: int, safe: bool,
        firmware: int, nonce: bytes, selection: PcrSelection, magic: int) -> None:
    curve, hash_name, attrs = spec
    key = SoftKey(attributes=attrs, private=ec.generate_private_key(CURVES[curve]()),
                  firmware_version=firmware, clock=Clock(clock, resets, restarts, safe),
                  hash_name=hash_name)
    reference = reference_public(key)
    assert key.public == bytes(reference.marshal())
    assert key.name == bytes(reference.get_name())
    size = (key.private.curve.key_size + 7) // 8  # type: ignore[union-attr]

    values = software_pcrs(selection, nonce)
    digest = pcr_digest(selection, values, hash_name)
    at = Clock(key.clock.clock, resets, restarts, safe)
    attest, signature = key.quote(selection, values, nonce, magic=magic, st=TPM_ST_ATTEST_QUOTE)
    info = TPMS_QUOTE_INFO(pcrSelect=selection.to_tpml(), pcrDigest=TPM2B_DIGEST(digest))
    assert attest == reference_attest(key, TPM_ST_ATTEST_QUOTE, nonce,
                                      TPMU_ATTEST(quote=info), magic, at)
    assert signature == reference_ecdsa(hash_name, verify_ecdsa(key, attest, signature), size)

    workload = SoftKey(attributes=int(SIGNING_KEY_ATTRS))
    certified = bytes(reference_public(workload).get_name())
    at = Clock(key.clock.clock, resets, restarts, safe)
    attest, signature = key.certify(workload.public, nonce)
    info_c = TPMS_CERTIFY_INFO(name=TPM2B_NAME(certified), qualifiedName=TPM2B_NAME(certified))
    assert attest == reference_attest(key, TPM_ST_ATTEST_CERTIFY, nonce,
                                      TPMU_ATTEST(certify=info_c), TPM_GENERATED_VALUE, at)
    assert signature == reference_ecdsa(hash_name, verify_ecdsa(key, attest, signature), size)


def test_coordinates_with_leading_zero_bytes_are_written_as_tpm2_pytss_does() -> None:
    """from_pem drops leading zero bytes of x and y: so does the simulator (1 key in 128)."""
    found = 0
    while found < 3:
        key = SoftKey(attributes=int(SIGNING_KEY_ATTRS))
        numbers = key.private.public_key().public_numbers()  # type: ignore[union-attr]
        if min(numbers.x.bit_length(), numbers.y.bit_length()) <= 248:  # type: ignore[union-attr]
            found += 1
            assert key.public == bytes(reference_public(key).marshal())
            assert len(key.public) < 2 + 88


@pytest.mark.parametrize("salt", [None, 32])
def test_rsa_keys_sign_like_tpm2_pytss(salt: int | None) -> None:
    key = SoftKey(private=rsa.generate_private_key(65537, 2048), pss_salt=salt)
    assert key.public == bytes(reference_public(key).marshal())
    attest, signature = key.certify(key.public, b"n" * 32)
    parsed, _ = TPMT_SIGNATURE.unmarshal(signature)
    alg = TPM2_ALG.RSAPSS if salt is not None else TPM2_ALG.RSASSA
    rsa_sig = TPMS_SIGNATURE_RSA(hash=TPM2_ALG.SHA256)
    rsa_sig.sig.buffer = bytes(parsed.signature.rsassa.sig)
    assert signature == bytes(TPMT_SIGNATURE(
        sigAlg=alg, signature=TPMU_SIGNATURE(rsassa=rsa_sig)).marshal())


def test_oversized_fields_are_refused_as_tpm2_pytss_refuses_them() -> None:
    key = SoftKey()
    with pytest.raises(ValueError, match="TPM2B"):
        key.quote(SELECTIONS[0], {"sha256": dict.fromkeys(range(8), b"\x00" * 32)}, b"n" * 65)
    with pytest.raises(ValueError, match="TPM2B"):
        key.certify(key.public, b"n", name=b"x" * 69)
    with pytest.raises(ValueError, match="TPM2B_PUBLIC"):
        key.certify(key.public + b"\0", b"n")
    assert tpmwire.object_name(key.public) == key.name


def test_mislabelled_structures_are_marshalled_by_tpm2_pytss() -> None:
    """A quote labelled certify is a forgery tests sign: its bytes are what tpm2-pytss
    writes for that union selector, as before."""
    key = SoftKey()
    selection = SELECTIONS[0]
    values = software_pcrs(selection)
    at = Clock(key.clock.clock)
    attest, _ = key.quote(selection, values, b"n" * 32, st=TPM_ST_ATTEST_CERTIFY)
    info = TPMS_QUOTE_INFO(pcrSelect=selection.to_tpml(),
                           pcrDigest=TPM2B_DIGEST(pcr_digest(selection, values, "sha256")))
    assert attest == reference_attest(key, TPM_ST_ATTEST_CERTIFY, b"n" * 32,
                                      TPMU_ATTEST(quote=info), TPM_GENERATED_VALUE, at)
    with pytest.raises(TSS2_Exception):  # tpm2-pytss cannot marshal this one
        key.certify(key.public, b"q", st=TPM_ST_ATTEST_QUOTE)
