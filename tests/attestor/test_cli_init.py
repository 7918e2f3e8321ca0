"""`attestor init`: refuses to overwrite, `--exist-ok` for a container's init step, and the
settings file named by EDGEPROOF_CONFIG (the Helm chart's layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from attestor.cli import app


def test_second_init_refuses_and_exist_ok_leaves_the_attestor(tmp_path: Path) -> None:
    d = ["-d", str(tmp_path / "data"), "--dev"]
    assert CliRunner().invoke(app, ["init", *d]).exit_code == 0
    root = (tmp_path / "data" / "ca" / "root.pem").read_bytes()
    again = CliRunner().invoke(app, ["init", *d])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    kept = CliRunner().invoke(app, ["init", "--exist-ok", *d])
    assert kept.exit_code == 0 and "left as it is" in kept.output
    assert (tmp_path / "data" / "ca" / "root.pem").read_bytes() == root


def test_init_with_a_mounted_settings_file(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's SQLite init step: settings in a read-only ConfigMap mount, the data
    directory a volume; init reads the mount and writes no attestor.toml of its own."""
    mounted = tmp_path / "config" / "attestor.toml"
    mounted.parent.mkdir()
    mounted.write_text('trust_domain = "chart.example"\n[ca]\nroot_days = 400\n')
    monkeypatch.setenv("EDGEPROOF_CONFIG", str(mounted))
    result = CliRunner().invoke(app, ["init", "--exist-ok", "--dev", "-d", str(tmp_path / "d"),
                                      "--trust-domain", "chart.example"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "d" / "attestor.toml").exists()
    root = x509.load_pem_x509_certificate((tmp_path / "d" / "ca" / "root.pem").read_bytes())
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days == 400  # from the mount
    assert mounted.read_text().startswith('trust_domain = "chart.example"')
