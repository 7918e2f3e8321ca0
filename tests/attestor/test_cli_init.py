"""`attestor init`: refuses to overwrite, `--exist-ok` for a container's init step, the
settings file named by EDGEPROOF_CONFIG (the Helm chart's layout), and the database choice
recorded for later commands (which never create a database themselves)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from typer.testing import CliRunner

from attestor.cli import app
from attestor.settings import load_settings


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


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGEPROOF_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_init_records_sqlite_inside_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert CliRunner().invoke(app, ["init", "--dev", "-d", str(data)]).exit_code == 0
    recorded = tomllib.loads((data / "attestor.toml").read_text())
    assert recorded["database_url"] == "sqlite:///attestor.db"
    moved = tmp_path / "moved"
    data.rename(moved)  # a restored or moved directory keeps its own database
    assert load_settings(moved).db_url == f"sqlite:///{moved / 'attestor.db'}"
    assert CliRunner().invoke(app, ["device", "list", "-d", str(moved)]).exit_code == 0


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("command", [["device", "list"], ["db", "upgrade"], ["serve"],
                                     ["policy", "show"], ["init", "--exist-ok"]])
def test_no_command_but_init_creates_a_database(tmp_path: Path, command: list[str]) -> None:
    """The database file gone (a wrong volume, a deleted file): every command says so in
    one line, and none makes an empty database in its place."""
    data = tmp_path / "data"
    assert CliRunner().invoke(app, ["init", "--dev", "-d", str(data)]).exit_code == 0
    db = data / "attestor.db"
    for name in ("attestor.db", "attestor.db-wal", "attestor.db-shm"):
        (data / name).unlink(missing_ok=True)
    result = CliRunner().invoke(app, [*command, "--dev", "-d", str(data)])
    if command[0] == "init":  # --exist-ok leaves an existing attestor as it is
        assert result.exit_code == 0 and not db.exists()
        result = CliRunner().invoke(app, ["db", "upgrade", "--dev", "-d", str(data)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1
    assert lines == [f"error: backend.database_missing: the SQLite database {db} does not "
                     "exist: run `attestor init` to create one, or set EDGEPROOF_DATABASE_URL"]
    assert not db.exists()
    assert sorted(p.name for p in data.iterdir()) == ["attestor.toml", "ca", "secrets.key",
                                                     "trust"]


@pytest.mark.usefixtures("clean_env")
def test_init_keeps_the_operators_settings_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "attestor.toml").write_text('port = 9000\n[issuance]\ncert_ttl_seconds = 120\n')
    assert CliRunner().invoke(app, ["init", "--dev", "-d", str(data)]).exit_code == 0
    settings = load_settings(data)
    assert (settings.port, settings.issuance.cert_ttl_seconds, settings.database_url) == (
        9000, 120, "sqlite:///attestor.db")


@pytest.mark.pg
@pytest.mark.usefixtures("clean_env")
def test_later_commands_use_the_postgresql_recorded_at_init(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """init with EDGEPROOF_DATABASE_URL (with a password, which PostgreSQL's trust auth in
    the test server ignores): the URL is recorded without it, and a later command without
    the variable uses PostgreSQL, not a new SQLite file."""
    data = tmp_path / "data"
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@", 1)
    assert with_password != pg_url
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL", with_password)
    result = CliRunner().invoke(app, ["init", "--dev", "-d", str(data)])
    assert result.exit_code == 0, result.output
    assert "password is not recorded" in result.output and "s3cret" not in result.output
    monkeypatch.delenv("EDGEPROOF_DATABASE_URL")
    text = (data / "attestor.toml").read_text()
    assert "s3cret" not in text
    assert tomllib.loads(text)["database_url"] == pg_url
    created = CliRunner().invoke(app, ["apikey", "create", "--name", "station",
                                       "--role", "enroller", "--dev", "-d", str(data)])
    assert created.exit_code == 0, created.output
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:  # the key landed in PostgreSQL
            assert conn.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one() == 1
    finally:
        engine.dispose()
    assert not (data / "attestor.db").exists()


@pytest.mark.usefixtures("clean_env")
def test_db_upgrade_creates_sqlite_only_when_asked(tmp_path: Path) -> None:
    """The chart's SQLite pod with its CA from a Secret has no init step: it asks
    `db upgrade --create` for the file explicitly."""
    data = tmp_path / "data"
    data.mkdir()
    refused = CliRunner().invoke(app, ["db", "upgrade", "-d", str(data)])
    assert refused.exit_code == 1 and "backend.database_missing" in refused.output
    assert not (data / "attestor.db").exists()
    made = CliRunner().invoke(app, ["db", "upgrade", "--create", "-d", str(data)])
    assert made.exit_code == 0 and "database at revision" in made.output
    assert (data / "attestor.db").is_file()
