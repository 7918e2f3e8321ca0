"""The Keylime comparison bench ends cleanly, saying why, when no Keylime tree is given,
and writes the PCR file in the layout tpm2-tools (and so Keylime) reads. No test here
needs Keylime."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench import peer_keylime

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [[], ["--keylime-src", "/nonexistent/keylime"]])
def test_missing_source_exits_with_a_message(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        peer_keylime.main(argv)
    assert "no Keylime source tree" in str(exc.value.code)


def test_a_tree_without_keylime_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keylime").mkdir()
    with pytest.raises(SystemExit) as exc:
        peer_keylime.main(["--keylime-src", str(tmp_path)])
    assert str(tmp_path) in str(exc.value.code)


def test_pcr_file_layout() -> None:
    values = {"sha256": {i: bytes([i]) * 32 for i in range(8)}}
    blob = peer_keylime.tpm2_tools_pcrs(values)
    # TPML_PCR_SELECTION (count + 16 padded 8-byte selections), then one TPML_DIGEST
    # (count + 8 TPM2B_DIGEST of 2 + 64 bytes).
    assert len(blob) == 4 + 16 * 8 + 4 + 4 + 8 * 66
    assert struct.unpack_from("<IHB3s", blob) == (1, 0x000B, 3, b"\xff\x00\x00")
    assert struct.unpack_from("<II", blob, 132) == (1, 8)
    assert struct.unpack_from("<H32s", blob, 140 + 66 * 3) == (32, bytes([3]) * 32)


def test_a_failing_import_ends_the_run_with_the_cause(tmp_path: Path) -> None:
    # In a child process: loading Keylime changes sys.path and the logging level.
    (tmp_path / "keylime" / "tpm").mkdir(parents=True)
    (tmp_path / "keylime" / "__init__.py").write_text("")
    (tmp_path / "keylime" / "tpm" / "__init__.py").write_text("")
    (tmp_path / "keylime" / "tpm" / "tpm_util.py").write_text(
        "raise ImportError('No module named lark')\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench.peer_keylime", "--keylime-src", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "importing Keylime" in done.stderr and "No module named lark" in done.stderr
