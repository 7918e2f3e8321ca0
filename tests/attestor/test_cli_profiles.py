"""Where the CLI finds its server and token: command line > environment > config-file
profile (attestor/client/config.py), a profile's token never sent to another server,
and TLS verified against the CA bundle, never skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attestor.cli import app
from attestor.client import ClientError
from attestor.client.config import resolve
from tests.harness import LiveAttestor

SERVER_A, SERVER_B = "https://a.example", "https://b.example"


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    """An environment whose config file has two profiles, ``a`` the default."""
    write_config(tmp_path / "b.token", "token-b-from-file\n")
    write_config(tmp_path / "cli.toml", f"""
default_profile = "a"
[profiles.a]
server = "{SERVER_A}"
token = "token-a"
ca_bundle = "a-ca.pem"
[profiles.b]
server = "{SERVER_B}"
token_file = "b.token"
""")
    return {"EDGEPROOF_CLI_CONFIG": str(tmp_path / "cli.toml")}


def test_the_default_profile_and_relative_paths(config: dict[str, str], tmp_path: Path
                                                ) -> None:
    found = resolve(server=None, token=None, ca_bundle=None, profile=None, env=config)
    assert found is not None
    assert (found.server, found.token, found.ca_bundle) == (SERVER_A, "token-a",
                                                            tmp_path / "a-ca.pem")
    chosen = resolve(server=None, token=None, ca_bundle=None, profile="b", env=config)
    assert chosen is not None and (chosen.server, chosen.token) == (SERVER_B,
                                                                    "token-b-from-file")
    by_env = resolve(server=None, token=None, ca_bundle=None, profile=None,
                     env={**config, "EDGEPROOF_PROFILE": "b"})
    assert by_env is not None and by_env.server == SERVER_B


def test_flag_beats_environment_beats_profile(config: dict[str, str]) -> None:
    env = {**config, "EDGEPROOF_TOKEN": "token-env"}
    from_env = resolve(server=None, token=None, ca_bundle=None, profile=None, env=env)
    assert from_env is not None and from_env.token == "token-env"
    assert from_env.sources["token"] == "EDGEPROOF_TOKEN"
    from_flag = resolve(server=None, token="token-flag", ca_bundle=None, profile=None, env=env)
    assert from_flag is not None and from_flag.token == "token-flag"
    assert from_flag.sources == {"server": f"profile a ({config['EDGEPROOF_CLI_CONFIG']})",
                                 "token": "command line",
                                 "ca_bundle": f"profile a ({config['EDGEPROOF_CLI_CONFIG']})"}
    env_server = resolve(server=None, token=None, ca_bundle=None, profile=None,
                         env={**env, "EDGEPROOF_SERVER": SERVER_B})
    assert env_server is not None and (env_server.server, env_server.token) == (
        SERVER_B, "token-env")


def test_a_profile_token_goes_only_to_its_own_server(config: dict[str, str]) -> None:
    elsewhere = resolve(server=SERVER_B, token=None, ca_bundle=None, profile=None, env=config)
    assert elsewhere is not None and elsewhere.server == SERVER_B
    assert elsewhere.token is None
    same = resolve(server=SERVER_A, token=None, ca_bundle=None, profile=None, env=config)
    assert same is not None and same.token == "token-a"


def test_no_server_anywhere_means_local(tmp_path: Path) -> None:
    env = {"EDGEPROOF_CLI_CONFIG": str(tmp_path / "absent.toml")}
    assert resolve(server=None, token="t", ca_bundle=None, profile=None, env=env) is None
    env_xdg = {"XDG_CONFIG_HOME": str(tmp_path)}  # $XDG_CONFIG_HOME/edgeproof/cli.toml
    (tmp_path / "edgeproof").mkdir()
    write_config(tmp_path / "edgeproof" / "cli.toml",
                 f'default_profile = "x"\n[profiles.x]\nserver = "{SERVER_A}"\n')
    found = resolve(server=None, token=None, ca_bundle=None, profile=None, env=env_xdg)
    assert found is not None and found.server == SERVER_A and found.token is None


@pytest.mark.parametrize(("text", "profile", "mode", "complaint"), [
    ('[profiles.a]\nserver = "https://a"\n', "zzz", 0o600, "has no profile 'zzz'"),
    ('[profiles.a]\nserver = "https://a"\nsecret = 1\n', "a", 0o600, "unknown keys"),
    ('[profiles.a]\nserver = "https://a"\ntoken = "t"\n', "a", 0o644, "chmod 600"),
    ("[profiles.a\n", "a", 0o600, "cli.toml"),
    ('[profiles.a]\nserver = ""\n', "a", 0o600, "server must be a non-empty string"),
])
def test_config_mistakes_are_errors(tmp_path: Path, text: str, profile: str, mode: int,
                                    complaint: str) -> None:
    path = write_config(tmp_path / "cli.toml", text, mode)
    with pytest.raises(ClientError, match=complaint) as caught:
        resolve(server=None, token=None, ca_bundle=None, profile=profile,
                env={"EDGEPROOF_CLI_CONFIG": str(path)})
    assert caught.value.code == "client.config"


def test_a_named_profile_without_a_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="no config file"):
        resolve(server=None, token=None, ca_bundle=None, profile="prod",
                env={"EDGEPROOF_CLI_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.e2e
def test_profiles_against_an_https_attestor(https_attestor: LiveAttestor, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    live = https_attestor
    for name in ("EDGEPROOF_SERVER", "EDGEPROOF_TOKEN", "EDGEPROOF_PROFILE",
                 "EDGEPROOF_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    write_config(tmp_path / "auditor.token", live.token("auditor"))
    write_config(tmp_path / "cli.toml", f"""
