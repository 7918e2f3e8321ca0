"""`attestor eventlog show|replay`, `attestor ima replay`, `attestor policy learn` from files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.sim.boot import boot_events, encode_log
from attestor.cli import app

pytestmark = pytest.mark.corpus


def test_eventlog_replay_reproduces_the_manifest(corpus: Path) -> None:
    manifest = json.loads((corpus / "eventlogs" / "manifest.json").read_text())
    for name, meta in manifest.items():
        result = CliRunner().invoke(app, ["eventlog", "replay",
                                          str(corpus / "eventlogs" / name), "--json"])
        assert result.exit_code == 0, result.output
        replayed = json.loads(result.stdout)
        for bank, pcrs in meta["expected_pcrs"].items():
            for index, value in pcrs.items():
                assert replayed[bank][index] == value


def test_eventlog_replay_with_the_exit_boot_services_quirk(corpus: Path) -> None:
    path = str(corpus / "eventlogs-edge" / "ebs_event_missing_eventlog")
    result = CliRunner().invoke(app, ["eventlog", "replay", path, "--json",
                                      "--exit-boot-services-quirk"])
    assert json.loads(result.stdout)["sha1"]["5"] == "31245808d6d35849bc394f6343f2b3ff908ed5e3"


def test_eventlog_show(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["eventlog", "show", "--json",
                                      str(corpus / "eventlogs" / "ubuntu-1804-amd-sev.bin")])
    report = json.loads(result.stdout)
    assert report["summary"]["kernel"] == "/boot/vmlinuz-5.4.0-1046-gcp"
    same = CliRunner().invoke(app, ["eventlog", "show", "-o", "json",
                                    str(corpus / "eventlogs" / "ubuntu-1804-amd-sev.bin")])
    assert json.loads(same.stdout) == report
    assert report["events"][0]["detail"] == "Spec ID Event03"
    text = CliRunner().invoke(app, ["eventlog", "show", str(corpus / "eventlogs" /
                                                           "rhel8-uefi.bin")])
    assert text.exit_code == 0 and "EV_EFI_BOOT_SERVICES_APPLICATION" in text.stdout


def test_truncated_log_exits_1_with_its_code(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["eventlog", "replay", "--json", str(
        corpus / "eventlogs-edge" / "short_no_action_eventlog")])
    assert result.exit_code == 1 and "eventlog.malformed" in result.output


def test_ima_replay(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["ima", "replay", "--ascii", "--bank", "sha1", "--json", str(
        corpus / "ima" / "rust-keylime-ascii_runtime_measurements")])
    report = json.loads(result.stdout)
    assert report["entries"] == 826 and report["template_hash_failures"] == 0
    assert len(report["pcrs"]["10"]) == 40
    invalidated = CliRunner().invoke(app, ["ima", "replay", "--json", str(
        corpus / "ima" / "sml-ima-sha1-invalidated.bin")])
    assert json.loads(invalidated.stdout)["violations"] == 1


def test_policy_learned_from_files(tmp_path: Path, corpus: Path) -> None:
    data = tmp_path / "attestor"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--dev", "-d", str(data)]).exit_code == 0
    log = tmp_path / "good.log"
    log.write_bytes(encode_log(boot_events(), ("sha256",)))
    result = runner.invoke(app, [
        "policy", "learn", "--dev", "-d", str(data), "--class", "gateway", "--eventlog", str(log),
        "--ima", str(corpus / "ima" / "rust-keylime-ascii_runtime_measurements"), "--ascii"])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["policy", "show", "--dev", "-d", str(data), "--class", "gateway"])
    document = json.loads(shown.stdout)["document"]  # not a terminal: JSON
    assert document["boot"]["secure_boot"] is True
    assert 10 in document["pcrs"] and len(document["ima"]["allowlist"]) > 500


def test_eventlog_show_prints_a_hostile_log_as_text(tmp_path: Path) -> None:
    """Event data comes from the device: console markup in it is printed as it is, never
    interpreted (an unbalanced `[/]` used to crash the command, `[red]` to restyle it)."""
    from agent.sim.boot import SimEvent
    from identity.eventlog import events as ev

    hostile = b"grub_cmd: linux [/] [bold red]VALID[/] [link=http://x]y[/link]\x00"
    log = tmp_path / "hostile.bin"
    log.write_bytes(encode_log([*boot_events(), SimEvent(8, ev.EV_IPL, hostile, hostile)],
                               ("sha256",)))
    result = CliRunner().invoke(app, ["eventlog", "show", str(log)])
    assert result.exit_code == 0, result.output
    assert "[/] [bold red]VALID[/] [link=http://x]y[/link]" in result.stdout
