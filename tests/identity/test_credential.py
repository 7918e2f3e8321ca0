"""Server-side credential activation: EK checks, constant-time comparison, no echo."""

from __future__ import annotations

import os

import pytest
from tpm2_pytss import TPMA_OBJECT

from agent.sim.softtpm import SoftKey
from identity.errors import ActivationMismatch, EkPublicInvalid
from identity.tpm.credential import check_activation, check_ek_public, secret_digest

pytestmark = pytest.mark.adversarial


def test_activation_mismatch_never_carries_either_value() -> None:
    expected, presented = os.urandom(32), os.urandom(32)
    with pytest.raises(ActivationMismatch) as refused:
        check_activation(secret_digest(expected), presented)
    text = str(refused.value) + repr(refused.value) + refused.value.detail
    for value in (expected, presented, secret_digest(expected)):
        assert value.hex() not in text and value.hex().upper() not in text


def test_activation_match() -> None:
    secret = os.urandom(32)
    check_activation(secret_digest(secret), secret)


def test_signing_key_is_not_an_ek() -> None:
    with pytest.raises(EkPublicInvalid, match="decrypt is not set"):
        check_ek_public(SoftKey().public)


def test_unrestricted_decrypt_key_is_not_an_ek() -> None:
    attrs = (TPMA_OBJECT.DECRYPT | TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
             | TPMA_OBJECT.SENSITIVEDATAORIGIN)
    with pytest.raises(EkPublicInvalid, match="restricted is not set"):
        check_ek_public(SoftKey(attributes=int(attrs)).public)
