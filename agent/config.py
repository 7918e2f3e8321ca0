"""Agent configuration: defaults < TOML file < ``EDGE_AGENT_*`` env < CLI.

The TOML file is ``$EDGE_AGENT_CONFIG`` if set, else ``<state-dir>/agent.toml``.
``provision`` records the device's identity in it (keeping every other key), so
later commands need only ``--state-dir``. Every value is checked at load: an
unknown key or a bad value is a :class:`ConfigError` naming it.

A dataclass checked field by field rather than a pydantic(-settings) model: the
agent stays resident for years on small devices, and building a pydantic model
with pydantic-settings costs about 16 MB of resident memory (docs/benchmarks.md,
agent footprint) for twenty settings read once.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import signal
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE
from agent.tpm.tcti import parse_tcti

CONFIG_FILE = "agent.toml"
ENV_PREFIX = "EDGE_AGENT_"
DEFAULT_STATE_DIR = Path("/var/lib/edge-agent")
DEFAULT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_IMA_LOG = Path("/sys/kernel/security/ima/binary_runtime_measurements")


class ConfigError(Exception):
    """Invalid settings; ``fields`` lists (name, value, complaint) for each bad value
    found by :class:`AgentConfig` (so :func:`load_config` can say where it came from)."""

    def __init__(self, message: str,
                 fields: tuple[tuple[str, object, str], ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


def _check(test: Callable[[Any], bool], message: str) -> dict[str, Any]:
    return {"check": test, "message": message}


def _between(low: float, high: float, *, open_low: bool = False,
             open_high: bool = False) -> dict[str, Any]:
    def test(v: float) -> bool:
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
    return _check(test, f"must be in {lo}{low:g}, {high:g}{hi}")


def _persistent() -> dict[str, Any]:
    return _check(lambda v: 0x81000000 <= v <= 0x81FFFFFF,
                  "is not a persistent handle (0x81000000-0x81FFFFFF)")


def _http_url(value: str) -> bool:
    return re.match(r"^https?://[^/\s]+", value) is not None


def _tcti_ok(value: str) -> bool:
    parse_tcti(value)
    return True


@dataclass
class AgentConfig:
    """Validated agent settings; :func:`load_config` builds them from file, env and CLI."""

    state_dir: Path = DEFAULT_STATE_DIR
    attestor_url: str = field(default="http://127.0.0.1:8080", metadata=_check(
        _http_url, "must be an http(s) URL"))
    # several replicas or sites, tried in turn on failure (replaces attestor_url when set)
    attestor_urls: list[str] | None = field(default=None, metadata=_check(
        lambda v: bool(v) and all(isinstance(u, str) and _http_url(u) for u in v),
        "must be a non-empty list of http(s) URLs"))
    ca_bundle: Path | None = field(default=None, metadata=_check(
        lambda v: v.is_file(), "names no CA bundle file"))  # verifies the attestor's TLS
    vault_ca_bundle: Path | None = field(default=None, metadata=_check(
        lambda v: v.is_file(), "names no CA bundle file"))  # for unwrapping at Vault
    tcti: str = field(default="device:/dev/tpmrm0", metadata=_check(
        _tcti_ok, "is not a TCTI (device:, swtpm:, mssim:, tabrmd)"))
    event_log: Path | None = DEFAULT_EVENT_LOG
    ima_log: Path | None = DEFAULT_IMA_LOG
    device_id: str | None = None
    # the TPM Name of the enrolled AK (hex), recorded by `provision`; `doctor` compares it
    ak_name: str | None = field(default=None, metadata=_check(
        lambda v: re.fullmatch(r"(?:[0-9a-f]{2}){22,66}", v) is not None,
        "is not a TPM object Name in hex"))
    serial: str | None = None
    device_class: str = "default"
    srk_handle: int = field(default=SRK_HANDLE, metadata=_persistent())
    ak_handle: int = field(default=AK_HANDLE, metadata=_persistent())
    devid_handle: int = field(default=DEVID_HANDLE, metadata=_persistent())
    renew_fraction: float = field(default=2 / 3, metadata=_between(0.1, 0.95, open_low=True,
                                                                    open_high=True))
    backoff_base_seconds: float = field(default=2.0, metadata=_between(0, 60, open_low=True))
    backoff_cap_seconds: float = field(default=300.0, metadata=_between(1, 3600))
    output_dir: Path | None = None  # where the credential set lives (default: state_dir)
    cert_mode: int = field(default=0o644, metadata=_between(0, 0o777))
    key_mode: int = field(default=0o600, metadata=_check(
        lambda v: 0 <= v <= 0o777 and not v & 0o037,
        "lets others read or anyone write private keys; use 0o600 (or 0o640 for a group)"))
    hook_command: list[str] | None = field(default=None, metadata=_check(
        lambda v: bool(v) and all(isinstance(a, str) for a in v) and bool(v[0]),
        'must name a program: ["/path/to/prog", "arg", ...]'))
    hook_timeout_seconds: float = field(default=30.0, metadata=_between(0, 600, open_low=True))
    reload_pid_file: Path | None = None  # signal this process after each rotation
    reload_signal: str = field(default="SIGHUP", metadata=_check(
        lambda v: v in signal.Signals.__members__, "is not a signal name (e.g. SIGHUP)"))
    metrics_textfile: Path | None = field(default=None, metadata=_check(
        lambda v: v.suffix == ".prom", "must end in .prom (node-exporter's textfile "
        "collector reads only those)"))  # rewritten after every cycle of `edge-agent run`
    unhealthy_after_failures: int = field(default=10, metadata=_between(0, 10_000))  # 0: never

    def __post_init__(self) -> None:
        problems: list[tuple[str, object, str]] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            check = spec.metadata.get("check")
            if value is None or check is None:
                continue
            try:
                ok = check(value)
            except (ValueError, TypeError, AttributeError):
                ok = False
            if not ok:
                problems.append((spec.name, value, spec.metadata["message"]))
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            problems.append(("backoff_cap_seconds", self.backoff_cap_seconds,
                             "must be at least backoff_base_seconds"))
        if not problems:
            problems.extend(self._scheme_problems())
        if problems:
            raise ConfigError("; ".join(f"{name}: {value!r} {why}"
                                        for name, value, why in problems), tuple(problems))

    @property
    def urls(self) -> tuple[str, ...]:
        """The attestors to use, in order of preference (failover goes down the list)."""
        return tuple(self.attestor_urls or (self.attestor_url,))

    def _scheme_problems(self) -> list[tuple[str, object, str]]:
        """No failover from HTTPS to plain HTTP, and no CA bundle that would verify nothing."""
        schemes = {url.split(":", 1)[0].lower() for url in self.urls}
        key = "attestor_urls" if self.attestor_urls else "attestor_url"
        if len(schemes) > 1:
            return [(key, getattr(self, key), "mixes https:// and http:// URLs; failing "
                     "over from one to the other would drop TLS")]
        if self.ca_bundle is not None and schemes == {"http"}:
            return [("ca_bundle", self.ca_bundle, f"is set, but {key} is plain http://, so "
                     "it would verify nothing; use https:// URLs")]
        return []

    @property
    def output(self) -> Path:
        """The directory holding the live credential set (``cert.pem``, ``key.pem``, …)."""
        return self.output_dir or self.state_dir

    def save(self) -> None:
        """Record the device's identity and connection in the TOML file, keeping every
        other key an operator put there."""
        from agent.files import atomic_write

        atomic_write(config_path(self.state_dir), self.render().encode(), 0o600)

    def render(self) -> str:
        """The TOML file as :meth:`save` writes it."""
        path = config_path(self.state_dir)
        try:
            document: dict[str, Any] = tomllib.loads(path.read_text()) if path.is_file() else {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if self.attestor_urls:
            document["attestor_urls"] = list(self.attestor_urls)
        for key in ("attestor_url", "tcti", "device_id", "ak_name", "serial", "device_class",
                    "ca_bundle", "vault_ca_bundle", "event_log", "ima_log"):
            value = getattr(self, key)
            if value is not None:
                document[key] = str(value)
        for key in ("srk_handle", "ak_handle", "devid_handle"):
            document[key] = getattr(self, key)
        return dump_toml(document)


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


_TYPES = {spec.name: str(spec.type) for spec in dataclasses.fields(AgentConfig)}


def _coerce(name: str, value: Any, from_env: bool) -> Any:
    """A value from TOML or the environment, as the field's type."""
    kind = _TYPES[name]
    if "Path" in kind:
        if value == "" and "None" in kind:
            return None  # `ima_log = ""`: not configured
        if not isinstance(value, str):
            raise ValueError("must be a path (a string)")
        return Path(value)
    if kind.startswith("int"):
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        try:
            return int(value, 0) if isinstance(value, str) else int(value)
        except ValueError:
            raise ValueError("must be an integer (0x… and 0o… allowed)") from None
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("must be a number")
        try:
            return float(value)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind.startswith("list"):
        if from_env and name == "attestor_urls" and not value.lstrip().startswith("["):
            return [url.strip() for url in value.split(",") if url.strip()]  # a,b,c
        parsed = json.loads(value) if from_env else value
        if not isinstance(parsed, list):
            raise ValueError("must be a list of strings")
        return parsed
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _shown(name: str, value: object) -> str:
    """A value as a message may show it: never a secret's (none today; kept for later)."""
    lowered = name.lower()
    if any(w in lowered for w in ("token", "password", "passphrase", "secret")) \
            or lowered.endswith("_key"):
        return "<redacted>"
    return repr(value)


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, list(_TYPES), n=1)
    return "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")


