"""Device-record fields in certificates: what is accepted, and how it is encoded."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.errors import DeviceFieldInvalid
from identity.x509.names import (
    check_certificate_fields,
    check_device_id,
    check_serial,
    is_printable_string,
)
from identity.x509.profiles import SigningCa, device_identity_certificate, root_ca

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
DEVICE_ID = "d0123456789abcdef0123456789abcde"
_ROOT_KEY = ec.generate_private_key(ec.SECP256R1())
_ROOT = SigningCa(_ROOT_KEY, root_ca(_ROOT_KEY, "names test root", NOW, 30))
_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def _identity(serial: str | None, device_id: str = DEVICE_ID) -> x509.Certificate:
    cert = device_identity_certificate(
        _ROOT, _LEAF_KEY.public_key(), device_id=device_id, serial=serial,
        trust_domain="edgeproof.test", now=NOW, days=365)
    # What a relying party reads: the DER, parsed afresh.
    return x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))


def _serial_attribute(cert: x509.Certificate) -> x509.NameAttribute[str]:
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert isinstance(attribute.value, str)
    return attribute  # type: ignore[return-value]


@pytest.mark.parametrize("serial", [
    "Gerät-Ü_01@fab", "line_7@fab-Ü", "工場-7_線@fab", "SN_0001", "ops@factory",
    "Ü" * 64,
])
def test_serials_printablestring_cannot_hold_are_issued_as_utf8string(serial: str) -> None:
    cert = _identity(serial)
    attribute = _serial_attribute(cert)
    assert attribute.value == serial
    assert attribute._type == _ASN1Type.UTF8String
    encoded = serial.encode()
    length = bytes([len(encoded)]) if len(encoded) < 128 else bytes([0x81, len(encoded)])
    assert b"\x0c" + length + encoded in cert.public_bytes(serialization.Encoding.DER)
    # A client verifier (what the agent runs on its new certificate) accepts it.
    chain = (PolicyBuilder().store(Store([_ROOT.cert])).time(NOW + dt.timedelta(hours=1))
             .build_client_verifier().verify(cert, []))
    assert chain.chain[0] == cert


def test_printable_serials_stay_printablestring() -> None:
    attribute = _serial_attribute(_identity("SN-0001 (rev. 2)"))
    assert attribute.value == "SN-0001 (rev. 2)"
    assert attribute._type == _ASN1Type.PrintableString
    assert is_printable_string("A-Z a-z 0-9 '()+,-./:=?")
    assert not is_printable_string("a_b") and not is_printable_string("a@b")


def test_a_certificate_without_serial_still_builds() -> None:
    assert not _identity(None).subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)


@pytest.mark.parametrize(("serial", "why"), [
    ("", "is empty"),
    ("FAB-" + "0" * 61, "65 characters"),  # a concatenated batch id, one too long
    ("SN-0001\x00admin", "U+0000"),  # NUL truncation in C consumers
    ("SN-0001\nO=evil", "U+000A"),  # a newline to forge a second line in logs and DNs
    ("SN-0001\x1b[2J", "U+001B"),  # terminal escape
    ("FAB\u200d001", "U+200D"),  # zero-width joiner: looks like FAB001
    ("SN-\u202e1000", "U+202E"),  # right-to-left override: displays reversed
    ("SN-\ue000", "U+E000"),  # private use
    ("SN-\U000e0001", "U+E0001"),  # language tag (format)
    ("SN\u00a0001", "U+00A0"),  # no-break space
    ("SN\u2028001", "U+2028"),  # line separator
    ("SN-\ud800", "U+D800"),  # a lone surrogate: not valid UTF-8
    ("SN-\U000e0080", "U+E0080"),  # unassigned
    (" SN-1", "space"),
    ("SN-1 ", "space"),
])
def test_serials_that_cannot_go_into_a_certificate_are_refused(serial: str, why: str) -> None:
    with pytest.raises(DeviceFieldInvalid, match=r"^serial .*" + why.replace("+", r"\+")) as e:
        check_serial(serial)
    assert e.value.code == "device.field_invalid" and e.value.field == "serial"
    if serial:  # the builder refuses it too, by the same rule ("" means no serial there)
        with pytest.raises(DeviceFieldInvalid):
            _identity(serial)


@pytest.mark.parametrize("device_id", ["", "D0123", "-d0", "d0/../x", "d0.example", "d" * 64,
                                       "dé0"])
def test_device_ids_that_cannot_be_a_dns_label_or_uri_segment_are_refused(
        device_id: str) -> None:
    with pytest.raises(DeviceFieldInvalid, match="^device_id ") as e:
        check_device_id(device_id)
    assert e.value.field == "device_id"
    with pytest.raises(DeviceFieldInvalid):
        check_certificate_fields(device_id=device_id, serial="SN-1")


def test_certificate_fields_check_both() -> None:
    check_certificate_fields(device_id=DEVICE_ID, serial=None)
    check_certificate_fields(device_id="d" * 63, serial="line_7@fab-Ü")
    with pytest.raises(DeviceFieldInvalid, match="^serial"):
        check_certificate_fields(device_id=DEVICE_ID, serial="bad\x00")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=70))
def test_every_accepted_serial_is_issued_exactly(serial: str) -> None:
    """Whatever the check accepts, a certificate carries byte for byte; whatever it
    refuses is refused with its code, never an encoder's error."""
    try:
        check_serial(serial)
    except DeviceFieldInvalid:
        with pytest.raises(DeviceFieldInvalid):
            _identity(serial)
        return
    assert _serial_attribute(_identity(serial)).value == serial
