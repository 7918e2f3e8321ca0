"""Database failures (a corrupted SQLite file, PostgreSQL down or without the database, an
unsupported URL) end in one line with the reason code on the command line, and in a 503
problem with the code from the API (the driver's message only in the server log)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from attestor.app import create_app
from attestor.auth.tokens import local_issuer, mint
from attestor.cli import app
from attestor.db.engine import make_engine
from attestor.services.context import Services, build_services
from attestor.settings import load_settings
from attestor.setup import initialise
from identity.errors import DatabaseUrlUnsupported

GARBAGE = b"this is not an SQLite database, whatever its name says\n" * 200


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def _corrupt(db: Path) -> None:
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    db.write_bytes(GARBAGE)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGEPROOF_"):
            monkeypatch.delenv(name)


def _cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, sa.exc.SQLAlchemyError), result.exception
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture
def initialised(tmp_path: Path, clean_env: None) -> Path:
    data = tmp_path / "data"
    assert CliRunner().invoke(app, ["init", "--dev", "-d", str(data)]).exit_code == 0
    return data


@pytest.mark.parametrize("command", [["device", "list"], ["device", "show", "d1"],
                                     ["policy", "show"], ["db", "upgrade"],
                                     ["audit", "verify"], ["serve"]])
def test_corrupted_sqlite_file_is_one_line_in_every_command(initialised: Path,
                                                            command: list[str]) -> None:
    _corrupt(initialised / "attestor.db")
    code, lines = _cli(*command, "--dev", "-d", str(initialised))
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("error: backend.database_corrupt: "), lines
    assert str(initialised / "attestor.db") in lines[0]


def test_the_installed_command_prints_one_line_on_stderr(initialised: Path) -> None:
    """`attestor` as installed (attestor.cli:main), not through the test runner."""
    _corrupt(initialised / "attestor.db")
    proc = subprocess.run([sys.executable, "-c", "from attestor.cli import main; main()",
                           "device", "list", "-d", str(initialised)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: backend.database_corrupt: the SQLite database {initialised / 'attestor.db'} "
        "is damaged or not a SQLite database (file is not a database); restore it from a "
        "backup"]


def test_postgresql_down_is_one_line(tmp_path: Path, clean_env: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL",
                       f"postgresql://edgeproof:hunter2-secret@127.0.0.1:{port}/edgeproof")
    code, lines = _cli("device", "list", "-d", str(tmp_path))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: backend.database_unavailable: cannot use the database "
                               f"postgresql+psycopg://edgeproof:***@127.0.0.1:{port}/edgeproof")
    assert "Connection refused" in lines[0] and "hunter2" not in lines[0]


def test_init_on_a_database_that_is_down_leaves_nothing_behind(
        tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin-host step of docs/deploy.md with PostgreSQL not reachable yet: one line,
    and no half-made data directory that a rerun would call "already an attestor"; a
    directory that was there already (a volume) keeps exactly what it held."""
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL",
                       f"postgresql://edgeproof@127.0.0.1:{_closed_port()}/edgeproof")
    new = tmp_path / "edgeproof-admin"
    code, lines = _cli("init", "--dev", "-d", str(new), "--trust-domain", "devices.example.com")
    assert code == 1 and len(lines) == 1 and "backend.database_unavailable" in lines[0], lines
    assert not new.exists()
    volume = tmp_path / "volume"
    (volume / "trust" / "ek-roots").mkdir(parents=True)
    (volume / "attestor.toml").write_text('trust_domain = "devices.example.com"\n')
    code, lines = _cli("init", "--dev", "-d", str(volume))
    assert code == 1 and "backend.database_unavailable" in lines[0], lines
    assert sorted(p.relative_to(volume).as_posix() for p in volume.rglob("*")) == [
        "attestor.toml", "trust", "trust/ek-roots"]
    assert (volume / "attestor.toml").read_text() == 'trust_domain = "devices.example.com"\n'


