"""Database fixtures: every storage test runs on SQLite and on PostgreSQL; a module's
own initialised attestor (SQLite, development mode) for tests of the API alone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from attestor.db.engine import make_engine, upgrade
from attestor.services.context import Services, build_services
from attestor.settings import load_settings
from attestor.setup import initialise


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'attestor.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url, create=True)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(autouse=True)
def no_operator_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's environment nor their CLI config file takes part in a
    test of the attestor (docs/cli.md: where the server and token come from)."""
    for name in ("EDGEPROOF_SERVER", "EDGEPROOF_TOKEN", "EDGEPROOF_PROFILE",
                 "EDGEPROOF_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGEPROOF_CLI_CONFIG", str(tmp_path / "no-such-cli.toml"))


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """An initialised attestor's services, one per test module."""
    settings = load_settings(tmp_path_factory.mktemp("attestor"), dev=True)
    initialise(settings, dt.datetime.now(dt.UTC))
    svc = build_services(settings)
    try:
        yield svc
    finally:
        svc.engine.dispose()
