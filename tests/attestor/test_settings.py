"""Settings: precedence, and refusing weak CA passphrases outside dev mode."""

from __future__ import annotations

import os
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


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGEPROOF_"):
            monkeypatch.delenv(name)


def _refusal(data_dir: Path, **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(data_dir, **overrides)
    message = str(raised.value)
    assert message.startswith("invalid settings: ")
    return message.removeprefix("invalid settings: ").split("; ")


@pytest.mark.usefixtures("clean_env")
def test_a_bad_environment_value_names_the_variable_and_the_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPROOF_NONCE_TTL_SECONDS", "1")
    monkeypatch.setenv("EDGEPROOF_ISSUANCE__RECONCILE_SECONDS", "often")
    assert sorted(_refusal(tmp_path)) == [
        "EDGEPROOF_ISSUANCE__RECONCILE_SECONDS (environment) = 'often': must be a valid "
        "number, unable to parse string as a number (allowed: a number of more than 0 "
        "and at most 3600)",
        "EDGEPROOF_NONCE_TTL_SECONDS (environment) = '1': must be greater than or equal to "
        "10 (allowed: an integer from 10 to 600)"]


@pytest.mark.usefixtures("clean_env")
def test_a_bad_file_value_names_the_section_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "attestor.toml"
    config.write_text('[issuance]\ncert_ttl_seconds = 30\n[secrets]\nbackend = "valut"\n')
    assert _refusal(tmp_path) == [
        f"[issuance] cert_ttl_seconds in {config} = 30: must be greater than or equal to 60 "
        "(allowed: an integer of at least 60)",
        f"[secrets] backend in {config} = 'valut': must be 'embedded' or 'vault'"]


@pytest.mark.usefixtures("clean_env")
def test_the_environment_is_named_over_the_file_it_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "attestor.toml").write_text("port = 9000\n")
    monkeypatch.setenv("EDGEPROOF_PORT", "eighty")
    (problem,) = _refusal(tmp_path)
    assert problem.startswith("EDGEPROOF_PORT (environment) = 'eighty': must be a valid "
                              "integer")
    assert problem.endswith("(allowed: an integer from 1 to 65535)")


@pytest.mark.usefixtures("clean_env")
def test_unknown_keys_are_reported_as_unknown(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "attestor.toml"
    config.write_text("prot = 9000\n[rate_limits]\nenrolment_per_minute = 5\n")
    monkeypatch.setenv("EDGEPROOF_ISSUANCE__TTL", "60")
    assert sorted(_refusal(tmp_path)) == [
        "EDGEPROOF_ISSUANCE__TTL (environment) = '60': unknown setting",
        f"[rate_limits] enrolment_per_minute in {config} = 5: unknown setting (did you mean "
        "'enrollment_per_minute'?)",
        f"prot in {config} = 9000: unknown setting (did you mean 'port'?)"]


@pytest.mark.usefixtures("clean_env")
def test_secrets_are_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "attestor.toml").write_text(
        '[[webhooks]]\nurl = "https://hooks.example"\nsecret = "hunter2-short"\n'
        "[ca]\npassphrase = 123456789012345\n")
    monkeypatch.setenv("EDGEPROOF_VAULT__TOKEN", '["tok-s3cr3t-value"]')
    problems = _refusal(tmp_path)
    text = "; ".join(problems)
    for secret in ("hunter2", "123456789012345", "tok-s3cr3t"):
        assert secret not in text
    assert any(p.startswith("[[webhooks]] #1 secret in ") and " = <redacted>: " in p
               for p in problems), problems
    assert any(p.startswith("[ca] passphrase in ") and " = <redacted>: " in p
               for p in problems), problems
    assert "[vault] address (from environment EDGEPROOF_VAULT__TOKEN): required" in problems


@pytest.mark.usefixtures("clean_env")
def test_a_check_across_a_section_names_its_sources(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "attestor.toml"
    config.write_text('[auth]\noidc_audience = "edgeproof"\n')
    monkeypatch.setenv("EDGEPROOF_AUTH__OIDC_ISSUER", "https://login.example")
    assert _refusal(tmp_path) == [
        f"[auth] (from environment EDGEPROOF_AUTH__OIDC_ISSUER and file {config}): OIDC "
        "needs oidc_issuer, oidc_audience and oidc_jwks_url together"]


@pytest.mark.usefixtures("clean_env")
def test_the_cli_says_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from attestor.cli import app

    monkeypatch.setenv("EDGEPROOF_PORT", "0")
    result = CliRunner().invoke(app, ["device", "list", "-d", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: invalid settings: EDGEPROOF_PORT (environment) = '0': must be greater than "
        "or equal to 1 (allowed: an integer from 1 to 65535)"]