def _sources(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Defaults < TOML file < ``EDGE_AGENT_<FIELD>`` environment < ``overrides``;
    with the problems found on the way (unknown keys, values of the wrong type), and
    where each value came from, as the operator wrote it."""
    merged: dict[str, Any] = {}
    problems: list[str] = []
    origins: dict[str, str] = {}
    path = config_path(_state(overrides))
    if path.is_file():
        for key, value in tomllib.loads(path.read_text()).items():
            origins[key] = f"{key} in {path}"
            if key not in _TYPES:
                problems.append(f"{origins[key]}: {_unknown(key)}")
                continue
            try:
                merged[key] = _coerce(key, value, from_env=False)
            except (ValueError, TypeError) as exc:
                problems.append(f"{origins[key]} = {_shown(key, value)}: {exc}")
    for key in _TYPES:
        value = os.environ.get(ENV_PREFIX + key.upper())
        if value is not None:
            origins[key] = f"{ENV_PREFIX}{key.upper()} (environment)"
            try:
                merged[key] = _coerce(key, value, from_env=True)
            except (ValueError, TypeError) as exc:
                problems.append(f"{origins[key]} = {_shown(key, value)}: {exc}")
    for key, value in overrides.items():
        origins[key] = f"{key} (command line)"
        if key not in _TYPES:
            problems.append(f"{origins[key]}: {_unknown(key)}")
        elif isinstance(value, str) and not _TYPES[key].startswith("str"):
            try:
                merged[key] = _coerce(key, value, from_env=True)
            except (ValueError, TypeError) as exc:
                problems.append(f"{origins[key]} = {_shown(key, value)}: {exc}")
        else:
            merged[key] = value
    return merged, problems, origins


def load_config(**overrides: Any) -> AgentConfig:
    """The configuration, or a ConfigError naming each bad value as written (environment
    variable, key in the file, or option), its value and what is allowed."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        merged, problems, origins = _sources(overrides)
    except (ValueError, OSError) as exc:  # malformed TOML, unreadable file
        raise ConfigError(f"{config_path(_state(overrides))}: {exc}") from exc
    if problems:
        raise ConfigError("invalid agent settings: " + "; ".join(problems))
    try:
        return AgentConfig(**merged)
    except ConfigError as exc:
        described = [f"{origins.get(name, name + ' (default)')} = {_shown(name, value)}: {why}"
                     for name, value, why in exc.fields]
        raise ConfigError("invalid agent settings: " + "; ".join(described)) from exc


def _state(overrides: dict[str, Any]) -> Path:
    state = overrides.get("state_dir") or os.environ.get("EDGE_AGENT_STATE_DIR")
    return Path(state or DEFAULT_STATE_DIR)
