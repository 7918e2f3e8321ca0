"""PCR selections and the golden-PCR policy."""

from __future__ import annotations

import hashlib

import pytest

from identity.errors import MalformedInput, PolicyNoReference, PolicyPcrMismatch
from identity.pcr import (
    PcrSelection,
    check_values_match_selection,
    format_pcr_values,
    parse_pcr_values,
    pcr_digest,
)
from identity.policy import PolicyDocument, evaluate_pcrs, learn, parse_policy

VALUES = {"sha256": {i: hashlib.sha256(bytes([i])).digest() for i in range(8)}}


def test_selection_roundtrips_through_tpml() -> None:
    sel = PcrSelection.of({"sha256": [7, 0, 3, 16], "sha1": [23]})
    assert PcrSelection.from_tpml(sel.to_tpml()) == sel
    assert sel.as_dict() == {"sha256": [0, 3, 7, 16], "sha1": [23]}


def test_selection_covers_names_what_is_missing() -> None:
    have = PcrSelection.of({"sha256": range(7)})
    assert have.covers(PcrSelection.of({"sha256": range(8), "sha1": [0]})) == [
        "sha256:7", "sha1:0"]


def test_values_must_be_exactly_the_selection() -> None:
    sel = PcrSelection.of({"sha256": range(8)})
    assert check_values_match_selection(sel, VALUES) == []
    extra = {"sha256": {**VALUES["sha256"], 9: b"\x00" * 32}}
    assert check_values_match_selection(sel, extra) == ["sha256: unselected PCRs [9]"]
    short = {"sha256": {**VALUES["sha256"], 0: b"\x00" * 20}}
    assert check_values_match_selection(sel, short) == ["sha256:0 has 20 bytes"]


def test_pcr_digest_uses_the_given_hash_and_order() -> None:
    sel = PcrSelection.of({"sha256": [1, 0]})
    assert pcr_digest(sel, VALUES, "sha384") == hashlib.sha384(
        VALUES["sha256"][0] + VALUES["sha256"][1]).digest()


def test_wire_values_roundtrip_and_bad_ones_are_malformed() -> None:
    assert parse_pcr_values(format_pcr_values(VALUES)) == VALUES
    for bad in ({"md5": {"0": "00"}}, {"sha256": {"x": "00"}}, {"sha256": {"0": "zz"}},
                {"sha256": {"0": "00"}}, {"sha256": {"24": "00" * 32}}):
        with pytest.raises(MalformedInput):
            parse_pcr_values(bad)


def test_policy_without_reference_refuses() -> None:
    with pytest.raises(PolicyNoReference):
        evaluate_pcrs(PolicyDocument(), VALUES)


def test_learned_policy_passes_the_same_boot_and_names_differing_pcrs() -> None:
    policy = learn(PolicyDocument(), VALUES)
    evaluate_pcrs(policy, VALUES)
    changed = {"sha256": {**VALUES["sha256"], 4: b"\x01" * 32, 7: b"\x02" * 32}}
    with pytest.raises(PolicyPcrMismatch, match="PCR 4, 7 differ"):
        evaluate_pcrs(policy, changed)


def test_policy_document_is_validated() -> None:
    for bad in ({"pcr_bank": "md5"}, {"pcrs": []}, {"golden": {"9": "00" * 32}},
                {"golden": {"0": "00"}}, {"unknown": 1}, {"cert_ttl_seconds": 10}):
        with pytest.raises(MalformedInput):
            parse_policy(bad)
    stored = learn(PolicyDocument(secrets=("a",)), VALUES).model_dump(mode="json")
    assert parse_policy(stored).golden[0] == VALUES["sha256"][0].hex()
