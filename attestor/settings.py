"""Attestor settings: defaults < the TOML file < ``EDGEPROOF_*`` env < CLI.

The TOML file is ``$EDGEPROOF_CONFIG`` when set (e.g. a Kubernetes ConfigMap mount, so the
data directory can stay read-only), else ``<data-dir>/attestor.toml``.

Built once at start-up by :func:`load_settings`, never at import. Outside ``dev`` mode,
a missing, short or well-known CA passphrase refuses to start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from attestor.console_settings import ConsoleSettings
from attestor.vault_settings import VaultSettings

CONFIG_FILE = "attestor.toml"
CONFIG_ENV = "EDGEPROOF_CONFIG"
DEFAULT_DATABASE = "attestor.db"  # SQLite, inside the data directory
DEV_PASSPHRASE = "edgeproof-development-only-passphrase"  # noqa: S105 - refused outside dev
KNOWN_PASSPHRASES = frozenset(
    {"", "changeme", "change-me", "password", "passphrase", "edgeproof", DEV_PASSPHRASE}
)
MIN_PASSPHRASE = 12


class ConfigError(Exception):
    """Settings are invalid or incomplete; the message says which and how to fix it."""


def config_file(data_dir: Path) -> Path:
    """The settings file: ``$EDGEPROOF_CONFIG`` if set, else ``<data-dir>/attestor.toml``."""
    explicit = os.environ.get(CONFIG_ENV)
    return Path(explicit) if explicit else data_dir / CONFIG_FILE


class CaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passphrase: SecretStr | None = Field(None, description="issuing-CA key passphrase")
    passphrase_file: Path | None = Field(None, description="file holding the passphrase")
    root_days: int = Field(7300, ge=1)
    issuing_days: int = Field(3650, ge=1)
    device_identity_days: int = Field(3650, ge=1, description="DevID certificate lifetime")


class IssuanceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_ttl_seconds: int = Field(3600, ge=60, description="default workload cert lifetime")
    max_cert_ttl_seconds: int = Field(7 * 86400, ge=60, description="upper clamp on any TTL")
    pending_grace_seconds: int = Field(60, ge=1, le=3600, description="a reservation still "
                                       "pending after this long was interrupted and is voided "
                                       "(keep it above the longest issuance, Vault included)")
    reconcile_seconds: float = Field(15.0, gt=0, le=3600, description="how often each replica "
                                     "looks for interrupted issuances")

    @model_validator(mode="after")
    def _ordered(self) -> IssuanceSettings:
        if self.cert_ttl_seconds > self.max_cert_ttl_seconds:
            raise ValueError("cert_ttl_seconds exceeds max_cert_ttl_seconds")
        return self


class RetentionSettings(BaseModel):
    """Housekeeping (attestor.services.housekeeping): what is purged, and when."""

    model_config = ConfigDict(extra="forbid")
    purge_seconds: float = Field(300.0, gt=0, le=86400, description="how often each replica "
                                 "purges expired and aged rows")
    expired_grace_seconds: int = Field(3600, ge=0, le=30 * 86400, description="spent "
                                       "challenge nonces (at least 600 s) and enrollments "
                                       "stay this long past expiry")
    attestations_days: int = Field(90, ge=1, le=36500, description="attestation records, "
                                   "expired workload certificates and webhook deliveries "
                                   "older than this are deleted")
    attestations_keep: int = Field(10, ge=1, le=100_000, description="the latest this many "
                                   "attestations of each device are kept whatever their age")


class SecretStoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["embedded", "vault"] = Field("embedded", description="where secrets live")
    key_file: Path | None = Field(None, description="AES-256 key of the embedded store")


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    local_tokens: bool = Field(True, description="accept tokens minted by `attestor token`")
    oidc_issuer: str | None = Field(None, description="OIDC issuer (iss) of bearer tokens")
    oidc_audience: str | None = Field(None, description="required aud of OIDC tokens")
    oidc_jwks_url: str | None = Field(None, description="the issuer's JWKS URL")
    oidc_algorithms: list[str] = Field(["RS256", "ES256"], description="accepted algorithms")
    oidc_role_claim: str = Field("roles", description="claim holding the edgeproof role(s)")
    request_window_seconds: int = Field(300, ge=30, le=3600,
                                        description="clock skew allowed on signed requests")

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        given = [self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url]
        if any(given) and not all(given):
            raise ValueError("OIDC needs oidc_issuer, oidc_audience and oidc_jwks_url together")
        return self


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enrollment_per_minute: int = Field(60, ge=1, description="per client address")
    challenge_per_minute: int = Field(30, ge=1, description="per device")
    attestation_per_minute: int = Field(30, ge=1, description="per device")
    max_inflight: int = Field(64, ge=1, le=10_000, description="device requests in flight "
                              "per process before shedding with 429")
    overload_retry_after_seconds: int = Field(5, ge=1, le=600, description="base Retry-After "
                                              "when shedding (jittered up to twice)")
    client_per_minute: int = Field(1200, ge=1, description="challenges and attestations "
                                   "per client address (a NAT may hide many devices)")
    auth_failures_per_source: int = Field(60, ge=1, description="refused requests (failed "
                                          "authentication) per source address and window "
                                          "before its credentials get 429 unchecked")
    auth_failure_window_seconds: int = Field(60, ge=10, le=3600, description="the window "
                                             "of auth_failures_per_source")
    auth_failures_audited_individually: int = Field(10, ge=0, description="refusals per "
                                                    "source and window with an audit entry "
                                                    "each; the rest are summed in one entry")


MIN_WEBHOOK_SECRET = 16


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # keys stay out

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr = Field(description="HMAC-SHA256 key for the signature header "
                              f"(at least {MIN_WEBHOOK_SECRET} characters)")
    events: list[str] = Field(["verdict.changed", "device.quarantined", "device.revoked"])

    @field_validator("secret")
    @classmethod
    def _real_key(cls, secret: SecretStr) -> SecretStr:
        # An empty key makes every signature forgeable; a short one can be guessed
        # offline from a single signed delivery.
        if len(secret.get_secret_value().strip()) < MIN_WEBHOOK_SECRET:
            raise ValueError(f"the HMAC key must hold at least {MIN_WEBHOOK_SECRET} "
                             "characters (it is empty or too short)")
        return secret


class CheckpointSinkSettings(BaseModel):
    """Where each signed audit checkpoint is sent, off the database (the webhook channel
    is a webhook subscribed to ``audit.checkpoint``)."""

    model_config = ConfigDict(extra="forbid")

    file: Path | None = Field(None, description="append one JSON line per checkpoint "
                              "(O_APPEND, fsync): an append-only file, e.g. on another disk")
    syslog: str | None = Field(None, pattern=r"^(unix:/\S+|(udp|tcp)://(\[[0-9A-Fa-f:.]+\]"
                               r"|[^/:\s\[\]]+):\d{1,5})$",
                               description="unix:/dev/log, udp://host:514 or tcp://host:514")


class EarSettings(BaseModel):
    """Attestation-result tokens (EAR)."""

    model_config = ConfigDict(extra="forbid")

    ttl_seconds: int = Field(600, ge=30, le=3600, description="token lifetime")
    audience: str | None = Field(None, description="aud of every token (none by default)")


class TlsSettings(BaseModel):
    """HTTPS on the API listener (``attestor serve``); see docs/operations.md, TLS."""

    model_config = ConfigDict(extra="forbid")

    cert_file: Path | None = Field(None, description="server certificate, PEM (the issuing "
                                   "chain after it); `attestor tls issue` makes one")
    key_file: Path | None = Field(None, description="its private key, PEM")
    client_ca_file: Path | None = Field(None, description="require every client to present a "
                                        "certificate from this CA (PEM)")
    insecure_http: bool = Field(False, description="serve plain HTTP: only behind a proxy or "
                                "Ingress that terminates TLS")

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("tls: client_ca_file needs cert_file and key_file")
        if self.insecure_http and self.cert_file is not None:
            raise ValueError("tls: insecure_http and cert_file contradict each other; "
                             "choose one")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class MetricsSettings(BaseModel):
    """The separate metrics listener and the fleet-wide numbers computed at scrape time."""

    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(None, ge=1, le=65535, description="port of a separate listener "
                             "serving only GET /metrics without credentials (unset: none)")
    host: str | None = Field(None, description="its listen address (default: the API's)")
    cache_seconds: float = Field(15.0, ge=0, le=600, description="fleet-wide numbers and "
                                 "backend probes are reused for this long between scrapes")
    scrape_budget_seconds: float = Field(5.0, gt=0, le=60, description="a backend that has "
                                         "not answered within this is reported down")
    renewal_window_seconds: int | None = Field(
        None, ge=60, description="an active device whose current certificate expires "
        "within this missed its renewal (default: a quarter of issuance.cert_ttl_seconds)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EDGEPROOF_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path
    dev: bool = Field(False, description="development mode: allows the built-in passphrase")
    database_url: str | None = Field(None, description="sqlite:///<path> (a relative path "
                                     "is inside the data directory) or postgresql://; "
                                     "`attestor init` records it in attestor.toml")
    trust_domain: str = Field("edgeproof.local", pattern=r"^[a-z0-9.\-_]+$")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    nonce_ttl_seconds: int = Field(60, ge=10, le=600)
    activation_ttl_seconds: int = Field(300, ge=30, le=3600)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    worker_threads: int = Field(8, ge=1, le=256, description="threads running blocking "
                                "request work per process")
    ek_require_san: bool = Field(True, description="EK certificates must carry the TCG SAN")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list, description="reverse proxies (addresses or networks) whose "
        "client_address_header names the client; otherwise the TCP peer is the client")
    client_address_header: str = Field("x-forwarded-for", pattern=r"^[A-Za-z0-9-]{1,64}$",
                                       description="the header a trusted proxy names the "
                                       "client in (the right-most untrusted address counts)")
    ca: CaSettings = CaSettings()
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    webhook_poll_seconds: float = Field(5.0, gt=0, le=300)
    audit_checkpoint_seconds: float = Field(60.0, gt=0, le=86400, description="the longest "
                                            "an audit entry stays unanchored (no signed "
                                            "checkpoint covers it yet)")
    audit_checkpoint_entries: int = Field(1000, ge=1, le=1_000_000, description="the most "
                                          "audit entries left unanchored")
    audit_checkpoint_sink: CheckpointSinkSettings = CheckpointSinkSettings()
    audit_verify_seconds: float = Field(3600.0, ge=0, le=7 * 86400, description="how often "
                                        "each replica verifies the whole audit chain for the "
                                        "metrics (0: only on request)")
    signing_key_max_age_days: int = Field(365, ge=1, le=3650, description="rotate the signing "
                                          "key before it is this old (reported, not enforced)")
    issuance: IssuanceSettings = IssuanceSettings()
    retention: RetentionSettings = RetentionSettings()
    ear: EarSettings = EarSettings()
    secrets: SecretStoreSettings = SecretStoreSettings()
    issuer: Literal["local", "vault"] = Field("local", description="who signs workload "
                                              "certificates (device identities: local CA)")
    vault: VaultSettings | None = None
    metrics: MetricsSettings = MetricsSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _one_key_per_webhook(self) -> Settings:
        urls = [hook.url for hook in self.webhooks]
        if len(urls) != len(set(urls)):
            raise ValueError("webhooks: a URL is listed more than once (one key per URL)")
        return self

    @model_validator(mode="after")
    def _vault_configured(self) -> Settings:
        if self.vault is None and "vault" in (self.issuer, self.secrets.backend):
            raise ValueError("the vault backend needs a [vault] section (address, auth)")
        return self

    @model_validator(mode="after")
    def _metrics_port_free(self) -> Settings:
        if self.metrics.port == self.port and self.metrics_host == self.host:
            raise ValueError(f"metrics.port {self.metrics.port} is the API's port: choose "
                             "another (the metrics listener serves no API)")
        return self

    @property
    def metrics_host(self) -> str:
        return self.metrics.host or self.host

    @property
    def renewal_window(self) -> int:
        """Seconds before expiry inside which a current certificate counts as lagging."""
        return self.metrics.renewal_window_seconds or self.issuance.cert_ttl_seconds // 4

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        data_dir = init_kwargs.get("data_dir") or os.environ.get("EDGEPROOF_DATA_DIR")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        explicit = os.environ.get(CONFIG_ENV)
        if explicit and not Path(explicit).is_file():
            # Named but absent (a ConfigMap not mounted, a typo): starting on defaults
            # would silently drop every setting in it.
            raise ConfigError(f"{CONFIG_ENV}={explicit} names no file; mount or create it, "
                              f"or unset {CONFIG_ENV} to use <data-dir>/{CONFIG_FILE}")
        path = config_file(Path(data_dir)) if data_dir else None
        if path is not None and path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, path))
        return tuple(sources)

    @property
    def db_url(self) -> str:
        """The database URL; a relative SQLite path is taken inside the data directory
        (so a recorded ``sqlite:///attestor.db`` follows a restored or moved directory)."""
        url = self.database_url or f"sqlite:///{DEFAULT_DATABASE}"
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and not path.startswith(("/", "file:", ":memory:")):
                return f"sqlite:///{self.data_dir / path}"
        return url

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"

    @property
    def trust_dir(self) -> Path:
        return self.data_dir / "trust" / "ek-roots"

    @property
    def signing_key_file(self) -> Path:
        return self.ca_dir / "signing.key"

    @property
    def secret_key_file(self) -> Path:
        return self.secrets.key_file or self.data_dir / "secrets.key"

    def ca_passphrase(self) -> bytes:
        """The CA passphrase; refuses missing or well-known ones outside dev mode."""
        value: str | None = None
        if self.ca.passphrase is not None:
            value = self.ca.passphrase.get_secret_value()
        elif self.ca.passphrase_file is not None:
            try:
                value = self.ca.passphrase_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read CA passphrase file: {exc}") from exc
        if value is None and self.dev:
            value = DEV_PASSPHRASE
        if value is None:
            raise ConfigError(
                "no CA passphrase: set EDGEPROOF_CA__PASSPHRASE or ca.passphrase_file "
                "(or run with --dev for a development setup)"
            )
        if not self.dev and (value in KNOWN_PASSPHRASES or len(value) < MIN_PASSPHRASE):
            raise ConfigError(
                f"the CA passphrase is a default or shorter than {MIN_PASSPHRASE} characters; "
                "choose a real one (only --dev accepts it)"
            )
        return value.encode()


def load_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Build the settings once; invalid values become a :class:`ConfigError` naming each
    bad setting as written (env variable or file key), its value and what is allowed."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from attestor.settings_errors import explain_all

    given = {k: v for k, v in overrides.items() if v is not None}
    path = config_file(data_dir)
    try:
        return Settings(data_dir=data_dir, **given)
    except ValidationError as exc:
        raise ConfigError(explain_all(exc, Settings, path if path.is_file() else None,
                                      given)) from exc
    except SettingsError as exc:  # an EDGEPROOF_* variable that is not valid JSON
        raise ConfigError(f"{exc} (a section or list in the environment is JSON: "
                          f"{exc.__cause__})") from exc
    except ValueError as exc:  # the TOML file does not parse
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
