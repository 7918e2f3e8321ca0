"""The Keylime comparison bench ends cleanly, saying why, when no Keylime tree is given,
and writes the PCR file in the layout tpm2-tools (and so Keylime) reads. No test here
needs Keylime."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bench import peer_keylime


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
