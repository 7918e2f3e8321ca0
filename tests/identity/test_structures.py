"""Strict unmarshalling of TPM structures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.softtpm import SoftKey
from identity.errors import TpmStructureMalformed
from identity.tpm.structures import MAX_STRUCTURE, parse_attest, parse_public, parse_signature

pytestmark = pytest.mark.adversarial


@pytest.mark.parametrize("parse", [parse_public, parse_attest, parse_signature])
def test_empty_and_oversized_inputs_are_malformed(parse: object) -> None:
    for data in (b"", b"\x00" * (MAX_STRUCTURE + 1)):
        with pytest.raises(TpmStructureMalformed):
            parse(data)  # type: ignore[operator]


def test_public_area_with_trailing_bytes_is_malformed() -> None:
    public = SoftKey().public
    assert parse_public(public)
    with pytest.raises(TpmStructureMalformed, match="trailing"):
        parse_public(public + b"\x00")


def test_truncated_public_area_is_malformed() -> None:
    public = SoftKey().public
    with pytest.raises(TpmStructureMalformed):
        parse_public(public[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_only_ever_raise_their_typed_error(data: bytes) -> None:
    for parse in (parse_public, parse_attest, parse_signature):
        try:
            parse(data)
        except TpmStructureMalformed:
            pass
