"""IAK and IDevID certificates: the profile an OEM CA issues, and its checks.

What the profile holds (docs/onboarding.md, "Certificate profile"):

- both: X.509 v3, basicConstraints cA=FALSE (critical), keyUsage digitalSignature only
  (critical), subject O=<OEM>, serialNumber=<device serial> (when present, it must be
  the HardwareModuleName's serial), CN; subjectAltName with
  exactly one HardwareModuleName (hwType 2.23.133.1.2 TPM 2.0, hwSerialNum the serial);
  SKI and AKI; notAfter 99991231235959Z unless told otherwise (IEEE 802.1AR: an IDevID
  does not expire).
- IAK: extendedKeyUsage tcg-kp-AIKCertificate (2.23.133.8.3); certificatePolicies
  tcg-cap-verifiedTPMResidency, -verifiedTPMFixed and -verifiedTPMRestricted.
- IDevID: no extendedKeyUsage (so it can never pass for an AIK credential);
  certificatePolicies tcg-cap-verifiedTPMResidency and -verifiedTPMFixed.

The checks validate the chain with ``cryptography``'s X.509 verifier at ``now`` against
the imported manufacturer roots, then the profile field by field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from identity.devid.hwname import (
    HardwareModuleName,
    ek_permanent_identifier,
    hardware_module_name,
    tpm_device,
)
from identity.errors import DevIdChainUntrusted, DevIdProfileInvalid
from identity.tpm.keys import PublicKey
from identity.x509.names import check_serial, serial_number_attribute

TCG_KP_AIK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.3")
VERIFIED_TPM_RESIDENCY = x509.ObjectIdentifier("2.23.133.11.1.1")
VERIFIED_TPM_FIXED = x509.ObjectIdentifier("2.23.133.11.1.2")
VERIFIED_TPM_RESTRICTED = x509.ObjectIdentifier("2.23.133.11.1.3")
IAK_POLICIES = (VERIFIED_TPM_RESIDENCY, VERIFIED_TPM_FIXED, VERIFIED_TPM_RESTRICTED)
IDEVID_POLICIES = (VERIFIED_TPM_RESIDENCY, VERIFIED_TPM_FIXED)
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)  # RFC 5280 4.1.2.5


@dataclass(frozen=True, slots=True)
class OemCa:
    """The OEM's issuing CA: its key and certificate (a root, or under one)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True, slots=True)
class DevIdCertificate:
    """A verified IAK or IDevID certificate: its device name, key and chain."""

    cert: x509.Certificate
    name: HardwareModuleName
    serial: str
    key: PublicKey
    chain: tuple[x509.Certificate, ...]


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


def _policies(oids: Iterable[x509.ObjectIdentifier]) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in oids])


def issue(ca: OemCa, public: PublicKey, *, kind: str, serial: str, organization: str,
          now: dt.datetime, not_after: dt.datetime = NO_EXPIRY,
          ek_digest: str | None = None, name: HardwareModuleName | None = None,
          ) -> x509.Certificate:
    """An IAK (``kind="iak"``) or IDevID (``kind="idevid"``) certificate for ``public``.

    ``ek_digest`` (SHA-256 of the EK's SubjectPublicKeyInfo, hex) goes into the IAK's
    subjectAltName as a tcg-on-ekPermIdentifier; ``name`` overrides the
    HardwareModuleName (tests build forgeries with it)."""
    if kind not in ("iak", "idevid"):
        raise ValueError(f"unknown DevID certificate kind {kind!r}")
    check_serial(serial)
    sans: list[x509.GeneralName] = [(name or tpm_device(serial)).general_name()]
    if ek_digest is not None:
        sans.append(ek_permanent_identifier(ek_digest))
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        serial_number_attribute(serial),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{kind.upper()} {serial}"),
    ])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(min(not_after, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(_policies(IAK_POLICIES if kind == "iak" else IDEVID_POLICIES),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
    )
    if kind == "iak":
        builder = builder.add_extension(x509.ExtendedKeyUsage([TCG_KP_AIK_CERTIFICATE]),
                                        critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def verify_chain(cert: x509.Certificate, roots: Sequence[x509.Certificate],
                 intermediates: Sequence[x509.Certificate], now: dt.datetime,
                 what: str) -> tuple[x509.Certificate, ...]:
    """The certificate chains to one of ``roots`` at ``now`` (expired: refused)."""
    if not roots:
        raise DevIdChainUntrusted(f"{what}: no manufacturer root is imported")
    verifier = (
        PolicyBuilder().store(Store(list(roots))).time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                            ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(cert, list(intermediates)).chain)
    except VerificationError as exc:
        raise DevIdChainUntrusted(f"{what} certificate does not chain to an imported "
                                  f"manufacturer root at {now.isoformat()}: {exc}") from exc


def _policy_oids(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return set()
    return {p.policy_identifier for p in ext}


def _ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def profile_problems(cert: x509.Certificate, kind: str) -> list[str]:
    """Every way ``cert`` departs from the IAK or IDevID profile (empty: it fits)."""
    problems: list[str] = []
    if cert.version != x509.Version.v3:
        problems.append("not X.509 v3")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            problems.append("it is a CA certificate")
    except x509.ExtensionNotFound:
        problems.append("basicConstraints is missing")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            problems.append("keyUsage lacks digitalSignature")
        if usage.key_cert_sign or usage.crl_sign:
            problems.append("keyUsage allows signing certificates or CRLs")
    except x509.ExtensionNotFound:
        problems.append("keyUsage is missing")
    ekus = _ekus(cert)
    policies = _policy_oids(cert)
    wanted: tuple[x509.ObjectIdentifier, ...]
    if kind == "iak":
        if ekus is None or TCG_KP_AIK_CERTIFICATE not in ekus:
            problems.append("extendedKeyUsage lacks tcg-kp-AIKCertificate")
        wanted = IAK_POLICIES
    else:
        if ekus is not None and TCG_KP_AIK_CERTIFICATE in ekus:
            problems.append("an IDevID certificate carries tcg-kp-AIKCertificate")
        wanted = IDEVID_POLICIES
    missing = [oid.dotted_string for oid in wanted if oid not in policies]
    if missing:
        problems.append("certificatePolicies lack " + ", ".join(missing))
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        problems.append("the key is neither RSA nor ECC")
    return problems


def check_devid_certificate(der: bytes, kind: str, roots: Sequence[x509.Certificate],
                            intermediates: Sequence[x509.Certificate],
                            now: dt.datetime) -> DevIdCertificate:
    """Parse, chain, profile and HardwareModuleName of an IAK or IDevID certificate."""
    what = "IAK" if kind == "iak" else "IDevID"
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise DevIdProfileInvalid(f"{what} certificate does not parse: {exc}") from exc
    chain = verify_chain(cert, roots, intermediates, now, what)
    problems = profile_problems(cert, kind)
    if problems:
        raise DevIdProfileInvalid(f"{what} certificate profile: " + "; ".join(problems))
    name = hardware_module_name(cert)
    # One device, one serial: a subject serialNumber that names another device than the
    # HardwareModuleName would make whoever reads the subject (logs, SPIFFE selectors,
    # people) and this check disagree on which device this is.
    named = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)}
    if named - {name.serial_text}:
        raise DevIdProfileInvalid(f"{what} certificate subject serialNumber "
                                  f"{sorted(named)} is not its HardwareModuleName serial "
                                  f"{name.serial_text!r}")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise DevIdProfileInvalid(f"{what} certificate key is neither RSA nor ECC")
    return DevIdCertificate(cert, name, name.serial_text, key, chain)
