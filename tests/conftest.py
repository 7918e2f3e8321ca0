"""Shared fixtures: the external corpus, PostgreSQL, swtpm devices, a live attestor.

- ``corpus``: ../shared/corpus or $EDGEPROOF_CORPUS; skipped when absent.
- ``pg_url``: a fresh database on 127.0.0.1:5432. Under CI=true it must work
  (the test fails rather than skips).
- ``manufacturer`` / ``device``: swtpm TPMs with EK certificates from a test CA.
- ``attestor``: the real FastAPI app under uvicorn on a free port (real HTTP);
  ``https_attestor`` the same over HTTPS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import agent  # noqa: F401 - sets TSS2_LOG before tpm2-pytss loads
from agent.sim.swtpm import Manufacturer
from tests.harness import Device, LiveAttestor
from tests.vault import VaultUnderTest

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("EDGEPROOF_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session", autouse=True)
def json_logs() -> None:
    """Every log line of the session is rendered as the attestor renders it in production
    (JSON) into the leak watch's tap."""
    from attestor.observability import configure_logging
    from tests.leaks import LOGS

    configure_logging(stream=LOGS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Vault the contract suite ran against (shown with -q too)."""
    from tests.vault import real

    found = real.binary()
    terminalreporter.write_line(
        f"vault contract suite: against a real dev server ({found})" if found else
        "vault contract suite: against the in-process HTTP double tests/vault/double.py "
        "(no vault or bao binary on PATH)")


@pytest.fixture
def vault() -> Iterator[VaultUnderTest]:
    """A real Vault/OpenBao dev server when a binary is on PATH, else the HTTP double."""
    from tests.vault import real
    from tests.vault.double import VaultHttpDouble

    found = real.binary()
    server: VaultUnderTest = real.VaultDevServer(found) if found else VaultHttpDouble()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def corpus() -> Path:
    candidates = [os.environ.get("EDGEPROOF_CORPUS"), str(ROOT.parent / "shared" / "corpus")]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip("external corpus not found (../shared/corpus or $EDGEPROOF_CORPUS)")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable PostgreSQL; fails under CI, skips elsewhere."""
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"edgeproof_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def manufacturer(tmp_path_factory: pytest.TempPathFactory) -> Manufacturer:
    maker = Manufacturer(tmp_path_factory.mktemp("manufacturer"))
    maker.ensure_config()
    return maker


@pytest.fixture(scope="session")
def rogue_manufacturer(tmp_path_factory: pytest.TempPathFactory) -> Manufacturer:
    """A TPM 'vendor' the attestor does not trust."""
    maker = Manufacturer(tmp_path_factory.mktemp("rogue-manufacturer"))
    maker.ensure_config()
    return maker


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set ``BOTH_DATABASES = True`` run every test using ``attestor`` on
    SQLite and on PostgreSQL (marker ``pg``: required under CI=true)."""
    if "attestor" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_DATABASES",
                                                       False):
        metafunc.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                                 marks=pytest.mark.pg)],
                             indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def attestor(tmp_path: Path, manufacturer: Manufacturer, database: str,
             request: pytest.FixtureRequest) -> Iterator[LiveAttestor]:
    """A live attestor; a module's ``ATTESTOR_SETTINGS`` dict overrides settings."""
    url = request.getfixturevalue("pg_url") if database == "postgresql" else None
    overrides = getattr(request.module, "ATTESTOR_SETTINGS", {})
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], database_url=url,
                        **overrides).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def https_attestor(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[LiveAttestor]:
    """The attestor over HTTPS with a certificate from its own CA (``ca_bundle``: its root)."""
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], https=True).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def device(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[Device]:
    dev = Device(manufacturer, tmp_path / "device")
    try:
        yield dev
    finally:
        dev.close()


@pytest.fixture
def other_device(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[Device]:
    dev = Device(manufacturer, tmp_path / "other-device", serial="SN-2")
    try:
        yield dev
    finally:
        dev.close()
