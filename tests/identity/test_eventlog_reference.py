"""Differential test against the reference tool: tpm2_eventlog (tpm2-tools) replays the
corpus logs to the same PCR values we do, and on a log whose events lack a bank's
digest it extends what is there, where we leave that PCR without a value."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from identity.eventlog.replay import replay
from identity.eventlog.tcg import parse_event_log
from tests.identity.test_quirks import partial_bank_log
from tests.tools import require_tool

_PCRS = re.compile(r"^  (\w+):\n((?:    \d+ +: 0x[0-9a-f]+\n)+)", re.MULTILINE)


# Where tpm2-tools 5.4 (Debian 12) is wrong, the real TPM's values in the manifest show
# it: it crashes on the legacy option-ROM log, and it starts PCR0 at 0 in glinux-alex,
# whose StartupLocality event says 3 (the TPM's PCR0 agrees with our replay).
TOOL_CRASHES = {"option_rom_eventlog"}
TOOL_WRONG = {("glinux-alex.bin", "sha1", 0), ("glinux-alex.bin", "sha256", 0)}


def reference_pcrs(path: Path) -> dict[str, dict[int, bytes]] | None:
    """The ``pcrs:`` section of ``tpm2_eventlog FILE`` (None: the tool failed)."""
    tool = require_tool("tpm2_eventlog", "apt-get install tpm2-tools (scripts/sysdeps.sh)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False,
                         timeout=60)
    if run.returncode != 0:
        return None
    section = run.stdout[run.stdout.rindex("\npcrs:\n") + 1:]
    return {bank: {int(i): bytes.fromhex(v) for i, v in
                   re.findall(r"(\d+) +: 0x([0-9a-f]+)", body)}
            for bank, body in _PCRS.findall(section)}


@pytest.mark.corpus
def test_corpus_logs_replay_as_tpm2_eventlog_does(corpus: Path) -> None:
    compared, wrong = 0, set()
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((corpus / folder / "manifest.json").read_text())
        for name, meta in manifest.items():
            path = corpus / folder / name
            if name == "short_no_action_eventlog":
                continue  # refused by both (its own test)
            ours = replay(parse_event_log(path.read_bytes())).values
            theirs = reference_pcrs(path)
            if theirs is None:
                assert name in TOOL_CRASHES
                continue
            assert set(theirs) == set(ours), name
            for bank, values in theirs.items():
                for index, value in values.items():
                    if index not in ours[bank]:
                        continue  # they also list PCR0 at its reset value
                    compared += 1
                    if ours[bank][index] != value:
                        wrong.add((name, bank, index))
                        tpm = meta["expected_pcrs"][bank][str(index)]
                        assert ours[bank][index].hex() == tpm, f"{name} {bank}:{index}"
    assert wrong == TOOL_WRONG and compared >= 150


def test_partial_bank_log_against_tpm2_eventlog(tmp_path: Path) -> None:
    """Both accept the log and agree on every complete bank and PCR; for the PCR an
    event lacks the sha256 digest of, tpm2_eventlog prints a value that is not what the
    TPM holds, and we print none (and refuse a quote of it)."""
    data, tpm = partial_bank_log()
    (tmp_path / "log.bin").write_bytes(data)
    theirs = reference_pcrs(tmp_path / "log.bin")
    assert theirs is not None
    ours = replay(parse_event_log(data))
    assert theirs["sha1"] == ours.values["sha1"] == tpm["sha1"]
    assert theirs["sha256"][0] == ours.values["sha256"][0] == tpm["sha256"][0]
    assert theirs["sha256"][4] != tpm["sha256"][4] and 4 not in ours.values["sha256"]
    assert ours.incomplete == {"sha256": frozenset({4})}
