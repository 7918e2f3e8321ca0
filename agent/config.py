"""Agent configuration: defaults < ``<state-dir>/agent.toml`` < ``EDGE_AGENT_*`` env < CLI.

``provision`` writes the file; later commands need only ``--state-dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
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
    renew_fraction: float = Field(2 / 3, gt=0.1, lt=0.95)

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
        path = Path(state or DEFAULT_STATE_DIR) / CONFIG_FILE
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, path))
        return tuple(sources)

    def save(self) -> None:
        """Write the durable part of the configuration to ``agent.toml``."""
        from agent.files import atomic_write

        lines = []
        for key in ("attestor_url", "tcti", "device_id", "serial", "device_class"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {_toml_str(str(value))}")
        for key in ("ca_bundle", "event_log", "ima_log"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"{key} = {_toml_str(str(value))}")
        for key in ("srk_handle", "ak_handle", "devid_handle"):
            lines.append(f"{key} = 0x{getattr(self, key):08x}")
        atomic_write(self.state_dir / CONFIG_FILE, ("\n".join(lines) + "\n").encode(), 0o600)


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def load_config(**overrides: Any) -> AgentConfig:
    try:
        return AgentConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
