"""Certificate profiles: the local CA pair, device identity (LDevID-style), workload.

Pure builders: keys, names, serials and the time are inputs. Names in device
certificates come from the device record, never from a CSR.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity.tpm.keys import PublicKey
from identity.x509.names import check_certificate_fields, serial_number_attribute

CLOCK_SKEW = dt.timedelta(minutes=5)  # backdate notBefore for devices with drifting clocks


@dataclass(frozen=True, slots=True)
class SigningCa:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def spiffe_id(trust_domain: str, device_id: str) -> str:
    return f"spiffe://{trust_domain}/device/{device_id}"


def _name(common_name: str, org: str = "edgeproof") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """CAs sign certificates and CRLs; leaves only sign (TLS handshakes, requests)."""
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _ca_builder(
    subject: x509.Name, public: PublicKey, now: dt.datetime, days: int, path_length: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def root_ca(
    key: ec.EllipticCurvePrivateKey, name: str, now: dt.datetime, days: int
) -> x509.Certificate:
    subject = _name(name)
    builder = _ca_builder(subject, key.public_key(), now, days, path_length=1).issuer_name(subject)
    return builder.sign(key, hashes.SHA256())


def issuing_ca(
    root: SigningCa, key: ec.EllipticCurvePrivateKey, name: str, now: dt.datetime, days: int
) -> x509.Certificate:
    builder = (
        _ca_builder(_name(name), key.public_key(), now, days, path_length=0)
        .issuer_name(root.cert.subject)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
    )
    return builder.sign(root.key, hashes.SHA256())


# Extension values are immutable: the constant ones are built once, not per certificate.
_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_LEAF_KEY_USAGE = _key_usage(ca=False)
_EKUS: dict[tuple[x509.ObjectIdentifier, ...], x509.ExtendedKeyUsage] = {}


def _extended_key_usage(ekus: list[x509.ObjectIdentifier]) -> x509.ExtendedKeyUsage:
    key = tuple(ekus)
    found = _EKUS.get(key)
    if found is None:
        found = x509.ExtendedKeyUsage(ekus)
        if len(_EKUS) < 16:  # the profiles use three lists
            _EKUS[key] = found
    return found


@functools.lru_cache(maxsize=16)
def _authority_key_id(issuer: SigningCa) -> x509.AuthorityKeyIdentifier:
    """The issuer key's identifier (a hash of its public key): once per issuer."""
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def _leaf(
    issuer: SigningCa,
    subject: x509.Name,
    public: PublicKey,
    sans: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
    ekus: list[x509.ObjectIdentifier],
    serial: int | None = None,
) -> x509.Certificate:
    not_after = min(not_after, issuer.cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_LEAF_CONSTRAINTS, critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(_extended_key_usage(ekus), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def device_identity_certificate(
    issuer: SigningCa,
    public: PublicKey,
    *,
    device_id: str,
    serial: str | None,
    trust_domain: str,
    now: dt.datetime,
    days: int,
    cert_serial: int | None = None,
) -> x509.Certificate:
    """Long-lived certificate for the TPM-resident DevID key (IEEE 802.1AR LDevID style).
    The serial and device id must pass :func:`check_certificate_fields` (checked again
    here: DeviceFieldInvalid rather than an encoder's ValueError)."""
    check_certificate_fields(device_id=device_id, serial=serial or None)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeproof device")]
    if serial:
        attrs.append(serial_number_attribute(serial))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, device_id))  # UTF8String
    return _leaf(
        issuer,
        x509.Name(attrs),
        public,
        [x509.UniformResourceIdentifier(spiffe_id(trust_domain, device_id))],
        now - CLOCK_SKEW,
        now + dt.timedelta(days=days),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        cert_serial,
    )


def workload_certificate(
    issuer: SigningCa,
    public: PublicKey,
    *,
    device_id: str,
    trust_domain: str,
    now: dt.datetime,
    ttl: dt.timedelta,
    dns_names: tuple[str, ...] = (),
    serial: int | None = None,
) -> x509.Certificate:
    """Short-lived mTLS certificate with a SPIFFE-style URI SAN built from the record."""
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(spiffe_id(trust_domain, device_id))
    ]
    sans.extend(x509.DNSName(name) for name in dns_names)
    return _leaf(
        issuer,
        _name(device_id),
        public,
        sans,
        now - dt.timedelta(seconds=30),
        now + ttl,
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        serial,
    )


def tls_server_certificate(
    issuer: SigningCa,
    public: PublicKey,
    *,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    """The attestor's own HTTPS certificate: serverAuth only, its host names and addresses
    as SANs (clients match those, never the subject), so it can never serve as a device's
    client certificate."""
    if not dns_names and not ip_addresses:
        raise ValueError("a TLS server certificate needs at least one DNS name or IP address")
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans.extend(x509.IPAddress(address) for address in ip_addresses)
    common_name = dns_names[0] if dns_names else str(ip_addresses[0])
    return _leaf(
        issuer,
        _name(common_name),
        public,
        sans,
        now - CLOCK_SKEW,
        now + dt.timedelta(days=days),
        [ExtendedKeyUsageOID.SERVER_AUTH],
    )
