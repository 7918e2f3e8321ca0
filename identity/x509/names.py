"""What may go into a certificate from the device record, and how it is encoded.

Two fields of a device record end up in certificates: the factory ``serial`` (the
subject's serialNumber, 2.5.4.5, of the device identity certificate) and the
``device_id`` (the subject's commonName, the ``spiffe://<domain>/device/<id>`` URI
SAN and, with Vault, a DNS name ``<id>.<suffix>``). ``check_certificate_fields``
is the one check for both; it runs when a value is accepted (pre-registration,
enrollment start) and again before a challenge is spent, so a certificate never
fails to build for a reason that was known in advance.

The rules (docs/protocol.md, "Fields that go into certificates"):

- serial: 1 to 64 characters (RFC 5280 ``ub-serial-number``); letters, marks,
  digits, punctuation, symbols and the ASCII space, in any script; no control or
  format character (NUL, newline, zero-width joiner, bidi override), no private-use,
  unassigned or surrogate code point, no other kind of space, no space at either end.
- device id: 1 to 63 lowercase ASCII letters, digits and hyphens, starting with a
  letter or digit (a DNS label, a URI path segment and a commonName within
  ``ub-common-name``); the attestor derives it from the EK, so only a bug breaks it.

Encoding: commonName is a DirectoryString, written as UTF8String (RFC 5280 section
4.1.2.6). serialNumber is written as PrintableString when the serial fits that
alphabet, and as UTF8String when it does not (``_``, ``@``, non-ASCII letters).
RFC 5280's ASN.1 module declares X520SerialNumber as PrintableString only, so the
UTF8String form is a deliberate deviation: it is the one encoding that carries such
a serial exactly, and the parsers that read these certificates (OpenSSL, Go,
pyca/cryptography, so the agent and the attestor's mTLS check) accept it; strict
linters flag it. Factories that need strictly conformant certificates keep serials
within PrintableString's alphabet (A-Z a-z 0-9 space ' ( ) + , - . / : = ?).
"""

from __future__ import annotations

import re
import unicodedata

from cryptography import x509
from cryptography.x509.name import _ASN1Type  # NameAttribute's documented third argument
from cryptography.x509.oid import NameOID

from identity.errors import DeviceFieldInvalid

UB_SERIAL_NUMBER = 64  # RFC 5280 Appendix A, ub-serial-number
UB_COMMON_NAME = 64  # RFC 5280 Appendix A, ub-common-name
DNS_LABEL_MAX = 63  # RFC 1035 section 2.3.4

# X.680 PrintableString: A-Z a-z 0-9 space ' ( ) + , - . / : = ?
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
# Letters, marks, numbers, punctuation, symbols; the ASCII space is allowed apart.
_ALLOWED_CATEGORIES = frozenset("LMNPS")


def is_printable_string(value: str) -> bool:
    return _PRINTABLE.fullmatch(value) is not None


def check_serial(value: str, where: str = "") -> str:
    """The factory serial as it may appear in a certificate, or DeviceFieldInvalid
    (``where`` says where the value came from, e.g. ``device 3``)."""
    if not value:
        raise DeviceFieldInvalid("serial", "is empty", where)
    if len(value) > UB_SERIAL_NUMBER:
        raise DeviceFieldInvalid(
            "serial", f"has {len(value)} characters, more than the {UB_SERIAL_NUMBER} "
            "a certificate's serialNumber holds (RFC 5280 ub-serial-number)", where)
    for position, char in enumerate(value, 1):
        category = unicodedata.category(char)
        if char != " " and category[0] not in _ALLOWED_CATEGORIES:
            raise DeviceFieldInvalid(
                "serial", f"character {position} is U+{ord(char):04X} "
                f"({unicodedata.name(char, 'unnamed')}, category {category}): "
                "control, format, private-use, unassigned characters and spaces "
                "other than U+0020 cannot go into a certificate", where)
    if value != value.strip(" "):
        raise DeviceFieldInvalid("serial", "starts or ends with a space", where)
    return value


def check_device_id(value: str, where: str = "") -> str:
    if not 0 < len(value) <= DNS_LABEL_MAX or _DEVICE_ID.fullmatch(value) is None:
        raise DeviceFieldInvalid(
            "device_id", f"must be 1 to {DNS_LABEL_MAX} lowercase letters, digits and "
            "hyphens starting with a letter or digit", where)
    return value


def check_certificate_fields(*, device_id: str, serial: str | None, where: str = "") -> None:
    """Every device-record field that goes into a certificate, checked at once."""
    check_device_id(device_id, where)
    if serial is not None:
        check_serial(serial, where)


def serial_number_attribute(serial: str) -> x509.NameAttribute[str]:
    """The subject's serialNumber: PrintableString when the serial fits its alphabet,
    UTF8String otherwise (cryptography's default, PrintableString, fails to encode
    ``line_7@fab`` or ``Gerät-Ü``)."""
    kind = _ASN1Type.PrintableString if is_printable_string(serial) else _ASN1Type.UTF8String
    return x509.NameAttribute(NameOID.SERIAL_NUMBER, serial, kind)
