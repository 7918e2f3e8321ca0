"""HardwareModuleName (RFC 4108 section 5): the otherName in an IDevID/IAK certificate's
subjectAltName that names the device by hardware type and serial number.

    id-on-hardwareModuleName OBJECT IDENTIFIER ::= { id-on 4 }   -- 1.3.6.1.5.5.7.8.4
    HardwareModuleName ::= SEQUENCE {
        hwType       OBJECT IDENTIFIER,
        hwSerialNum  OCTET STRING }

Encoded and decoded with asn1crypto; decoding is strict (DER only, nothing trailing,
re-encoding must give the same bytes), so two certificates naming one device compare
equal byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509

from identity.errors import HardwareModuleNameMalformed, HardwareModuleNameMissing

HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")
# TCG OID for "hardware type TPM 2.0" (tcg 1 2), the hwType the DevID spec gives a TPM.
HW_TYPE_TPM2 = "2.23.133.1.2"
MAX_SERIAL = 64  # octets; the same bound as a certificate's serialNumber attribute


# RFC 4043 PermanentIdentifier with the TCG's assigner tcg-on-ekPermIdentifier: names the
# TPM's EK by the SHA-256 of its SubjectPublicKeyInfo (hex), in the IAK certificate.
PERMANENT_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3")
EK_PERM_ID_SHA256 = "2.23.133.12.1"


class _Asn1PermanentIdentifier(core.Sequence):  # type: ignore[misc]
    _fields = [("identifier_value", core.UTF8String, {"optional": True}),
               ("assigner", core.ObjectIdentifier, {"optional": True})]


def ek_permanent_identifier(ek_spki_sha256: str) -> x509.OtherName:
    value = _Asn1PermanentIdentifier({"identifier_value": ek_spki_sha256,
                                      "assigner": EK_PERM_ID_SHA256})
    return x509.OtherName(PERMANENT_IDENTIFIER, bytes(value.dump(force=True)))


def ek_identifier(cert: x509.Certificate) -> str | None:
    """The EK digest an IAK certificate names (tcg-on-ekPermIdentifier), or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != PERMANENT_IDENTIFIER:
            continue
        try:
            parsed = _Asn1PermanentIdentifier.load(other.value, strict=True)
            if parsed["assigner"].dotted == EK_PERM_ID_SHA256:
                return str(parsed["identifier_value"].native)
        except (ValueError, TypeError, KeyError):
            return None
    return None


class _Asn1HardwareModuleName(core.Sequence):  # type: ignore[misc]
    _fields = [("hw_type", core.ObjectIdentifier), ("hw_serial_num", core.OctetString)]


@dataclass(frozen=True, slots=True)
class HardwareModuleName:
    hw_type: str  # dotted OID
    serial: bytes

    @property
    def serial_text(self) -> str:
        """The serial as text (the OEM writes UTF-8); undecodable bytes are refused."""
        try:
            return self.serial.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HardwareModuleNameMalformed("hwSerialNum is not UTF-8 text") from exc

    def to_der(self) -> bytes:
        if not 0 < len(self.serial) <= MAX_SERIAL:
            raise ValueError(f"hwSerialNum must be 1 to {MAX_SERIAL} octets")
        value = _Asn1HardwareModuleName({"hw_type": self.hw_type,
                                         "hw_serial_num": self.serial})
        return bytes(value.dump(force=True))

    def general_name(self) -> x509.OtherName:
        return x509.OtherName(HARDWARE_MODULE_NAME, self.to_der())

    @classmethod
    def from_der(cls, der: bytes) -> HardwareModuleName:
        try:
            parsed = _Asn1HardwareModuleName.load(der, strict=True)
            hw_type = str(parsed["hw_type"].dotted)
            serial = bytes(parsed["hw_serial_num"].native)
            again = _Asn1HardwareModuleName({"hw_type": hw_type, "hw_serial_num": serial})
            canonical = bytes(again.dump(force=True))
        except (ValueError, TypeError, KeyError) as exc:
            raise HardwareModuleNameMalformed(f"HardwareModuleName does not parse: {exc}") from exc
        if canonical != der:
            raise HardwareModuleNameMalformed("HardwareModuleName is not DER")
        if not 0 < len(serial) <= MAX_SERIAL:
            raise HardwareModuleNameMalformed(f"hwSerialNum must be 1 to {MAX_SERIAL} octets")
        return cls(hw_type, serial)


def tpm_device(serial: str) -> HardwareModuleName:
    """The name a TPM-resident IDevID/IAK gets: hwType TPM 2.0, the serial in UTF-8."""
    return HardwareModuleName(HW_TYPE_TPM2, serial.encode("utf-8"))


def hardware_module_name(cert: x509.Certificate) -> HardwareModuleName:
    """The one HardwareModuleName in the certificate's subjectAltName; refused when absent,
    repeated or malformed."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise HardwareModuleNameMissing("the certificate has no subjectAltName") from None
    except ValueError as exc:  # a SAN cryptography cannot parse
        raise HardwareModuleNameMalformed(f"subjectAltName does not parse: {exc}") from exc
    found = [n for n in san.get_values_for_type(x509.OtherName)
             if n.type_id == HARDWARE_MODULE_NAME]
    if not found:
        raise HardwareModuleNameMissing("subjectAltName holds no HardwareModuleName")
    if len(found) > 1:
        raise HardwareModuleNameMalformed("subjectAltName holds more than one "
                                          "HardwareModuleName")
    return HardwareModuleName.from_der(found[0].value)
