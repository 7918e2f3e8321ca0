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
    TPMS_SIGNATURE_ECC,
    TPMS_SIGNATURE_RSA,
    TPMT_ASYM_SCHEME,
    TPMT_SIGNATURE,
    TPMU_ATTEST,
    TPMU_SIGNATURE,
)

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
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._hash_alg = {"sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384,
                          "sha512": TPM2_ALG.SHA512, "sha1": TPM2_ALG.SHA1}[self.hash_name]
        if isinstance(self.private, rsa.RSAPrivateKey):
            alg = TPM2_ALG.RSAPSS if self.pss_salt is not None else TPM2_ALG.RSASSA
        else:
            alg = TPM2_ALG.ECDSA
        scheme = TPMT_ASYM_SCHEME(scheme=alg)
        scheme.details.anySig.hashAlg = self._hash_alg
        self.tpm_public = TPM2B_PUBLIC.from_pem(
            pem, objectAttributes=self.attributes, scheme=scheme
        )

    @property
    def public(self) -> bytes:
        return bytes(self.tpm_public.marshal())

    @property
    def name(self) -> bytes:
        return bytes(self.tpm_public.get_name())

    def sign(self, data: bytes) -> bytes:
        """A marshalled TPMT_SIGNATURE (the key's scheme and hash) over ``data``."""
        digest = getattr(hashes, self.hash_name.upper())()
        if isinstance(self.private, rsa.RSAPrivateKey):
            if self.pss_salt is not None:
                pad: padding.AsymmetricPadding = padding.PSS(padding.MGF1(digest), self.pss_salt)
                alg = TPM2_ALG.RSAPSS
            else:
                pad, alg = padding.PKCS1v15(), TPM2_ALG.RSASSA
            rsa_sig = TPMS_SIGNATURE_RSA(hash=self._hash_alg)
            rsa_sig.sig.buffer = self.private.sign(data, pad, digest)
            signature = TPMT_SIGNATURE(sigAlg=alg, signature=TPMU_SIGNATURE(rsassa=rsa_sig))
            return bytes(signature.marshal())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(digest)))
        size = (self.private.curve.key_size + 7) // 8
        ecc = TPMS_SIGNATURE_ECC(hash=self._hash_alg)
        ecc.signatureR.buffer = r.to_bytes(size, "big")
        ecc.signatureS.buffer = s.to_bytes(size, "big")
        sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=TPMU_SIGNATURE(ecdsa=ecc))
        return bytes(sig.marshal())

    def _attest(self, st: int, extra: bytes, attested: TPMU_ATTEST, magic: int) -> TPMS_ATTEST:
        clock = TPMS_CLOCK_INFO(clock=self.clock.clock, resetCount=self.clock.reset_count,
                                restartCount=self.clock.restart_count, safe=self.clock.safe)
        return TPMS_ATTEST(magic=magic, type=st, qualifiedSigner=TPM2B_NAME(self.name),
                           extraData=TPM2B_DATA(extra), clockInfo=clock,
                           firmwareVersion=self.firmware_version, attested=attested)

    def quote(self, selection: PcrSelection, values: PcrValues, nonce: bytes, *,
              magic: int = TPM_GENERATED_VALUE, st: int = TPM_ST_ATTEST_QUOTE,
              signed_selection: PcrSelection | None = None,
              digest: bytes | None = None) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of a quote; overrides let a test forge one field."""
        signed_sel = signed_selection or selection
        pcr_dig = digest if digest is not None else pcr_digest(selection, values, self.hash_name)
        info = TPMS_QUOTE_INFO(pcrSelect=signed_sel.to_tpml(), pcrDigest=TPM2B_DIGEST(pcr_dig))
        att = self._attest(st, nonce, TPMU_ATTEST(quote=info), magic).marshal()
        self.clock.tick()
        return bytes(att), self.sign(att)

    def certify(self, certified_public: bytes, qualifying: bytes, *,
                st: int = TPM_ST_ATTEST_CERTIFY, name: bytes | None = None) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) of TPM2_Certify over ``certified_public``."""
        public, _ = TPM2B_PUBLIC.unmarshal(certified_public)
        certified_name = name if name is not None else bytes(public.get_name())
        info = TPMS_CERTIFY_INFO(name=TPM2B_NAME(certified_name),
                                 qualifiedName=TPM2B_NAME(certified_name))
        att = self._attest(st, qualifying, TPMU_ATTEST(certify=info), TPM_GENERATED_VALUE)
        data = bytes(att.marshal())
        return data, self.sign(data)


def software_pcrs(selection: PcrSelection, seed: bytes = b"") -> dict[str, dict[int, bytes]]:
    """Deterministic PCR values for a selection (for tests and the fleet simulator)."""
    return {bank: {i: hashlib.new(bank, seed + bytes([i])).digest() for i in idx}
            for bank, idx in selection.banks}
