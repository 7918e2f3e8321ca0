"""Creating an attestor's data directory (``attestor init``)."""

from __future__ import annotations

import datetime as dt

from attestor.backends.issuer.local_ca import LocalCa
from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.backends.signing import SigningKey
from attestor.db.engine import make_engine, upgrade
from attestor.settings import Settings, config_file


def initialise(settings: Settings, now: dt.datetime, ca_name: str = "edgeproof") -> None:
    """Database schema, local CA (root + issuing, keys encrypted), secret-store key."""
    passphrase = settings.ca_passphrase()  # refuse before creating anything
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = config_file(settings.data_dir)
    if not config.exists():
        config.write_text(f'trust_domain = "{settings.trust_domain}"\n')
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    settings.trust_dir.mkdir(parents=True, exist_ok=True)
    LocalCa.create(settings.ca_dir, passphrase, now, name=ca_name,
                   root_days=settings.ca.root_days, issuing_days=settings.ca.issuing_days)
    if not settings.secret_key_file.exists():
        EmbeddedSecretStore.create_key(settings.secret_key_file)
    if not settings.signing_key_file.exists():
        SigningKey.create(settings.signing_key_file, passphrase)
