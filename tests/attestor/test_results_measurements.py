"""The measurements summary of a result token is what it was before issue 15 (one hash
over the joined PCR records instead of one update per PCR), on real machines' PCRs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from attestor.services.results import measurements
from identity.appraisal import Verdict
from identity.pcr import format_pcr_values, parse_pcr_values
from identity.tpm.quote import ClockState, QuoteResult


def old_measurements(result: Verdict, event_log: bytes | None) -> dict[str, Any]:
    pcr_digest = hashlib.sha256()
    for bank in sorted(result.pcr_values):
        for index in sorted(result.pcr_values[bank]):
            pcr_digest.update(f"{bank}:{index}:".encode() + result.pcr_values[bank][index])
    out: dict[str, Any] = {"pcrs": {bank: sorted(values) for bank, values
                                    in result.pcr_values.items()},
                           "pcr-digest": pcr_digest.hexdigest()}
    if event_log is not None:
        out["event-log-sha256"] = hashlib.sha256(event_log).hexdigest()
    return out


def _verdict(pcr_values: dict[str, dict[int, bytes]]) -> Verdict:
    quote = QuoteResult(True, None, ClockState(1, 0, 0, True), 0, False)
    return Verdict(checks=(), reasons=(), warnings=(), quote=quote, pcr_values=pcr_values,
                   appraised_at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))


def test_measurements_of_real_pcrs(corpus: Path) -> None:
    seen = 0
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((corpus / folder / "manifest.json").read_text())
        for name, entry in manifest.items():
            wire = entry.get("expected_pcrs") or {}
            if not wire:
                continue
            values = parse_pcr_values(wire)
            assert parse_pcr_values(format_pcr_values(values)) == values
            log = (corpus / folder / name).read_bytes()
            for event_log in (log, None):
                verdict = _verdict(values)
                assert measurements(verdict, event_log) == old_measurements(verdict, event_log)
            seen += 1
    assert seen >= 9


@pytest.mark.parametrize("values", [{}, {"sha256": {}}, {"sha256": {23: b"\0" * 32, 0: b"\1" * 32},
                                                        "sha1": {7: b"\2" * 20}}])
def test_measurements_edge_shapes(values: dict[str, dict[int, bytes]]) -> None:
    verdict = _verdict(values)
    assert measurements(verdict, b"") == old_measurements(verdict, b"")
