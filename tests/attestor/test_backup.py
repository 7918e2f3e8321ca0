"""`attestor backup create|verify|restore` on a real data directory (SQLite)."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attestor.cli import app

VALUE = "update-decryption-key-0123456789"


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())  # rich wraps long paths at any column


def seeded(tmp_path: Path) -> list[str]:
    d = ["-d", str(tmp_path / "data"), "--dev"]
    run("init", *d)
    run("secret", "put", "update/key", "--value", VALUE, *d)
    run("audit", "checkpoint", *d)
    return d


def test_backup_restores_keys_secrets_and_an_intact_audit_chain(tmp_path: Path) -> None:
    d = seeded(tmp_path)
    archive = tmp_path / "backup.tar.gz"
    assert "files (0600)" in run("backup", "create", "--out", str(archive), *d)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert "intact" in run("backup", "verify", str(archive))
    restored = tmp_path / "restored"
    run("backup", "restore", str(archive), "-d", str(restored))
    r = ["-d", str(restored), "--dev"]
    assert run("secret", "get", "update/key", *r) == VALUE  # secrets.key came back
    assert "intact" in run("audit", "verify", *r)
    assert "backup.create" in (restored / "attestor.db").read_bytes().decode("latin-1")
    assert stat.S_IMODE((restored / "ca" / "issuing.key").stat().st_mode) == 0o600
    assert (restored / "ca" / "root.pem").read_bytes() == \
        (tmp_path / "data" / "ca" / "root.pem").read_bytes()


def test_restore_refuses_an_existing_attestor_and_an_existing_archive(tmp_path: Path) -> None:
    d = seeded(tmp_path)
    archive = tmp_path / "backup.tar.gz"
    run("backup", "create", "--out", str(archive), *d)
    assert "exists" in run("backup", "create", "--out", str(archive), *d, code=1)
    assert "already holds an attestor" in run("backup", "restore", str(archive), *d[:2],
                                              code=1)


def _rewrite(archive: Path, target: Path, name: str, data: bytes) -> None:
    """Copy ``archive`` to ``target`` with member ``name`` replaced (a tampered backup)."""
    with tarfile.open(archive, "r:gz") as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, blob in members:
            blob = data if member.name == name else blob
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    target.write_bytes(gzip.compress(buffer.getvalue()))


def test_a_changed_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    d = seeded(tmp_path)
    archive = tmp_path / "backup.tar.gz"
    run("backup", "create", "--out", str(archive), *d)
    forged = tmp_path / "forged.tar.gz"
    _rewrite(archive, forged, "ca/root.pem", b"-----BEGIN CERTIFICATE-----\nforged\n")
    assert "ca/root.pem does not match" in run("backup", "verify", str(forged), code=1)
    assert "does not match" in run("backup", "restore", str(forged), "-d",
                                   str(tmp_path / "r"), code=1)
    assert not (tmp_path / "r").exists()


@pytest.mark.pg
def test_a_postgresql_attestor_backs_up_its_files_and_names_pg_dump(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL", pg_url)
    d = ["-d", str(tmp_path / "data"), "--dev"]
    run("init", *d)
    archive = tmp_path / "backup.tar.gz"
    said = run("backup", "create", "--out", str(archive), *d)
    assert "back it up with pg_dump" in said
    with tarfile.open(archive, "r:gz") as tar:
        names = set(tar.getnames())
    assert "attestor.db" not in names and {"ca/issuing.key", "secrets.key"} <= names


def test_backup_takes_the_settings_file_edgeproof_config_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings mounted outside the data directory (the Helm chart's ConfigMap) are backed
    up too, and restored as the data directory's attestor.toml."""
    d = seeded(tmp_path)
    mounted = tmp_path / "configmap" / "attestor.toml"
    mounted.parent.mkdir()
    mounted.write_text('trust_domain = "from.configmap"\n')
    monkeypatch.setenv("EDGEPROOF_CONFIG", str(mounted))
    archive = tmp_path / "backup.tar.gz"
    run("backup", "create", "--out", str(archive), *d)
    monkeypatch.delenv("EDGEPROOF_CONFIG")
    run("backup", "restore", str(archive), "-d", str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "attestor.toml").read_text() == mounted.read_text()
