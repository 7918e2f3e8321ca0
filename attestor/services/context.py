"""The attestor's wiring: settings, database, backends and clock, built once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from attestor.backends.issuer import Issuer
from attestor.backends.issuer.local_ca import LocalCa
from attestor.backends.secrets import SecretStore
from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.db.engine import head_revision, is_current, make_engine
from attestor.settings import ConfigError, Settings
from attestor.trust import load_trust_store
from identity.ekcert import TrustStore
from identity.tpm.ak import TpmKey, load_key

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    issuer: Issuer
    secrets: SecretStore
    trust: TrustStore
    clock: Clock = utc_now
    _keys: dict[bytes, TpmKey] = field(default_factory=dict)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def ak(self, public: bytes) -> TpmKey:
        """The enrolled AK as a ready `cryptography` key, parsed once per process."""
        key = self._keys.get(public)
        if key is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            key = self._keys[public] = load_key(public)
        return key

    def reload_trust(self) -> None:
        self.trust = load_trust_store(self.settings.trust_dir)


def build_services(settings: Settings, clock: Clock = utc_now) -> Services:
    """Open the database (must be migrated) and load every backend; fail fast."""
    if not (settings.ca_dir / "root.pem").exists():
        raise ConfigError(f"no attestor in {settings.data_dir}: run `attestor init` first")
    engine = make_engine(settings.db_url)
    if not is_current(engine):
        raise ConfigError(
            f"the database is not at schema revision {head_revision()}: run `attestor db upgrade`"
        )
    issuer = LocalCa.load(
        settings.ca_dir,
        settings.ca_passphrase(),
        trust_domain=settings.trust_domain,
        device_identity_days=settings.ca.device_identity_days,
    )
    secrets = EmbeddedSecretStore.from_key_file(engine, settings.secret_key_file)
    return Services(settings, engine, issuer, secrets, load_trust_store(settings.trust_dir), clock)
