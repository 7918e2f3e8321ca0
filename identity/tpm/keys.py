"""TPM public areas as `cryptography` keys, and TPMT_SIGNATURE verification.

The hot path verifies with a `cryptography` key built once per enrolled key.
Signature schemes are pinned: a signature must use exactly the scheme and
hash fixed at enrollment.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from identity.errors import TpmStructureMalformed, UnsupportedAlgorithm
from identity.tpm import wire
from identity.tpm.structures import HASH_ALGS
from identity.tpm.wire import Public, Signature

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SCHEME_NAMES = {wire.RSASSA: "rsassa", wire.RSAPSS: "rsapss", wire.ECDSA: "ecdsa"}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# TPM_ECC_CURVE ids (Part 2, 6.4) accepted for keys.
ECC_CURVES: dict[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(), 0x0004: ec.SECP384R1(), 0x0005: ec.SECP521R1(),
}


# Hash and padding objects are immutable: built once, not per verification.
ECDSA_BY_HASH: dict[str, ec.ECDSA] = {name: ec.ECDSA(h()) for name, h in _HASHES.items()}
_PKCS1 = padding.PKCS1v15()


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


def public_key(public: Public) -> PublicKey:
    """The public area's key as a `cryptography` object (RSA or ECC only)."""
    try:
        if public.type == wire.RSA:
            if not public.rsa_modulus or public.rsa_modulus[0] == 0:
                raise TpmStructureMalformed("RSA public area holds no modulus")
            exponent = public.exponent or 65537
            return rsa.RSAPublicNumbers(exponent, int.from_bytes(public.rsa_modulus, "big")
                                        ).public_key()
        if public.type == wire.ECC:
            curve = ECC_CURVES.get(public.curve)
            if curve is None:
                raise UnsupportedAlgorithm(f"ECC curve 0x{public.curve:04x}")
            x = int.from_bytes(public.ecc_x, "big")
            y = int.from_bytes(public.ecc_y, "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError as exc:  # not on the curve, bad exponent
        raise TpmStructureMalformed(f"public area holds no usable key: {exc}") from exc
    raise UnsupportedAlgorithm(f"key type 0x{public.type:04x} is not RSA or ECC")


def key_scheme(public: Public) -> SigningScheme | None:
    """The signing scheme fixed in the key's public area, or None if TPM_ALG_NULL."""
    if public.scheme == wire.NULL:
        return None
    if public.scheme not in SCHEME_NAMES:
        raise UnsupportedAlgorithm(f"signing scheme 0x{public.scheme:04x}")
    return SigningScheme(public.scheme, HASH_ALGS.get(public.scheme_hash, "unknown"))


def signature_scheme(sig: Signature) -> SigningScheme:
    if sig.alg not in SCHEME_NAMES:
        raise UnsupportedAlgorithm(f"signature algorithm 0x{sig.alg:04x}")
    return SigningScheme(sig.alg, HASH_ALGS.get(sig.hash_alg, "unknown"))


def verify_tpm_signature(key: PublicKey, sig: Signature, data: bytes) -> bool:
    """True only if ``sig`` is a valid signature over ``data`` by ``key``.

    RSAPSS is accepted with any salt length (TPMs differ); the hash is the one
    named in the signature, which the caller has already pinned.
    """
    digest = hash_algorithm(HASH_ALGS.get(sig.hash_alg, "unknown"))
    try:
        if sig.alg == wire.ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            r, s = int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big")
            if r == 0 or s == 0:
                return False
            key.verify(encode_dss_signature(r, s), data, ECDSA_BY_HASH[digest.name])
            return True
        if not isinstance(key, rsa.RSAPublicKey) or len(sig.raw) != key.key_size // 8:
            return False
        if sig.alg == wire.RSASSA:
            key.verify(sig.raw, data, _PKCS1, digest)
            return True
        if sig.alg == wire.RSAPSS:
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
            key.verify(sig.raw, data, pss, digest)
            return True
        return False
    except InvalidSignature:
        return False
