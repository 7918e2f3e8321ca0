"""The attestor's wiring: settings, database, backends and clock, built once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session

from attestor.auth import Principal
from attestor.auth.tokens import LocalTokens, OidcTokens, local_issuer
from attestor.backends.issuer import Issuer
from attestor.backends.issuer.local_ca import LocalCa
from attestor.backends.issuer.vault_pki import VaultPki
from attestor.backends.secrets import SecretStore
from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.backends.secrets.vault_kv import VaultKv
from attestor.backends.signing import SigningKey
from attestor.backends.vault.connection import VaultConnection
from attestor.db.engine import head_revision, is_current, open_engine
from attestor.observability import Metrics
from attestor.services.checkpoints import CheckpointSinks
from attestor.services.keyring import Keyring
from attestor.services.refusal_windows import AuthGuard
from attestor.settings import ConfigError, Settings
from attestor.trust import TrustRoots
from identity import challenge
from identity.ekcert import TrustStore
from identity.errors import AuthInvalid, ServiceError
from identity.tpm.ak import TpmKey, load_key

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    ca: LocalCa  # device identity certificates and their CRL
    issuer: Issuer  # workload certificates: the local CA or Vault
    secrets: SecretStore
    trust_roots: TrustRoots  # the EK trust store's directory, followed while running
    vault: VaultConnection | None = None
    keyring: Keyring | None = None
    clock: Clock = utc_now
    _keys: dict[bytes, TpmKey] = field(default_factory=dict)
    devid_keys: dict[bytes, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    oidc: OidcTokens | None = None
    metrics: Metrics = field(default_factory=Metrics)
    auth_guard: AuthGuard = field(default_factory=AuthGuard)  # this replica's view
    sinks: CheckpointSinks = field(default_factory=CheckpointSinks)  # audit checkpoints
    # MAC key of challenge nonces (identity/challenge.py): the same on every replica
    challenge_key: bytes = b""

    @property
    def keys(self) -> Keyring:
        if self.keyring is None:
            raise ServiceError("the attestor's signing keyring is not loaded")
        return self.keyring

    @property
    def trust(self) -> TrustStore:
        """The EK trust store as its directory holds it now (attestor/trust.py: a change
        is seen at the next enrollment on every replica, no restart)."""
        return self.trust_roots.current()

    @property
    def signer(self) -> SigningKey:
        """The active signing key (rotates: read it per use, do not keep it)."""
        return self.keys.current

    def ca_bundle(self) -> str:
        """Trust anchors of what this attestor issues: the device identity root and,
        when another backend (Vault) signs workload certificates, its root too."""
        roots = self.ca.roots_pem()
        workload = self.issuer.roots_pem()
        return roots if workload == roots else roots + workload

    def local_tokens(self) -> LocalTokens:
        return LocalTokens(self.keys, local_issuer(self.settings.trust_domain))

    def verify_token(self, token: str) -> Principal:
        """A local token (if enabled) or an OIDC one, told apart by their issuer."""
        issuer = self.settings.auth.oidc_issuer
        try:
            claimed = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AuthInvalid("the bearer token is not a JWT") from exc
        if self.oidc is not None and claimed == issuer:
            return self.oidc.verify(token, self.clock())
        if self.settings.auth.local_tokens:
            return self.local_tokens().verify(token, self.clock())
        raise AuthInvalid("the bearer token's issuer is not trusted")

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


def build_services(settings: Settings, clock: Clock = utc_now) -> Services:
    """Open the database (must be migrated) and load every backend; fail fast."""
    if not (settings.ca_dir / "root.pem").exists():
        raise ConfigError(f"no attestor in {settings.data_dir}: run `attestor init` first")
    engine = open_engine(settings.db_url)  # exists and answers, or a typed error
    if not is_current(engine):
        raise ConfigError(
            f"the database is not at schema revision {head_revision()}: run `attestor db upgrade`"
        )
    ca = LocalCa.load(
        settings.ca_dir,
        settings.ca_passphrase(),
        trust_domain=settings.trust_domain,
        device_identity_days=settings.ca.device_identity_days,
    )
    vault = VaultConnection(settings.vault, clock) if settings.vault is not None else None
    issuer: Issuer = ca
    secrets: SecretStore
    if settings.issuer == "vault" and vault is not None:
        issuer = VaultPki(vault, trust_domain=settings.trust_domain)
    if settings.secrets.backend == "vault" and vault is not None:
        secrets = VaultKv(vault)
    else:
        secrets = EmbeddedSecretStore.from_key_file(engine, settings.secret_key_file)
    if not settings.signing_key_file.exists():
        raise ConfigError(f"no signing key at {settings.signing_key_file}: this data directory "
                          "predates it; run `attestor keys init`")
    keyring = Keyring(engine, settings.ca_passphrase())
    keyring.bootstrap(SigningKey.load(settings.signing_key_file, settings.ca_passphrase()),
                      clock())
    auth = settings.auth
    oidc = None
    if auth.oidc_issuer and auth.oidc_audience and auth.oidc_jwks_url:
        oidc = OidcTokens(auth.oidc_issuer, auth.oidc_audience, auth.oidc_jwks_url,
                          auth.oidc_algorithms, auth.oidc_role_claim)
    metrics = Metrics()
    root_der = ca.root.public_bytes(serialization.Encoding.DER)
    challenge_key = challenge.derive_key(settings.ca_passphrase(), root_der)
    trust = TrustRoots(settings.trust_dir,
                       lambda reason: metrics.trust_load_failures.labels(reason).inc())
    services = Services(settings, engine, ca, issuer, secrets, trust, vault=vault,
                        keyring=keyring, clock=clock, oidc=oidc, metrics=metrics,
                        sinks=CheckpointSinks.from_settings(settings.audit_checkpoint_sink),
                        challenge_key=challenge_key)
    from attestor.services import telemetry  # it builds on Services

    telemetry.register(services)
    return services
