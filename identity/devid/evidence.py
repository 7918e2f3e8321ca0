"""The owner's check of a device's first-boot onboarding evidence (pure).

The device proves, against a fresh nonce: its IAK and IDevID certificates chain to an
imported manufacturer root and fit the profile; both name one device; the presented
TPM keys are the certified ones; the EK is the one the IAK certificate names; the IAK
certifies the IDevID (one TPM), the new LAK and the new LDevID; the IDevID signs the
nonce and the new keys' Names. Every check runs and is recorded (identity.checks).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from identity.checks import CheckRunner
from identity.devid.hwname import ek_identifier
from identity.devid.keys import check_iak_public, check_idevid_public
from identity.devid.messages import OnboardingRequest
from identity.devid.profile import DevIdCertificate, check_devid_certificate
from identity.errors import (
    CertifyNameMismatch,
    CertifyQualifyingMismatch,
    CertifyTypeInvalid,
    DevIdTpmMismatch,
    IdentityError,
    IdevidCertifyInvalid,
    IdevidSignatureInvalid,
)
from identity.tpm.ak import TpmKey, load_key, record_attestation_key
from identity.tpm.certify import CERTIFY_ERRORS, verify_certify
from identity.tpm.credential import check_ek_public
from identity.tpm.keys import PublicKey, public_key
from identity.tpm.quote import TPM_ST_ATTEST_CERTIFY, check_signed_attest


def presented_chain(imported: Sequence[x509.Certificate], presented: Sequence[bytes]
                    ) -> list[x509.Certificate]:
    """The intermediates a chain may use: the imported ones and those the device sent
    (only as path candidates: the root must still be an imported one)."""
    chain = list(imported)
    for blob in presented:
        try:
            chain.append(x509.load_der_x509_certificate(blob))
        except ValueError:
            continue  # an unusable intermediate only fails the chain checks
    return chain


def certify_binding(nonce: bytes, iak_name: bytes) -> bytes:
    """Qualifying data of the three certifies by the IAK at onboarding."""
    return hashlib.sha256(b"edgeproof/onboard/v1\x00" + nonce + iak_name).digest()


def idevid_binding(nonce: bytes, lak_name: bytes, ldevid_name: bytes) -> bytes:
    """What the IDevID signs: the nonce and the Names of the new local keys."""
    return b"edgeproof/onboard-idevid/v1\x00" + nonce + lak_name + ldevid_name


def spki_sha256(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def fingerprint(cert_der: bytes) -> str:
    """How a manifest names an IDevID certificate: SHA-256 of its DER, hex."""
    return hashlib.sha256(cert_der).hexdigest()


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class OnboardingEvidence:
    serial: str
    idevid_fingerprint: str
    ek_public: bytes
    lak: TpmKey
    ldevid: TpmKey
    iak: DevIdCertificate
    idevid: DevIdCertificate


def _same_key(a: PublicKey, b: PublicKey) -> bool:
    return spki_sha256(a) == spki_sha256(b)


def _certified_restricted(runner: CheckRunner, iak: TpmKey, attest: bytes, signature: bytes,
                          public: bytes, binding: bytes, what: str) -> None:
    """A certify of a restricted key (the LAK): verify_certify refuses restricted keys,
    the LAK's attributes are checked as an AK's instead."""
    att = check_signed_attest(runner, iak, attest, signature, what, CERTIFY_ERRORS)
    name = load_key(public).name

    def certified() -> None:
        if att.type != TPM_ST_ATTEST_CERTIFY:
            raise CertifyTypeInvalid(f"type 0x{att.type:04x} is not TPM_ST_ATTEST_CERTIFY")
        if not hmac.compare_digest(att.certified_name, name):
            raise CertifyNameMismatch("certified Name is not the Name of the presented LAK")
        if not hmac.compare_digest(att.extra_data, binding):
            raise CertifyQualifyingMismatch("qualifying data is not bound to this challenge")

    runner.run(f"{what}.name", certified)


def _same_device(req: OnboardingRequest, iak_cert: DevIdCertificate,
                 idevid_cert: DevIdCertificate, iak: TpmKey, idevid: TpmKey) -> None:
    """Both certificates name one device, certify the presented keys, and the EK is the
    one the IAK certificate names."""
    if iak_cert.name != idevid_cert.name:
        raise DevIdTpmMismatch(
            f"the IDevID certificate names {idevid_cert.name.serial!r}, the IAK "
            f"certificate {iak_cert.name.serial!r}: not issued for this IAK's TPM")
    if not _same_key(iak_cert.key, iak.key):
        raise DevIdTpmMismatch("the IAK certificate does not certify the presented IAK")
    if not _same_key(idevid_cert.key, idevid.key):
        raise DevIdTpmMismatch("the IDevID certificate does not certify the presented IDevID")
    named = ek_identifier(iak_cert.cert)
    ek = public_key(check_ek_public(req.ek_public))
    if named is None or not hmac.compare_digest(named, spki_sha256(ek)):
        raise DevIdTpmMismatch("the EK is not the one the IAK certificate names")


def _idevid_signed(req: OnboardingRequest, idevid: TpmKey, nonce: bytes) -> None:
    try:
        names = load_key(req.lak_public).name, load_key(req.ldevid_public).name
    except IdentityError as exc:
        raise IdevidSignatureInvalid(f"local keys do not parse: {exc.detail}") from exc
    if not verify_signature(idevid.key, req.idevid_signature, idevid_binding(nonce, *names)):
        raise IdevidSignatureInvalid("the IDevID's signature over the challenge and the new "
                                     "keys does not verify")


def verify_onboarding(
    runner: CheckRunner, req: OnboardingRequest, nonce: bytes,
    roots: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate],
    now: dt.datetime,
) -> OnboardingEvidence | None:
    """Run every onboarding check into ``runner``; the evidence when all passed."""
    chain = presented_chain(intermediates, req.chain)
    iak_cert = runner.run("iak.certificate", lambda: check_devid_certificate(
        req.iak_certificate, "iak", roots, chain, now))
    idevid_cert = runner.run("idevid.certificate", lambda: check_devid_certificate(
        req.idevid_certificate, "idevid", roots, chain, now))
    iak = runner.run("iak.attributes", lambda: check_iak_public(req.iak_public))
    idevid = runner.run("idevid.attributes", lambda: check_idevid_public(req.idevid_public))

    if iak_cert is None or idevid_cert is None or iak is None or idevid is None:
        runner.skip("devid.same_device", "a certificate or key was refused")
        return None
    runner.run("devid.same_device", lambda: _same_device(req, iak_cert, idevid_cert, iak, idevid))
    binding = certify_binding(nonce, iak.name)
    before = len(runner.checks)
    verify_certify(runner, iak, req.idevid_certify.attest, req.idevid_certify.signature,
                   req.idevid_public, qualifying_data=binding, what="idevid.certify")
    if not all(c.passed for c in runner.checks[before:]):
        runner.fail("idevid.same_tpm", IdevidCertifyInvalid(
            "the IDevID is not certified by this IAK for this challenge: another TPM's "
            "IAK, or a replayed certify"))
    lak = record_attestation_key(runner, req.lak_public)
    if lak is not None:
        _certified_restricted(runner, iak, req.lak_certify.attest, req.lak_certify.signature,
                              req.lak_public, binding, "lak.certify")
    ldevid = verify_certify(runner, iak, req.ldevid_certify.attest,
                            req.ldevid_certify.signature, req.ldevid_public,
                            qualifying_data=binding, what="ldevid.certify")
    runner.run("idevid.signature", lambda: _idevid_signed(req, idevid, nonce))
    if not runner.passed or lak is None or ldevid is None:
        return None
    return OnboardingEvidence(iak_cert.serial, fingerprint(req.idevid_certificate),
                              req.ek_public, lak, ldevid, iak_cert, idevid_cert)
