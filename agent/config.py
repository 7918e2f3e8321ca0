"""Agent configuration: defaults < TOML file < ``EDGE_AGENT_*`` env < CLI.

The TOML file is ``$EDGE_AGENT_CONFIG`` if set, else ``<state-dir>/agent.toml``.
``provision`` records the device's identity in it (keeping every other key), so
later commands need only ``--state-dir``. Every value is checked at load: an
unknown key or a bad value is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import json
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE
from agent.tpm.tcti import parse_tcti

CONFIG_FILE = "agent.toml"
DEFAULT_STATE_DIR = Path("/var/lib/edge-agent")
DEFAULT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_IMA_LOG = Path("/sys/kernel/security/ima/binary_runtime_measurements")


class ConfigError(Exception):
    pass


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_AGENT_", extra="forbid")

    state_dir: Path = DEFAULT_STATE_DIR
    attestor_url: str = Field("http://127.0.0.1:8080", pattern=r"^https?://")
    ca_bundle: Path | None = Field(None, description="CA bundle for the attestor's TLS")
    tcti: str = "device:/dev/tpmrm0"
    event_log: Path | None = DEFAULT_EVENT_LOG
    ima_log: Path | None = DEFAULT_IMA_LOG
    device_id: str | None = None
    serial: str | None = None
    device_class: str = "default"
    srk_handle: int = SRK_HANDLE
    ak_handle: int = AK_HANDLE
    devid_handle: int = DEVID_HANDLE
    renew_fraction: float = Field(2 / 3, gt=0.1, lt=0.95,
                                  description="renew at this fraction of the lifetime")
    backoff_base_seconds: float = Field(2.0, gt=0, le=60)
    backoff_cap_seconds: float = Field(300.0, ge=1, le=3600)
    output_dir: Path | None = Field(None, description="where the credential set is "
                                    "installed (default: the state directory)")
    cert_mode: int = Field(0o644, ge=0, le=0o777, description="mode of cert.pem, chain.pem")
    key_mode: int = Field(0o600, ge=0, le=0o777, description="mode of key.pem and secrets")
    hook_command: list[str] | None = Field(None, description="argv run after each rotation")
    hook_timeout_seconds: float = Field(30.0, gt=0, le=600)
    reload_pid_file: Path | None = Field(None, description="signal this process after "
                                         "each rotation")
    reload_signal: str = Field("SIGHUP", description="the signal sent to reload_pid_file")

    @field_validator("key_mode")
    @classmethod
    def _key_mode(cls, value: int) -> int:
        if value & 0o037:
            raise ValueError(f"0o{value:o} lets others read or anyone write private keys; "
                             "use 0o600 (or 0o640 for a workload group)")
        return value

    @field_validator("reload_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if value not in signal.Signals.__members__:
            raise ValueError(f"unknown signal {value!r} (e.g. SIGHUP, SIGUSR1)")
        return value

    @field_validator("hook_command")
    @classmethod
    def _hook(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0]):
            raise ValueError("hook_command must name a program: [\"/path/to/prog\", ...]")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no CA bundle file at {value}")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> AgentConfig:
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_cap_seconds must be at least backoff_base_seconds")
        return self

    @property
    def output(self) -> Path:
        """The directory holding the live credential set (``cert.pem``, ``key.pem``, …)."""
        return self.output_dir or self.state_dir

    @field_validator("tcti")
    @classmethod
    def _tcti(cls, value: str) -> str:
        parse_tcti(value)
        return value

    @field_validator("srk_handle", "ak_handle", "devid_handle")
    @classmethod
    def _persistent(cls, value: int) -> int:
        if not 0x81000000 <= value <= 0x81FFFFFF:
            raise ValueError(f"0x{value:08x} is not a persistent handle (0x81xxxxxx)")
        return value

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
        state = init_kwargs.get("state_dir") or os.environ.get("EDGE_AGENT_STATE_DIR")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_path(Path(state or DEFAULT_STATE_DIR))
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, path))
        return tuple(sources)

    def save(self) -> None:
        """Record the device's identity and connection in the TOML file, keeping every
        other key an operator put there."""
        from agent.files import atomic_write

        path = config_path(self.state_dir)
        try:
            document: dict[str, Any] = tomllib.loads(path.read_text()) if path.is_file() else {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for key in ("attestor_url", "tcti", "device_id", "serial", "device_class",
                    "ca_bundle", "event_log", "ima_log"):
            value = getattr(self, key)
            if value is not None:
                document[key] = str(value)
        for key in ("srk_handle", "ak_handle", "devid_handle"):
            document[key] = getattr(self, key)
        atomic_write(path, dump_toml(document).encode(), 0o600)


def config_path(state_dir: Path) -> Path:
    explicit = os.environ.get("EDGE_AGENT_CONFIG")
    return Path(explicit) if explicit else state_dir / CONFIG_FILE


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"0x{value:08x}" if value >= 0x81000000 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are TOML's


def dump_toml(document: dict[str, Any]) -> str:
    """The agent's flat TOML (strings, numbers, booleans and lists of them)."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in document.items())


def load_config(**overrides: Any) -> AgentConfig:
    """The configuration, or a ConfigError naming each bad value and where it came from."""
    try:
        return AgentConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in exc.errors())
        raise ConfigError(f"{problems} (file {config_path(_state(overrides))}, "
                          "env EDGE_AGENT_*)") from exc
    except (ValueError, OSError) as exc:  # malformed TOML, unreadable file
        raise ConfigError(f"{config_path(_state(overrides))}: {exc}") from exc


def _state(overrides: dict[str, Any]) -> Path:
    state = overrides.get("state_dir") or os.environ.get("EDGE_AGENT_STATE_DIR")
    return Path(state or DEFAULT_STATE_DIR)
