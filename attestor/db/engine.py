"""Engine creation and Alembic migrations, for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
STATEMENT_TIMEOUT_MS = 15_000
LOCK_TIMEOUT_MS = 10_000


def make_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # Bounded waits: a stuck query or lock fails the request (503) instead of hanging it.
    connect_args = {"connect_timeout": 10,
                    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
                               f"-c lock_timeout={LOCK_TIMEOUT_MS}"}
    # No ping before each checkout (a round trip per transaction): a connection lost to
    # a restart fails its request once (503), and that invalidates the whole pool.
    return sa.create_engine(url, pool_pre_ping=False, pool_recycle=1800, pool_timeout=10,
                            connect_args=connect_args, **kwargs)


def _config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    command.upgrade(_config(engine), revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(_config(sa.create_engine("sqlite://")))
    return script.get_current_head()


def is_current(engine: sa.Engine) -> bool:
    return current_revision(engine) == head_revision()
