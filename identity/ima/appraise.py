"""Appraisal of IMA measurements: an allowlist (path -> digests), exclusions, and
trusted keys for ``ima-sig`` signatures (IMA signature v2, over the file digest)."""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pydantic import BaseModel, ConfigDict, Field, field_validator

from identity.checks import CheckRunner
from identity.errors import ImaFileNotAllowed, ImaSignatureInvalid
from identity.ima.log import ImaEntry

# Kernel hash_algo enum (include/uapi/linux/hash_info.h) for signature_v2_hdr.
# SHA-1 (2) signatures are not accepted.
_KERNEL_HASHES: dict[int, hashes.HashAlgorithm] = {
    4: hashes.SHA256(), 5: hashes.SHA384(), 6: hashes.SHA512(), 7: hashes.SHA224(),
}
EVM_IMA_XATTR_DIGSIG = 0x03
MAX_LISTED = 5
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class ImaPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowlist: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description='path -> allowed digests ("sha256:<hex>")')
    excludes: tuple[str, ...] = Field((), description="regular expressions of paths not appraised")
    trusted_keys: tuple[str, ...] = Field((), description="PEM public keys for ima-sig")
    fail_on_violations: bool = Field(False, description="refuse lists with measurement "
                                     "violations (files changed while open)")
    pcrs: tuple[int, ...] = Field((10,), description="PCRs the device's IMA policy extends "
                                  "(10, and any a pcr= rule names); each must be quoted")

    @field_validator("pcrs")
    @classmethod
    def _pcrs(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        # PCRs 0-7 belong to the firmware; IMA's pcr= rules name PCRs of the OS.
        if not value or any(not 8 <= i <= 23 for i in value):
            raise ValueError("ima.pcrs must be a non-empty list of PCRs 8..23")
        return tuple(sorted(set(value)))

    @field_validator("excludes")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:  # not a ValueError: pydantic would not report it
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pem in value:
            try:
                key = serialization.load_pem_public_key(pem.encode())
            except CryptoUnsupported as exc:
                raise ValueError(f"unsupported trusted IMA key: {exc}") from exc
            if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
                raise ValueError("trusted IMA keys must be RSA or ECC")
        return value


@functools.lru_cache(maxsize=64)
def _excluder(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


@functools.lru_cache(maxsize=64)
def _keyring(pems: tuple[str, ...]) -> tuple[tuple[bytes, PublicKey], ...]:
    """(keyid, key): keyid is the last 4 bytes of SHA-1 over the subjectPublicKey."""
    ring = []
    for pem in pems:
        key = serialization.load_pem_public_key(pem.encode())
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            ring.append((key_id(key), key))
    return tuple(ring)


def key_id(key: PublicKey) -> bytes:
    if isinstance(key, rsa.RSAPublicKey):
        raw = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        raw = key.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha1(raw).digest()[-4:]  # noqa: S324 - the kernel's key identifier


def verify_ima_signature(entry: ImaEntry, keyring: Sequence[tuple[bytes, PublicKey]]) -> bool:
    """An IMA v2 digital signature (``03 02 <hash> <keyid:4> <size:2> <sig>``) over the
    file digest, by a trusted key with that id."""
    sig = entry.signature
    if len(sig) < 9 or sig[0] != EVM_IMA_XATTR_DIGSIG or sig[1] != 2:
        return False
    algorithm = _KERNEL_HASHES.get(sig[2])
    keyid = sig[3:7]
    size = struct.unpack_from(">H", sig, 7)[0]
    body = sig[9:]
    if algorithm is None or size != len(body) or len(entry.digest) != algorithm.digest_size:
        return False
    for candidate_id, key in keyring:
        if candidate_id != keyid:
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(body, entry.digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
            else:
                key.verify(body, entry.digest, ec.ECDSA(utils.Prehashed(algorithm)))
            return True
        except InvalidSignature:
            return False
    return False


def appraise_ima(runner: CheckRunner, policy: ImaPolicy, entries: Sequence[ImaEntry]) -> None:
    """Record ``ima.files`` and ``ima.signatures`` (and violations as warnings or failures)."""
    excluded = _excluder(policy.excludes)
    keyring = _keyring(policy.trusted_keys)
    not_allowed: list[str] = []
    bad_signatures: list[str] = []
    violations = 0
    for entry in entries:
        if entry.violation:
            violations += 1
            continue
        if entry.path == "boot_aggregate" or (excluded and excluded.fullmatch(entry.path)):
            continue
        if entry.signature and keyring:
            if verify_ima_signature(entry, keyring):
                continue
            bad_signatures.append(entry.path)
            continue
        digest = f"{entry.digest_alg}:{entry.digest.hex()}"
        if digest not in policy.allowlist.get(entry.path, ()):
            not_allowed.append(f"{entry.path} ({digest[:23]}…)")
    runner.record("ima.files", None if not not_allowed else ImaFileNotAllowed(
        f"{len(not_allowed)} measurement(s) not in the allowlist: "
        + "; ".join(not_allowed[:MAX_LISTED])))
    if keyring:
        runner.record("ima.signatures", None if not bad_signatures else ImaSignatureInvalid(
            f"{len(bad_signatures)} signature(s) do not verify with a trusted key: "
            + "; ".join(bad_signatures[:MAX_LISTED])))
    if violations:
        message = f"ima.violations: {violations} measurement violation(s) in the list"
        if policy.fail_on_violations:
            runner.record("ima.violations", ImaFileNotAllowed(message))
        else:
            runner.warnings.append(message)


def learn_ima(entries: Sequence[ImaEntry], base: ImaPolicy | None = None) -> ImaPolicy:
    """An allowlist of every file a known-good device measured (merged into ``base``)."""
    allow: dict[str, list[str]] = {k: list(v) for k, v in (base.allowlist if base else {}).items()}
    for entry in entries:
        if entry.violation or entry.path == "boot_aggregate":
            continue
        digests = allow.setdefault(entry.path, [])
        digest = f"{entry.digest_alg}:{entry.digest.hex()}"
        if digest not in digests:
            digests.append(digest)
    fields = base.model_dump() if base else {}
    fields["allowlist"] = {path: tuple(d) for path, d in allow.items()}
    # Every PCR the list extends (pcr= rules) must be quoted from now on.
    fields["pcrs"] = tuple(sorted({*fields.get("pcrs", (10,)), *(e.pcr for e in entries)}))
    return ImaPolicy.model_validate(fields)
