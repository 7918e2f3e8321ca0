"""The struct-level decoders agree with tpm2-pytss (the reference) and are never laxer.

Differential tests on genuine structures and on hypothesis mutations of them:
whenever our decoder accepts bytes, tpm2-pytss accepts them too and reads the
same fields.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss import (
    TPM2_ALG,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMS_ATTEST,
    TPMT_ASYM_SCHEME,
    TPMT_SIGNATURE,
    TSS2_Exception,
)

from agent.sim.softtpm import AK_ATTRS, SIGNING_KEY_ATTRS, SoftKey, software_pcrs
from identity.errors import TpmStructureMalformed, UnsupportedAlgorithm
from identity.pcr import PcrSelection
from identity.tpm import wire
from identity.tpm.structures import object_name

SEL = PcrSelection.of({"sha256": range(8), "sha1": [0, 1, 23]})


def _rsa_public() -> bytes:
    key = rsa.generate_private_key(65537, 2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    scheme = TPMT_ASYM_SCHEME(scheme=TPM2_ALG.RSAPSS)
    scheme.details.rsapss.hashAlg = TPM2_ALG.SHA384
    return bytes(TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRS, scheme=scheme).marshal())


AK = SoftKey()
KEY = SoftKey(attributes=int(SIGNING_KEY_ATTRS))
QUOTE, QUOTE_SIG = AK.quote(SEL, software_pcrs(SEL), b"nonce" * 6)
CERTIFY, CERTIFY_SIG = AK.certify(KEY.public, b"q" * 20)
PUBLICS = [AK.public, KEY.public, _rsa_public(),
           bytes(TPM2B_PUBLIC.parse("ecc384:aes128cfb", objectAttributes=(
               TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.FIXEDTPM)).marshal())]


def _pytss(cls: type, data: bytes) -> object | None:
    try:
        value, consumed = cls.unmarshal(data)  # type: ignore[attr-defined]
    except (TSS2_Exception, ValueError, TypeError):
        return None
    return value if consumed == len(data) else None


def _same_attest(mine: wire.Attest, ref: TPMS_ATTEST) -> None:
    assert mine.magic == int(ref.magic) and mine.type == int(ref.type)
    assert mine.qualified_signer == bytes(ref.qualifiedSigner)
    assert mine.extra_data == bytes(ref.extraData)
    ci = ref.clockInfo
    assert (mine.clock, mine.reset_count, mine.restart_count, mine.safe) == (
        int(ci.clock), int(ci.resetCount), int(ci.restartCount), bool(ci.safe))
    assert mine.firmware_version == int(ref.firmwareVersion)
    if mine.type == wire.ST_QUOTE:
        q = ref.attested.quote
        assert mine.pcr_digest == bytes(q.pcrDigest)
        ref_select = tuple(
            (int(q.pcrSelect.pcrSelections[i].hash),
             bytes(q.pcrSelect.pcrSelections[i].pcrSelect)[
                 :int(q.pcrSelect.pcrSelections[i].sizeofSelect)])
            for i in range(int(q.pcrSelect.count)))
        assert mine.pcr_select == ref_select
    if mine.type == wire.ST_CERTIFY:
        assert mine.certified_name == bytes(ref.attested.certify.name)


def _same_signature(mine: wire.Signature, ref: TPMT_SIGNATURE) -> None:
    assert mine.alg == int(ref.sigAlg)
    if mine.alg == wire.ECDSA:
        assert mine.hash_alg == int(ref.signature.ecdsa.hash)
        assert (mine.r, mine.s) == (bytes(ref.signature.ecdsa.signatureR),
                                    bytes(ref.signature.ecdsa.signatureS))


def _same_public(mine: wire.Public, ref: TPM2B_PUBLIC) -> None:
    area = ref.publicArea
    assert (mine.type, mine.name_alg, mine.attributes) == (
        int(area.type), int(area.nameAlg), int(area.objectAttributes))
    if mine.name_alg == int(TPM2_ALG.SHA256):
        assert bytes(ref.get_name()) == object_name(mine)
    elif mine.name_alg not in (int(TPM2_ALG.SHA384), int(TPM2_ALG.SHA512)):
        with pytest.raises(TpmStructureMalformed):
            object_name(mine)
    if mine.type == wire.RSA:
        assert mine.rsa_modulus == bytes(area.unique.rsa)
    else:
        assert (mine.ecc_x, mine.ecc_y) == (bytes(area.unique.ecc.x), bytes(area.unique.ecc.y))


def test_genuine_structures_decode_like_tpm2_pytss() -> None:
    _same_attest(wire.decode_attest(QUOTE), TPMS_ATTEST.unmarshal(QUOTE)[0])
    _same_attest(wire.decode_attest(CERTIFY), TPMS_ATTEST.unmarshal(CERTIFY)[0])
    _same_signature(wire.decode_signature(QUOTE_SIG), TPMT_SIGNATURE.unmarshal(QUOTE_SIG)[0])
    for public in PUBLICS:
        _same_public(wire.decode_public(public), TPM2B_PUBLIC.unmarshal(public)[0])


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, pos, value in ops:
        pos %= len(out) + 1
        if kind == 0 and pos < len(out):
            out[pos] = value
        elif kind == 1:
            out.insert(pos, value)
        elif kind == 2 and pos < len(out):
            del out[pos]
        elif kind == 3:
            del out[pos:]
    return bytes(out)


MUTATIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 700), st.integers(0, 255)),
                     min_size=1, max_size=4)


def _differential(decode: object, cls: type, same: object, data: bytes) -> None:
    try:
        mine = decode(data)  # type: ignore[operator]
    except (TpmStructureMalformed, UnsupportedAlgorithm):
        return
    ref = _pytss(cls, data)
    assert ref is not None, f"we accepted what tpm2-pytss refuses: {data.hex()}"
    same(mine, ref)  # type: ignore[operator]


@settings(max_examples=400, deadline=None)
@given(MUTATIONS, st.sampled_from([QUOTE, CERTIFY]))
def test_mutated_attest_never_laxer_than_reference(ops: list[tuple[int, int, int]],
                                                   base: bytes) -> None:
    _differential(wire.decode_attest, TPMS_ATTEST, _same_attest, _mutate(base, ops))


@settings(max_examples=300, deadline=None)
@given(MUTATIONS)
def test_mutated_signature_never_laxer_than_reference(ops: list[tuple[int, int, int]]) -> None:
    _differential(wire.decode_signature, TPMT_SIGNATURE, _same_signature,
                  _mutate(QUOTE_SIG, ops))


@settings(max_examples=300, deadline=None)
@given(MUTATIONS, st.sampled_from(PUBLICS))
def test_mutated_public_never_laxer_than_reference(ops: list[tuple[int, int, int]],
                                                   base: bytes) -> None:
    _differential(wire.decode_public, TPM2B_PUBLIC, _same_public, _mutate(base, ops))


@pytest.mark.parametrize("cut", [1, 6, 40, -1])
def test_truncations_are_malformed(cut: int) -> None:
    for data, decode in ((QUOTE, wire.decode_attest), (QUOTE_SIG, wire.decode_signature),
                         (AK.public, wire.decode_public)):
        with pytest.raises(TpmStructureMalformed):
            decode(data[:cut])  # type: ignore[operator]
