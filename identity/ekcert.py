"""EK certificates: chain validation against a TPM-vendor trust store, and the
TCG EK Credential Profile (EKU 2.23.133.8.1, SAN directory name with TPM
manufacturer, model and version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from identity.errors import EkChainUntrusted, EkKeyMismatch, EkKeyWeak, EkProfileInvalid
from identity.roca import roca_vulnerable
from identity.tpm.keys import PublicKey
from identity.truststore import TrustStore, load_certificates

__all__ = ["TrustStore", "check_ek_matches", "check_ek_profile", "verify_ek_certificate"]

EK_CERTIFICATE_EKU = ObjectIdentifier("2.23.133.8.1")
TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
TPM_VERSION = ObjectIdentifier("2.23.133.2.3")


@dataclass(frozen=True, slots=True)
class EkCertificateInfo:
    manufacturer: str | None
    model: str | None
    version: str | None
    public_key: PublicKey
    chain: tuple[x509.Certificate, ...]


def verify_ek_certificate(
    cert_bytes: bytes,
    store: TrustStore,
    now: dt.datetime,
    presented_intermediates: Iterable[bytes] = (),
    *,
    require_san: bool = True,
) -> EkCertificateInfo:
    """Validate an EK certificate to a trusted root at ``now`` and check the TCG profile."""
    try:
        cert = load_certificates(cert_bytes)[0]
    except ValueError as exc:
        raise EkProfileInvalid(f"EK certificate does not parse: {exc}") from exc
    extra: list[x509.Certificate] = list(store.intermediates)
    for blob in presented_intermediates:
        try:
            extra.extend(load_certificates(blob))
        except ValueError as exc:
            raise EkChainUntrusted(f"presented intermediate does not parse: {exc}") from exc
    if not store.roots:
        raise EkChainUntrusted("the EK trust store holds no root certificate")
    verifier = (
        PolicyBuilder()
        .store(Store(list(store.roots)))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(cert, extra)
    except VerificationError as exc:
        raise EkChainUntrusted(f"EK certificate does not chain to a trusted root: {exc}") from exc
    manufacturer, model, version = check_ek_profile(cert, require_san)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise EkProfileInvalid("EK certificate key is neither RSA nor ECC")
    if isinstance(key, rsa.RSAPublicKey) and roca_vulnerable(key.public_numbers().n):
        raise EkKeyWeak("the EK's RSA modulus is from the ROCA-vulnerable generator "
                        "(CVE-2017-15361): update the TPM firmware and re-provision")
    return EkCertificateInfo(manufacturer, model, version, key, tuple(verified.chain))


def check_ek_profile(
    cert: x509.Certificate, require_san: bool
) -> tuple[str | None, str | None, str | None]:
    """TCG EK Credential Profile: v3, not a CA, key usage fit for an EK, EKU (if any)
    with tcg-kp-EKCertificate, SAN directory name with TPM manufacturer, model and
    version (if required). Returns (manufacturer, model, version)."""
    if cert.version != x509.Version.v3:
        raise EkProfileInvalid("EK certificate is not X.509 v3")
    exts = cert.extensions
    _check_key_usage(cert)
    try:
        bc = exts.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
        if isinstance(bc, x509.BasicConstraints) and bc.ca:
            raise EkProfileInvalid("EK certificate is a CA certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = exts.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        if isinstance(eku, x509.ExtendedKeyUsage) and EK_CERTIFICATE_EKU not in list(eku):
            raise EkProfileInvalid("EK certificate's EKU lacks tcg-kp-EKCertificate")
    except x509.ExtensionNotFound:
        pass
    attrs: dict[ObjectIdentifier, str] = {}
    try:
        san = exts.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        if isinstance(san, x509.SubjectAlternativeName):
            for name in san.get_values_for_type(x509.DirectoryName):
                for attr in name:
                    attrs[attr.oid] = str(attr.value)
    except x509.ExtensionNotFound:
        pass
    if require_san and not {TPM_MANUFACTURER, TPM_MODEL, TPM_VERSION} <= attrs.keys():
        raise EkProfileInvalid("EK certificate SAN lacks TPM manufacturer, model or version")
    return attrs.get(TPM_MANUFACTURER), attrs.get(TPM_MODEL), attrs.get(TPM_VERSION)


def _check_key_usage(cert: x509.Certificate) -> None:
    """An EK decrypts (RSA: keyEncipherment) or agrees keys (ECC: keyAgreement); it never
    signs certificates. Key usage is optional in the profile; when present it must fit."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if usage.key_cert_sign or usage.crl_sign:
        raise EkProfileInvalid("EK certificate key usage allows signing certificates")
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and not usage.key_encipherment:
        raise EkProfileInvalid("RSA EK certificate key usage lacks keyEncipherment")
    if isinstance(key, ec.EllipticCurvePublicKey) and not usage.key_agreement:
        raise EkProfileInvalid("ECC EK certificate key usage lacks keyAgreement")


def check_ek_matches(info: EkCertificateInfo, ek_key: PublicKey) -> None:
    """The EK public area the device presents holds the certificate's key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if info.public_key.public_bytes(der, fmt) != ek_key.public_bytes(der, fmt):
        raise EkKeyMismatch("the EK public area does not hold the certified EK key")
