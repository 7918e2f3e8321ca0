"""Where the ``attestor`` CLI finds its server, token and CA bundle.

Each setting is taken from the first place that has it:

1. the command line: ``--server``, ``--token``, ``--ca-bundle``;
2. the environment: ``EDGEPROOF_SERVER``, ``EDGEPROOF_TOKEN``, ``EDGEPROOF_CA_BUNDLE``;
3. a profile of the config file (``$EDGEPROOF_CLI_CONFIG``, else
   ``$XDG_CONFIG_HOME/edgeproof/cli.toml``, else ``~/.config/edgeproof/cli.toml``): the one
   named by ``--profile``, else ``$EDGEPROOF_PROFILE``, else the file's ``default_profile``.

A profile names ``server``, and ``token`` or ``token_file``, and optionally ``ca_bundle``
(relative paths are relative to the file). A file holding a token (the config file with
``token``, or the ``token_file``) that others may read is refused, as ssh refuses a key.
A named profile that the file lacks is an error, never a silent fall-back to another
server; a profile's token is sent only to that profile's server (``--server`` naming
another one gets no token from it).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from attestor.client.errors import ClientError

ENV_SERVER = "EDGEPROOF_SERVER"
ENV_TOKEN = "EDGEPROOF_TOKEN"  # noqa: S105 - a variable's name, not a secret
ENV_CA_BUNDLE = "EDGEPROOF_CA_BUNDLE"
ENV_PROFILE = "EDGEPROOF_PROFILE"
ENV_CONFIG = "EDGEPROOF_CLI_CONFIG"  # EDGEPROOF_CONFIG is the server's attestor.toml
PROFILE_KEYS = {"server", "token", "token_file", "ca_bundle"}


@dataclass(frozen=True)
class Connection:
    """A resolved server; ``sources`` says where each setting came from (for --help and
    error messages: never the token itself)."""

    server: str
    token: str | None
    ca_bundle: Path | None
    sources: dict[str, str] = field(default_factory=dict)


def config_path(env: Mapping[str, str]) -> Path:
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else (
        Path(env.get("HOME") or Path.home()) / ".config")
    return base / "edgeproof" / "cli.toml"


def _profile(path: Path, name: str | None, explicit: bool) -> tuple[dict[str, object], str]:
    """The profile's settings and its name ({} when there is no file or no profile)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise ClientError("client.config", f"profile {name!r} asked for, but there is "
                              f"no config file {path}") from None
        return {}, ""
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ClientError("client.config", f"{path}: {exc}") from exc
    profiles = data.get("profiles", {})
    chosen = name or data.get("default_profile")
    if not chosen:
        return {}, ""
    if not isinstance(profiles, dict) or not isinstance(profiles.get(chosen), dict):
        raise ClientError("client.config", f"{path} has no profile {chosen!r} "
                          f"(profiles: {', '.join(sorted(profiles)) or 'none'})")
    settings: dict[str, object] = profiles[chosen]
    unknown = set(settings) - PROFILE_KEYS
    if unknown:
        raise ClientError("client.config", f"{path}: profile {chosen!r} has unknown keys "
                          f"{sorted(unknown)} (known: {sorted(PROFILE_KEYS)})")
    if "token" in settings and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClientError("client.config", f"{path} holds a token and others may read it: "
                          f"chmod 600 {path}")
    return settings, str(chosen)


def _text(value: object, what: str, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError("client.config", f"{path}: {what} must be a non-empty string")
    return value


def resolve(*, server: str | None, token: str | None, ca_bundle: Path | None,
            profile: str | None, env: Mapping[str, str] | None = None) -> Connection | None:
    """The connection the command line, environment and config file describe; None when
    none names a server (the command then runs locally, on the data directory)."""
    env = os.environ if env is None else env
    path = config_path(env)
    name = profile or env.get(ENV_PROFILE) or None
    settings, chosen = _profile(path, name, explicit=name is not None)
    where = f"profile {chosen} ({path})"
    sources: dict[str, str] = {}

    def pick(flag: object, env_name: str, key: str) -> object:
        if flag:
            sources[key] = "command line"
            return flag
        if env.get(env_name):
            sources[key] = env_name
            return env[env_name]
        if key in settings:
            sources[key] = where
            return settings[key]
        return None

    chosen_server = pick(server, ENV_SERVER, "server")
    if chosen_server is None:
        return None
    chosen_token = pick(token, ENV_TOKEN, "token")
    if chosen_token is None and "token_file" in settings:
        token_file = path.parent / Path(_text(settings["token_file"], "token_file", path)
                                        ).expanduser()
        try:
            if token_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ClientError("client.config", f"{path}: token_file {token_file} may be "
                                  f"read by others: chmod 600 {token_file}")
            chosen_token = token_file.read_text().strip()
        except OSError as exc:
            raise ClientError("client.config", f"{path}: token_file {token_file}: "
                              f"{exc.strerror or exc}") from exc
        sources["token"] = f"{where}: token_file"
    if (sources.get("token", "").startswith(where) and sources["server"] != where
            and settings.get("server") != chosen_server):
        # The profile's token is for the profile's server: never sent to another one.
        chosen_token = None
        sources["token"] = f"none (the token of {where} is for its own server)"
    bundle = pick(ca_bundle, ENV_CA_BUNDLE, "ca_bundle")
    if bundle is not None and sources.get("ca_bundle") == where:
        bundle = path.parent / Path(_text(bundle, "ca_bundle", path)).expanduser()
    return Connection(server=_text(chosen_server, "server", path),
                      token=_text(chosen_token, "token", path) if chosen_token else None,
                      ca_bundle=Path(str(bundle)) if bundle is not None else None,
                      sources=sources)
