"""Settings: precedence, and refusing weak CA passphrases outside dev mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestor.settings import DEV_PASSPHRASE, ConfigError, load_settings


def test_missing_passphrase_is_refused_outside_dev(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEPROOF_CA__PASSPHRASE", raising=False)
    with pytest.raises(ConfigError, match="no CA passphrase"):
        load_settings(tmp_path).ca_passphrase()
    assert load_settings(tmp_path, dev=True).ca_passphrase() == DEV_PASSPHRASE.encode()


@pytest.mark.parametrize("weak", ["changeme", "short", DEV_PASSPHRASE])
def test_default_or_short_passphrase_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                weak: str) -> None:
    monkeypatch.setenv("EDGEPROOF_CA__PASSPHRASE", weak)
    with pytest.raises(ConfigError, match="default or shorter"):
        load_settings(tmp_path).ca_passphrase()


def test_passphrase_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEPROOF_CA__PASSPHRASE", raising=False)
    secret = tmp_path / "pass"
    secret.write_text("a long and private passphrase\n")
    (tmp_path / "attestor.toml").write_text(f'[ca]\npassphrase_file = "{secret}"\n')
    assert load_settings(tmp_path).ca_passphrase() == b"a long and private passphrase"


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "attestor.toml").write_text('port = 9000\ntrust_domain = "from.file"\n'
                                            '[issuance]\ncert_ttl_seconds = 120\n')
    assert load_settings(tmp_path).port == 9000
    monkeypatch.setenv("EDGEPROOF_PORT", "9100")
    monkeypatch.setenv("EDGEPROOF_ISSUANCE__CERT_TTL_SECONDS", "300")
    settings = load_settings(tmp_path)
    assert (settings.port, settings.trust_domain, settings.issuance.cert_ttl_seconds) == (
        9100, "from.file", 300)
    assert load_settings(tmp_path, port=9200).port == 9200


@pytest.mark.parametrize("toml", ['port = "eighty"', "nonce_ttl_seconds = 1",
                                  "unknown_setting = 1", "[issuance]\ncert_ttl_seconds = 30"])
def test_invalid_values_are_refused(tmp_path: Path, toml: str) -> None:
    (tmp_path / "attestor.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError):
        load_settings(tmp_path)


def test_config_file_named_by_edgeproof_config(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A ConfigMap mounted outside the (read-only) data directory: EDGEPROOF_CONFIG names
    it, and <data-dir>/attestor.toml is then not read at all."""
    data_dir, mounted = tmp_path / "data", tmp_path / "config" / "attestor.toml"
    data_dir.mkdir()
    mounted.parent.mkdir()
    (data_dir / "attestor.toml").write_text('trust_domain = "from.data.dir"\nport = 9000\n')
    mounted.write_text('trust_domain = "from.configmap"\n')
    monkeypatch.setenv("EDGEPROOF_CONFIG", str(mounted))
    settings = load_settings(data_dir)
    assert (settings.trust_domain, settings.port) == ("from.configmap", 8080)
    monkeypatch.setenv("EDGEPROOF_TRUST_DOMAIN", "from.env")
    assert load_settings(data_dir).trust_domain == "from.env"


def test_edgeproof_config_naming_no_file_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: a named but missing file must not mean "start on defaults"."""
    monkeypatch.setenv("EDGEPROOF_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="EDGEPROOF_CONFIG=.*absent.toml names no file"):
        load_settings(tmp_path)


def test_edgeproof_config_is_validated_like_the_data_dir_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mounted = tmp_path / "attestor.toml"
    mounted.write_text("unknown_setting = 1\n")
    monkeypatch.setenv("EDGEPROOF_CONFIG", str(mounted))
    with pytest.raises(ConfigError, match="unknown_setting"):
        load_settings(tmp_path / "data")