[profiles.lab]
server = "{live.url}"
token_file = "auditor.token"
ca_bundle = "{live.ca_bundle}"
[profiles.unverified]
server = "{live.url}"
token_file = "auditor.token"
""")
    monkeypatch.setenv("EDGEPROOF_CLI_CONFIG", str(tmp_path / "cli.toml"))
    runner = CliRunner()

    listed = runner.invoke(app, ["--profile", "lab", "device", "list", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    # The server's certificate is from the attestor's own CA: unknown to the system store.
    unverified = runner.invoke(app, ["--profile", "unverified", "device", "list"])
    assert unverified.exit_code == 3 and unverified.stderr.startswith("error: client.tls:")
    bundled = runner.invoke(app, ["--profile", "unverified", "--ca-bundle",
                                  str(live.ca_bundle), "device", "list", "-o", "json"])
    assert bundled.exit_code == 0, bundled.output
    # The environment's token beats the profile's; the command line's beats both.
    monkeypatch.setenv("EDGEPROOF_TOKEN", "not-a-token")
    env_wins = runner.invoke(app, ["--profile", "lab", "device", "list"])
    assert env_wins.exit_code == 1 and "auth.invalid" in env_wins.stderr
    flag_wins = runner.invoke(app, ["--profile", "lab", "--token", live.token("admin"),
                                    "device", "revoke", "nope", "--reason", "x"])
    assert flag_wins.exit_code == 1 and "device.unknown" in flag_wins.stderr  # admin: 404
    monkeypatch.delenv("EDGEPROOF_TOKEN")
    as_auditor = runner.invoke(app, ["--profile", "lab", "device", "revoke", "nope",
                                     "--reason", "x"])
    assert as_auditor.exit_code == 1 and "auth.forbidden" in as_auditor.stderr
    missing = runner.invoke(app, ["--ca-bundle", str(tmp_path / "absent.pem"), "--server",
                                  live.url, "device", "list"])
    assert missing.exit_code == 2 and "client.ca_bundle" in missing.stderr


def test_a_token_file_others_may_read_is_refused(config: dict[str, str],
                                                 tmp_path: Path) -> None:
    (tmp_path / "b.token").chmod(0o644)
    with pytest.raises(ClientError) as refused:
        resolve(server=None, token=None, ca_bundle=None, profile="b", env=config)
    assert refused.value.code == "client.config" and "chmod 600" in refused.value.detail
