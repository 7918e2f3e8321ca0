"""Which IMA list the agent sends: the quoted bank's per-bank list when the kernel keeps
one, else the SHA-1 list (or the bank a configured list's name says)."""

from __future__ import annotations

from pathlib import Path

from agent.attest import ima_list
from identity.pcr import PcrSelection


def test_the_quoted_banks_list_is_chosen(tmp_path: Path) -> None:
    sha1 = tmp_path / "binary_runtime_measurements"
    sha1.write_bytes(b"")
    quoted = PcrSelection.of({"sha256": [0, 10]})
    assert ima_list(sha1, quoted) == (sha1, "sha1")  # an older kernel: no per-bank list
    per_bank = tmp_path / "binary_runtime_measurements_sha256"
    per_bank.write_bytes(b"")
    assert ima_list(sha1, quoted) == (per_bank, "sha256")
    assert ima_list(sha1, PcrSelection.of({"sha384": [10]})) == (sha1, "sha1")
    assert ima_list(per_bank, PcrSelection.of({"sha1": [10]})) == (per_bank, "sha256")
    copy = tmp_path / "ima.bin"
    assert ima_list(copy, quoted) == (copy, "sha1")
    assert ima_list(None, quoted) == (None, "sha1")
