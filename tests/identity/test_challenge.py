"""Challenge nonces issued without a database write: forged, misdirected and late ones are
refused with the reason codes the stored nonces had (single use: tests/attestor)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity import challenge
from identity.errors import NonceExpired, NonceUnknown, NonceWrongDevice

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
KEY = challenge.derive_key(b"passphrase", b"root certificate")
LATER = NOW + dt.timedelta(seconds=60)


def test_an_issued_nonce_checks_until_it_expires() -> None:
    nonce = challenge.issue(KEY, "dev-1", LATER)
    assert len(nonce) == challenge.SIZE == 32
    assert challenge.check(KEY, nonce, "dev-1", NOW) == LATER == challenge.expiry(nonce)
    assert challenge.check(KEY, nonce, "dev-1", LATER - dt.timedelta(seconds=1)) == LATER
    with pytest.raises(NonceExpired):
        challenge.check(KEY, nonce, "dev-1", LATER)


def test_nonces_are_fresh() -> None:
    assert len({challenge.issue(KEY, "dev-1", LATER) for _ in range(100)}) == 100


def test_a_nonce_for_another_device_is_refused_as_such() -> None:
    nonce = challenge.issue(KEY, "dev-2", LATER)
    with pytest.raises(NonceWrongDevice):
        challenge.check(KEY, nonce, "dev-1", NOW)


def test_a_nonce_from_another_attestor_is_unknown() -> None:
    other = challenge.derive_key(b"passphrase", b"another deployment's root")
    with pytest.raises(NonceUnknown):
        challenge.check(KEY, challenge.issue(other, "dev-1", LATER), "dev-1", NOW)


def test_an_extended_expiry_breaks_the_mac() -> None:
    """The device cannot move its nonce's expiry: the issued MAC covers it."""
    nonce = bytearray(challenge.issue(KEY, "dev-1", LATER))
    nonce[8:12] = (int(LATER.timestamp()) + 3600).to_bytes(4, "big")
    with pytest.raises(NonceUnknown):
        challenge.check(KEY, bytes(nonce), "dev-1", NOW)


@given(position=st.integers(0, 31), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    nonce = bytearray(challenge.issue(KEY, "dev-1", LATER, salt=b"\x01" * 8))
    nonce[position] ^= 1 << bit
    with pytest.raises((NonceUnknown, NonceWrongDevice)):
        challenge.check(KEY, bytes(nonce), "dev-1", NOW)


@pytest.mark.parametrize("nonce", [b"", b"\x00" * 31, b"\x00" * 33, b"\x00" * 32])
def test_malformed_or_zero_nonces_are_unknown(nonce: bytes) -> None:
    with pytest.raises(NonceUnknown):
        challenge.check(KEY, nonce, "dev-1", NOW)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        challenge.issue(b"short", "dev-1", LATER)
