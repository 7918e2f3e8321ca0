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


@pytest.mark.parametrize("bad", [{"tcti": "nope:x"}, {"ak_handle": 0x01000000},
                                 {"attestor_url": "ftp://x"}, {"renew_fraction": 1.5}])
def test_invalid_values_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(state_dir=tmp_path, **bad)


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
