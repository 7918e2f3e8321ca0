"""Agent configuration and TCTI strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config
from agent.tpm.tcti import TctiError, parse_tcti


@pytest.mark.parametrize(("tcti", "parsed"), [
    ("swtpm:host=127.0.0.1,port=2321", ("swtpm", "host=127.0.0.1,port=2321")),
    ("device:/dev/tpmrm0", ("device", "/dev/tpmrm0")),
    ("device", ("device", "/dev/tpmrm0")),
    ("mssim:host=localhost,port=2321", ("mssim", "host=localhost,port=2321")),
    ("tabrmd", ("tabrmd", "")),
])
def test_tcti_strings(tcti: str, parsed: tuple[str, str]) -> None:
    assert parse_tcti(tcti) == parsed


def test_unknown_tcti_is_refused() -> None:
    with pytest.raises(TctiError, match="unknown TCTI"):
        parse_tcti("usb:/dev/foo")


@pytest.mark.parametrize(("bad", "named"), [
    ({"tcti": "nope:x"}, "tcti"), ({"ak_handle": 0x01000000}, "ak_handle"),
    ({"attestor_url": "ftp://x"}, "attestor_url"), ({"renew_fraction": 1.5}, "renew_fraction"),
    ({"key_mode": 0o644}, "key_mode"), ({"cert_mode": 0o1777}, "cert_mode"),
    ({"reload_signal": "SIGFOO"}, "reload_signal"), ({"hook_command": []}, "hook_command"),
    ({"hook_timeout_seconds": 0}, "hook_timeout_seconds"),
    ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
    ({"backoff_base_seconds": 10, "backoff_cap_seconds": 5}, "backoff_cap_seconds"),
    ({"no_such_setting": 1}, "no_such_setting"),
])
def test_invalid_values_are_refused_by_name(tmp_path: Path, bad: dict[str, object],
                                            named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(state_dir=tmp_path, **bad)


@pytest.mark.parametrize(("text", "named"), [
    ("key_mode = 0o644\n", "key_mode"),
    ("tcti = 'usb:1'\n", "tcti"),
    ("surprise = true\n", "surprise"),
    ("attestor_url = \n", "agent.toml"),  # not TOML at all
])
def test_invalid_file_values_name_the_file(tmp_path: Path, text: str, named: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_CONFIG", raising=False)
    (tmp_path / "agent.toml").write_text(text)
    with pytest.raises(ConfigError, match=named) as raised:
        load_config(state_dir=tmp_path)
    assert "agent.toml" in str(raised.value)


def test_env_overrides_the_file_and_bad_env_is_named(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "agent.toml").write_text('tcti = "swtpm:port=1"\nrenew_fraction = 0.5\n')
    monkeypatch.setenv("EDGE_AGENT_RENEW_FRACTION", "0.75")
    assert load_config(state_dir=tmp_path).renew_fraction == 0.75
    monkeypatch.setenv("EDGE_AGENT_RENEW_FRACTION", "most")
    with pytest.raises(ConfigError) as raised:
        load_config(state_dir=tmp_path)
    assert str(raised.value) == ("invalid agent settings: EDGE_AGENT_RENEW_FRACTION "
                                 "(environment) = 'most': must be a number")
    monkeypatch.setenv("EDGE_AGENT_RENEW_FRACTION", "0.99")
    with pytest.raises(ConfigError) as raised:
        load_config(state_dir=tmp_path)
    assert str(raised.value) == ("invalid agent settings: EDGE_AGENT_RENEW_FRACTION "
                                 "(environment) = 0.99: must be in (0.1, 0.95)")


def test_a_bad_file_value_names_the_key_and_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_CONFIG", raising=False)
    monkeypatch.delenv("EDGE_AGENT_KEY_MODE", raising=False)
    config = tmp_path / "agent.toml"
    config.write_text("key_mode = 0o644\nrenew_fracton = 0.5\n")
    with pytest.raises(ConfigError) as raised:
        load_config(state_dir=tmp_path)
    assert str(raised.value) == (f"invalid agent settings: renew_fracton in {config}: "
                                 "unknown setting (did you mean 'renew_fraction'?)")
    config.write_text("key_mode = 0o644\n")
    with pytest.raises(ConfigError) as raised:
        load_config(state_dir=tmp_path)
    assert str(raised.value) == (
        f"invalid agent settings: key_mode in {config} = 420: lets others read or anyone "
        "write private keys; use 0o600 (or 0o640 for a group)")
    with pytest.raises(ConfigError, match=r"^invalid agent settings: ak_handle \(command "
                       r"line\) = 16777216: is not a persistent handle"):
        load_config(state_dir=tmp_path, key_mode=0o600, ak_handle=0x01000000)


def test_config_file_may_live_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc" / "agent.toml"
    etc.parent.mkdir()
    etc.write_text('hook_command = ["/bin/true"]\nreload_signal = "SIGUSR1"\n')
    monkeypatch.setenv("EDGE_AGENT_CONFIG", str(etc))
    config = load_config(state_dir=tmp_path / "state")
    assert (config.hook_command, config.reload_signal) == (["/bin/true"], "SIGUSR1")
    config.device_id = "d1"
    config.save()  # provisioning keeps what the operator wrote
    again = load_config(state_dir=tmp_path / "state")
    assert (again.device_id, again.hook_command) == ("d1", ["/bin/true"])


def test_saved_configuration_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_TCTI", raising=False)
    config = AgentConfig(state_dir=tmp_path, attestor_url="https://a.example",
                         tcti="swtpm:host=127.0.0.1,port=1", device_id="d1", serial='S"1')
    config.save()
    loaded = load_config(state_dir=tmp_path)
    assert (loaded.device_id, loaded.tcti, loaded.serial) == ("d1", config.tcti, 'S"1')
    assert (tmp_path / "agent.toml").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("EDGE_AGENT_ATTESTOR_URL", "https://b.example")
    assert load_config(state_dir=tmp_path).attestor_url == "https://b.example"