@pytest.mark.pg
def test_postgresql_database_missing_is_one_line(tmp_path: Path, clean_env: None,
                                                 pg_server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_server.rsplit("/", 1)[0] + f"/edgeproof_absent_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL", url)
    for command in (["device", "list"], ["db", "upgrade"]):
        code, lines = _cli(*command, "-d", str(tmp_path))
        assert code == 1 and len(lines) == 1, lines
        assert lines[0].startswith("error: backend.database_missing: ")
        assert "does not exist on the server" in lines[0]


@pytest.mark.parametrize("url", ["mysql://edgeproof@db.example/edgeproof",
                                 "postgresql+psycopg2://edgeproof@db.example/edgeproof",
                                 "not a url"])
def test_unsupported_url_is_one_line(tmp_path: Path, initialised: Path, url: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPROOF_DATABASE_URL", url)
    for command, data in ((["device", "list"], initialised), (["serve"], initialised),
                          (["init"], tmp_path / "new")):
        code, lines = _cli(*command, "--dev", "-d", str(data))
        assert code == 1 and len(lines) == 1, lines
        assert lines[0].startswith("error: backend.database_url_unsupported: "), lines
        assert "use sqlite:///<path> or postgresql://" in lines[0]
    assert not (tmp_path / "new").exists()  # init refused before creating anything


def test_the_service_refuses_to_start_on_an_unsupported_url(initialised: Path) -> None:
    settings = load_settings(initialised, dev=True, database_url="mysql://a@b/c")
    with pytest.raises(DatabaseUrlUnsupported, match="mysql://a@b/c is not supported"):
        build_services(settings)


# --- the API ---------------------------------------------------------------------------

@pytest.fixture
def services(tmp_path: Path, clean_env: None, request: pytest.FixtureRequest
             ) -> Iterator[Services]:
    url = request.getfixturevalue("pg_url") if getattr(request, "param", "") == "pg" else None
    settings = load_settings(tmp_path / "data", dev=True, database_url=url)
    initialise(settings, dt.datetime.now(dt.UTC))
    svc = build_services(settings)
    try:
        yield svc
    finally:
        svc.engine.dispose()


def _admin(svc: Services) -> dict[str, str]:
    token = mint(svc.signer, local_issuer(svc.settings.trust_domain), role="admin",
                 subject="ops", ttl=dt.timedelta(hours=1), now=dt.datetime.now(dt.UTC))
    return {"Authorization": f"Bearer {token}"}


def _refused(svc: Services, code: str, caplog: pytest.LogCaptureFixture,
             cause: str) -> None:
    async def get() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(svc, background=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            return (await client.get("/v1/devices", headers=_admin(svc)),
                    await client.get("/readyz"))

    with caplog.at_level(logging.ERROR, logger="attestor.problems"):
        response, ready = asyncio.run(get())
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["status"]) == (code, 503)
    assert body["type"].endswith("/" + code)
    assert cause not in response.text  # the driver's message is for the log only
    assert any(code in r.getMessage() and cause in r.getMessage() for r in caplog.records)
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert ready.json()["database"] == f"unavailable: {code}"


def test_api_corrupted_sqlite_is_a_503_problem(services: Services,
                                               caplog: pytest.LogCaptureFixture) -> None:
    services.engine.dispose()  # the next connection reads the file anew
    _corrupt(services.settings.data_dir / "attestor.db")
    _refused(services, "backend.database_corrupt", caplog, "file is not a database")


def test_api_postgresql_down_is_a_503_problem(services: Services,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # The server the engine points at stops listening (as a stopped PostgreSQL does).
    services.engine = make_engine(f"postgresql://edgeproof@127.0.0.1:{_closed_port()}/gone")
    _refused(services, "backend.database_unavailable", caplog, "Connection refused")


@pytest.mark.pg
@pytest.mark.parametrize("services", ["pg"], indirect=True)
def test_api_postgresql_database_dropped_is_a_503_problem(
        services: Services, pg_server: str, caplog: pytest.LogCaptureFixture) -> None:
    name = services.engine.url.database
    services.engine.dispose()
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    _refused(services, "backend.database_missing", caplog, "does not exist")
