"""Engine creation and Alembic migrations, for SQLite (WAL) and PostgreSQL.

Only ``attestor init`` creates a database (``create=True``): every other engine opens a
SQLite file read-write without creating it, so a missing file is an error
(``backend.database_missing``), never a silently empty database. Driver errors become
the typed errors of :mod:`identity.errors` here (:func:`database_error`), so the CLI
and the API both say what is wrong with the database in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from identity.errors import (
    DatabaseCorrupt,
    DatabaseMissing,
    DatabaseUnavailable,
    DatabaseUrlUnsupported,
)

MIGRATIONS = Path(__file__).with_name("migrations")
STATEMENT_TIMEOUT_MS = 15_000
LOCK_TIMEOUT_MS = 10_000
SUPPORTED = "sqlite:///<path> or postgresql://<user>@<host>/<database>"
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}


def parse_url(url: str | sa.URL) -> sa.URL:
    """The URL, PostgreSQL on psycopg 3; anything but SQLite or PostgreSQL is refused."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        scheme = str(url).split(":", 1)[0] if ":" in str(url) else "none"
        raise DatabaseUrlUnsupported(f"the database URL cannot be parsed (scheme {scheme!r}); "
                                     f"use {SUPPORTED}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" and "+" not in parsed.drivername:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_driver_name() not in _DRIVERS.get(backend, ()):
        raise DatabaseUrlUnsupported(f"the database URL {shown(parsed)} is not supported "
                                     f"(only SQLite and PostgreSQL on psycopg 3): use "
                                     f"{SUPPORTED}")
    return parsed


def shown(url: str | sa.URL) -> str:
    """The URL as it may be printed or logged: never its password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The SQLite file a URL names (plain or ``file:`` URI form); None for PostgreSQL or
    an in-memory database."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    name = str(parsed.database)
    if name.startswith("file:"):
        name = unquote(name.removeprefix("file:"))
        return None if name in ("", ":memory:") else Path(name)
    return Path(name)


def make_engine(url: str | sa.URL, *, create: bool = False, **kwargs: Any) -> sa.Engine:
    """An engine; SQLite gets WAL, a busy timeout and foreign keys on every connection.

    ``create``: a missing SQLite file is created (``attestor init`` only); otherwise it
    is opened read-write only (SQLite URI ``mode=rw``), and connecting fails."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and not str(parsed.database).startswith("file:"):
            # A URI keeps SQLite from creating the file on a connection's first open.
            uri = "file:" + quote(str(path.absolute()))
            parsed = parsed.set(database=uri, query={
                **parsed.query, "mode": "rwc" if create else "rw", "uri": "true"})
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
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
    return sa.create_engine(parsed, pool_pre_ping=False, pool_recycle=1800, pool_timeout=10,
                            connect_args=connect_args, **kwargs)


def database_error(exc: sa.exc.DBAPIError, url: str | sa.URL | None = None
                   ) -> DatabaseUnavailable:
    """The typed error for a driver error (its first line kept as the cause, for the
    operator's log or terminal; problem responses never carry it)."""
    orig = exc.orig if exc.orig is not None else exc
    text = str(orig)
    cause = next((line.strip() for line in text.splitlines() if line.strip()),
                 type(orig).__name__)
    path = sqlite_file(url) if url is not None else None
    where = (f"the SQLite database {path}" if path is not None
             else f"the database {shown(url)}" if url is not None else "the database")
    errorname = getattr(orig, "sqlite_errorname", "")
    if errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return DatabaseCorrupt(f"{where} is damaged or not a SQLite database ({cause}); "
                               "restore it from a backup")
    if errorname == "SQLITE_CANTOPEN" and (path is None or not path.exists()):
        return DatabaseMissing(f"{where} does not exist: run `attestor init` to create "
                               "one, or set EDGEPROOF_DATABASE_URL")
    if 'database "' in text and "does not exist" in text:
        return DatabaseMissing(f"{where} does not exist on the server: create it "
                               "(createdb), then run `attestor db upgrade`")
    hint = ""
    if "password" in text and url is not None and sa.make_url(url).password is None:
        hint = (" (the URL holds no password: give it in EDGEPROOF_DATABASE_URL, or "
                "PGPASSWORD or a PGPASSFILE)")
    return DatabaseUnavailable(f"cannot use {where}: {cause}{hint}")


def check(engine: sa.Engine) -> None:
    """Connect once, or raise the typed error that says why not."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise database_error(exc, engine.url) from exc


def open_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine on an existing database that answers (never creates one)."""
    engine = make_engine(url, **kwargs)
    try:
        check(engine)
    except DatabaseUnavailable:
        engine.dispose()
        raise
    return engine


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
