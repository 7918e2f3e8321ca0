"""A PostgreSQL restart (every connection of the pool dropped under it): the pool is not
pinged before each use, so a request on a dead connection fails once with a clean 503,
the whole pool is discarded, and the next request works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.attest import attest_once
from agent.client import AttestorError
from agent.sim.swtpm import Manufacturer
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.pg, pytest.mark.e2e, pytest.mark.tpm]


@pytest.fixture
def pg_attestor(tmp_path: Path, manufacturer: Manufacturer,
                pg_url: str) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], database_url=pg_url).start()
    try:
        yield live
    finally:
        live.stop()


def _drop_connections(pg_url: str) -> int:
    name = pg_url.rsplit("/", 1)[-1]
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name}).all())
    finally:
        admin.dispose()


def test_dropped_connections_cost_at_most_one_request(pg_attestor: LiveAttestor,
                                                      device: Device, pg_url: str) -> None:
    config = enroll_and_learn(pg_attestor, device)
    with pg_attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
        assert _drop_connections(pg_url) >= 1
        failures = []
        for _ in range(3):
            try:
                attest_once(config, device.tpm, client, now())
            except AttestorError as exc:
                failures.append(exc)
        assert len(failures) <= 1, failures
        assert all(f.status == 503 and f.code == "backend.database_unavailable" for f in failures)
