"""Creating an attestor's data directory (``attestor init``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tomllib

import sqlalchemy as sa

from attestor.backends.issuer.local_ca import LocalCa
from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.backends.signing import SigningKey
from attestor.db.engine import check, make_engine, parse_url, upgrade
from attestor.settings import CONFIG_ENV, CONFIG_FILE, DEFAULT_DATABASE, ConfigError, Settings


def recorded_url(settings: Settings) -> str:
    """The database choice as ``init`` records it: never a password (it stays in
    EDGEPROOF_DATABASE_URL, or PostgreSQL's PGPASSWORD / PGPASSFILE)."""
    if settings.database_url is None:
        return f"sqlite:///{DEFAULT_DATABASE}"  # relative: inside the data directory
    url = parse_url(settings.database_url)  # refuses an unsupported URL before anything
    if url.password is None:
        return settings.database_url
    given = sa.make_url(settings.database_url)
    return sa.URL.create(given.drivername, given.username, None, given.host, given.port,
                         given.database, given.query).render_as_string(hide_password=False)


def record_database(settings: Settings) -> str | None:
    """Write ``database_url`` into ``<data-dir>/attestor.toml`` unless it names one, so
    later commands use the same database without EDGEPROOF_DATABASE_URL. A file named by
    EDGEPROOF_CONFIG is the operator's (often a read-only mount) and is left alone.
    Returns the URL recorded, or None."""
    if os.environ.get(CONFIG_ENV):
        return None
    config = settings.data_dir / CONFIG_FILE
    url = recorded_url(settings)
    line = f"database_url = {json.dumps(url)}\n"  # JSON string escapes are TOML's
    if not config.exists():
        config.write_text(f"trust_domain = {json.dumps(settings.trust_domain)}\n{line}")
        return url
    text = config.read_text()
    try:
        if "database_url" in tomllib.loads(text):
            return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config}: not valid TOML: {exc}") from exc
    config.write_text(line + text)  # first: a top-level key must precede every [section]
    return url


def initialise(settings: Settings, now: dt.datetime, ca_name: str = "edgeproof") -> None:
    """Database schema, local CA (root + issuing, keys encrypted), secret-store key, and
    the database choice recorded in the settings file."""
    passphrase = settings.ca_passphrase()  # refuse before creating anything
    recorded_url(settings)
    data_dir = settings.data_dir
    existed = data_dir.exists()
    before = set(data_dir.iterdir()) if existed else set()
    config = data_dir / CONFIG_FILE
    config_text = config.read_text() if config in before else None
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        _create(settings, passphrase, now, ca_name)
    except BaseException:
        # A failed init leaves the directory as it found it (a rerun starts clean): what
        # it made goes; a mounted volume that was there already stays.
        if not existed:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for made in set(data_dir.iterdir()) - before:
                if made.is_dir() and not made.is_symlink():
                    shutil.rmtree(made, ignore_errors=True)
                else:
                    made.unlink(missing_ok=True)
            if config_text is not None:
                config.write_text(config_text)
        raise


def _create(settings: Settings, passphrase: bytes, now: dt.datetime, ca_name: str) -> None:
    engine = make_engine(settings.db_url, create=True)
    try:
        check(engine)  # a typed error (down, corrupt, missing) before any migration
        upgrade(engine)
    finally:
        engine.dispose()
    record_database(settings)
    settings.trust_dir.mkdir(parents=True, exist_ok=True)
    LocalCa.create(settings.ca_dir, passphrase, now, name=ca_name,
                   root_days=settings.ca.root_days, issuing_days=settings.ca.issuing_days)
    if not settings.secret_key_file.exists():
        EmbeddedSecretStore.create_key(settings.secret_key_file)
    if not settings.signing_key_file.exists():
        SigningKey.create(settings.signing_key_file, passphrase)
