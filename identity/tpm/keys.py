"""TPM public areas as `cryptography` keys, and TPMT_SIGNATURE verification.

The hot path verifies with a `cryptography` key built once per enrolled key
(rebuilding it per call costs 4x; see TPM-NOTES). Signature schemes are pinned:
a signature must use exactly the scheme and hash fixed at enrollment.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import TPM2B_PUBLIC, TSS2_Exception

from identity.errors import TpmStructureMalformed, UnsupportedAlgorithm
from identity.tpm.structures import HASH_ALGS
from identity.tpm.views import ALG_ECDSA, ALG_RSAPSS, ALG_RSASSA, SignatureView

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

ALG_RSA = 0x0001
ALG_ECC = 0x0023
ALG_NULL = 0x0010

SCHEME_NAMES = {ALG_RSASSA: "rsassa", ALG_RSAPSS: "rsapss", ALG_ECDSA: "ecdsa"}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# TPM_ECC_CURVE ids accepted for signing keys (Part 2, 6.4).
ECC_CURVES: dict[int, str] = {0x0003: "P-256", 0x0004: "P-384", 0x0005: "P-521"}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """A `cryptography` hash for a signing hash name; SHA-1 and SM3 are refused."""
    try:
        return _HASHES[name]()
    except KeyError:
        raise UnsupportedAlgorithm(f"hash {name!r} is not accepted for signatures") from None


@dataclass(frozen=True, slots=True)
class SigningScheme:
    """A signature scheme pinned at enrollment, e.g. ``ecdsa`` with ``sha256``."""

    alg: int
    hash_name: str

    def __str__(self) -> str:
        return f"{SCHEME_NAMES.get(self.alg, hex(self.alg))}-{self.hash_name}"


def public_key(public: TPM2B_PUBLIC) -> PublicKey:
    """The public area's key as a `cryptography` object (RSA or ECC only)."""
    area = public.publicArea
    if int(area.type) not in (ALG_RSA, ALG_ECC):
        raise UnsupportedAlgorithm(f"key type 0x{int(area.type):04x} is not RSA or ECC")
    if int(area.type) == ALG_ECC and int(area.parameters.eccDetail.curveID) not in ECC_CURVES:
        raise UnsupportedAlgorithm(f"ECC curve 0x{int(area.parameters.eccDetail.curveID):04x}")
    try:
        der = public.to_der()
        key = serialization.load_der_public_key(der)
    except (TSS2_Exception, ValueError, TypeError) as exc:
        raise TpmStructureMalformed(f"public area holds no usable key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UnsupportedAlgorithm("key is neither RSA nor ECC")
    return key


def key_scheme(public: TPM2B_PUBLIC) -> SigningScheme | None:
    """The signing scheme fixed in the key's public area, or None if TPM_ALG_NULL."""
    area = public.publicArea
    if int(area.type) == ALG_RSA:
        scheme = area.parameters.rsaDetail.scheme
    elif int(area.type) == ALG_ECC:
        scheme = area.parameters.eccDetail.scheme
    else:
        raise UnsupportedAlgorithm(f"key type 0x{int(area.type):04x}")
    alg = int(scheme.scheme)
    if alg == ALG_NULL:
        return None
    if alg not in SCHEME_NAMES:
        raise UnsupportedAlgorithm(f"signing scheme 0x{alg:04x}")
    hash_name = HASH_ALGS.get(int(scheme.details.anySig.hashAlg), "unknown")
    return SigningScheme(alg, hash_name)


def signature_scheme(sig: SignatureView) -> SigningScheme:
    return SigningScheme(sig.alg, sig.hash_name)


def verify_tpm_signature(key: PublicKey, sig: SignatureView, data: bytes) -> bool:
    """True only if ``sig`` is a valid signature over ``data`` by ``key``.

    RSAPSS is accepted with any salt length (TPMs differ); the hash is the one
    named in the signature, which the caller has already pinned.
    """
    digest = hash_algorithm(sig.hash_name)
    try:
        if sig.alg == ALG_ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            r, s = int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big")
            if r == 0 or s == 0:
                return False
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
            return True
        if not isinstance(key, rsa.RSAPublicKey) or len(sig.raw) != key.key_size // 8:
            return False
        if sig.alg == ALG_RSASSA:
            key.verify(sig.raw, data, padding.PKCS1v15(), digest)
        else:
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
            key.verify(sig.raw, data, pss, digest)
        return True
    except InvalidSignature:
        return False
