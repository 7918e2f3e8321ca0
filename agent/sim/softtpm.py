"""Genuine TPM 2.0 structures signed by software keys.

For the fleet simulator and for adversarial tests: a :class:`SoftKey` has a real
TPM2B_PUBLIC (Name computed as a TPM would) and produces marshalled TPMS_ATTEST
and TPMT_SIGNATURE byte-for-byte in the TPM's format. Because the signer is in
software, a test can sign exactly the forgery it wants (a wrong magic, a
relabelled PCR selection) with a valid signature, which a real TPM would refuse
to produce; that is what proves each check is needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import (
    TPM2_ALG,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_NAME,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMS_ATTEST,
    TPMS_CERTIFY_INFO,
    TPMS_CLOCK_INFO,
    TPMS_QUOTE_INFO,
    TPMT_ASYM_SCHEME,
    TPMU_ATTEST,
)

from agent.sim import tpmwire
from identity.pcr import PcrSelection, PcrValues, pcr_digest
from identity.tpm.quote import TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_QUOTE

AK_ATTRS = (TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.USERWITHAUTH)
SIGNING_KEY_ATTRS = (TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                     | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH)


@dataclass
class Clock:
    clock: int = 1_000_000
    reset_count: int = 1
    restart_count: int = 0
    safe: bool = True

    def tick(self, ms: int = 1000) -> None:
        self.clock += ms


@dataclass
class SoftKey:
    """A signing key with a TPM public area (``attributes`` as a TPM would set):
    ECDSA P-256 by default, or ``private`` an RSA key for RSASSA-SHA256."""

    attributes: int = int(AK_ATTRS)
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    firmware_version: int = 0x2023_0101_0000_0000
    clock: Clock = field(default_factory=Clock)
    hash_name: str = "sha256"
    pss_salt: int | None = None  # RSA: sign RSAPSS with this salt length instead of RSASSA

    def __post_init__(self) -> None:
        self._hash_alg = tpmwire.HASH_ALGS[self.hash_name]
        self._digest = getattr(hashes, self.hash_name.upper())()
        self._size = 0
        if isinstance(self.private, rsa.RSAPrivateKey):
            self._public = self._rsa_public()
        else:
            self._size = (self.private.curve.key_size + 7) // 8
            self._ecdsa = ec.ECDSA(self._digest)
            self._public = tpmwire.ecc_public(self.private.public_key(), self.attributes,
                                              self._hash_alg)
        self._name = tpmwire.object_name(self._public)

    def _rsa_public(self) -> bytes:
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        alg = TPM2_ALG.RSAPSS if self.pss_salt is not None else TPM2_ALG.RSASSA
        scheme = TPMT_ASYM_SCHEME(scheme=alg)
        scheme.details.anySig.hashAlg = self._hash_alg
        public = TPM2B_PUBLIC.from_pem(pem, objectAttributes=self.attributes, scheme=scheme)
        return bytes(public.marshal())

    @property
    def tpm_public(self) -> TPM2B_PUBLIC:
        return TPM2B_PUBLIC.unmarshal(self._public)[0]

    @property
    def public(self) -> bytes:
        return self._public

    @property
    def name(self) -> bytes:
        return self._name

    def sign(self, data: bytes) -> bytes:
        """A marshalled TPMT_SIGNATURE (the key's scheme and hash) over ``data``."""
        if isinstance(self.private, rsa.RSAPrivateKey):
            if self.pss_salt is not None:
                pad: padding.AsymmetricPadding = padding.PSS(padding.MGF1(self._digest),
                                                             self.pss_salt)
                alg = tpmwire.ALG_RSAPSS
            else:
                pad, alg = padding.PKCS1v15(), tpmwire.ALG_RSASSA
            return tpmwire.rsa_signature(alg, self._hash_alg,
                                         self.private.sign(data, pad, self._digest))
        r, s = decode_dss_signature(self.private.sign(data, self._ecdsa))
        return tpmwire.ecdsa_signature(self._hash_alg, r.to_bytes(self._size, "big"),
                                       s.to_bytes(self._size, "big"))

    def _attest(self, st: int, extra: bytes, attested: bytes, magic: int) -> bytes:
        clock = self.clock
        return tpmwire.attest(magic, st, self._name, extra, clock.clock, clock.reset_count,
                              clock.restart_count, clock.safe, self.firmware_version, attested)

    def _mislabelled(self, st: int, extra: bytes, attested: TPMU_ATTEST, magic: int) -> bytes:
        """A TPMS_ATTEST whose type does not match its info (a forgery): tpm2-pytss
        marshals the union member ``st`` selects, over the bytes of the one filled in."""
        clock = TPMS_CLOCK_INFO(clock=self.clock.clock, resetCount=self.clock.reset_count,
                                restartCount=self.clock.restart_count, safe=self.clock.safe)
        return bytes(TPMS_ATTEST(magic=magic, type=st, qualifiedSigner=TPM2B_NAME(self._name),
                                 extraData=TPM2B_DATA(extra), clockInfo=clock,
                                 firmwareVersion=self.firmware_version,
                                 attested=attested).marshal())

    def quote(self, selection: PcrSelection, values: PcrValues, nonce: bytes, *,
              magic: int = TPM_GENERATED_VALUE, st: int = TPM_ST_ATTEST_QUOTE,
              signed_selection: PcrSelection | None = None,
              digest: bytes | None = None) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of a quote; overrides let a test forge one field."""
        signed_sel = signed_selection or selection
        pcr_dig = digest if digest is not None else pcr_digest(selection, values, self.hash_name)
        if st == TPM_ST_ATTEST_QUOTE:
            att = self._attest(st, nonce, tpmwire.quote_info(signed_sel, pcr_dig), magic)
        else:  # a quote labelled as another type: its info read as that type's, as TSS does
            info = TPMS_QUOTE_INFO(pcrSelect=signed_sel.to_tpml(),
                                   pcrDigest=TPM2B_DIGEST(pcr_dig))
            att = self._mislabelled(st, nonce, TPMU_ATTEST(quote=info), magic)
        self.clock.tick()
        return att, self.sign(att)

    def certify(self, certified_public: bytes, qualifying: bytes, *,
                st: int = TPM_ST_ATTEST_CERTIFY, name: bytes | None = None) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of TPM2_Certify over ``certified_public``."""
        certified_name = name if name is not None else tpmwire.object_name(certified_public)
        if st == TPM_ST_ATTEST_CERTIFY:
            att = self._attest(st, qualifying, tpmwire.certify_info(certified_name,
                                                                    certified_name),
                               TPM_GENERATED_VALUE)
        else:
            info = TPMS_CERTIFY_INFO(name=TPM2B_NAME(certified_name),
                                     qualifiedName=TPM2B_NAME(certified_name))
            att = self._mislabelled(st, qualifying, TPMU_ATTEST(certify=info),
                                    TPM_GENERATED_VALUE)
        return att, self.sign(att)


def software_pcrs(selection: PcrSelection, seed: bytes = b"") -> dict[str, dict[int, bytes]]:
    """Deterministic PCR values for a selection (for tests and the fleet simulator)."""
    return {bank: {i: hashlib.new(bank, seed + bytes([i])).digest() for i in idx}
            for bank, idx in selection.banks}
