"""`attestor --server URL --token T ...`: the operator commands against a live attestor
over real HTTP, with swtpm devices: JSON and table output, roles enforced by the server
(an auditor's admin action refused with its code and a non-zero exit), the policy round
trip (`policy show -o json` fed back to `policy set`), trust store and policy learning
over the API, audit query/export/verify, and the same answers in local mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agent.attest import attest_once
from agent.sim.swtpm import Manufacturer
from attestor.cli import app
from attestor.client import OperatorClient
from attestor.models.operator import AuditPublic, Page
from identity.messages import DevicePublic, decode
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def cli(attestor: LiveAttestor, role: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--server", attestor.url, "--token",
                                    attestor.token(role), *args], input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result.stdout


def attested(attestor: LiveAttestor, device: Device) -> str:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    assert config.device_id is not None
    return config.device_id


def test_an_auditor_reads_the_fleet_and_the_audit_log(attestor: LiveAttestor, device: Device,
                                                      tmp_path: Path) -> None:
    device_id = attested(attestor, device)
    # The command as an auditor types it, in its own process.
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "attestor.cli", "--server", attestor.url, "--token",
         attestor.token("auditor"), "device", "list", "-o", "json"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "EDGEPROOF_CLI_CONFIG": str(tmp_path / "none.toml")})
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(d["id"], d["state"], d["last_verdict"]) for d in listed] == [
        (device_id, "active", "pass")]

    shown = decode(DevicePublic, ok(cli(attestor, "auditor", "device", "show", device_id,
                                        "-o", "json")))
    assert shown.id == device_id and shown.current_certificate is not None
    table = ok(cli(attestor, "auditor", "device", "show", device_id, "-o", "table"))
    assert device_id in table and shown.current_certificate.serial in table
    history = json.loads(ok(cli(attestor, "auditor", "device", "history", device_id)))
    assert [a["verdict"] for a in history] == ["pass", "fail"]  # newest first
    assert history[1]["reasons"] == ["policy.no_reference"]

    certs = json.loads(ok(cli(attestor, "auditor", "certificates", "list", "--device",
                              device_id, "-o", "json")))
    assert shown.current_certificate.serial in {c["serial"] for c in certs}

    entries = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--device",
                                device_id, "-o", "json")))
    assert entries and {e["device_id"] for e in entries} == {device_id}
    every = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--limit", "100000")))
    export = tmp_path / "audit.jsonl"
    ok(cli(attestor, "auditor", "audit", "export", "--out", str(export)))
    records = [json.loads(line) for line in export.read_bytes().splitlines()]
    assert "export" in records[-1]  # the signed last line (docs/audit.md)
    lines = [r for r in records if "checkpoint" not in r and "export" not in r]
    assert [line["seq"] for line in lines] == [e["seq"] for e in every]
    assert [line["hash"] for line in lines] == [e["hash"] for e in every]
    key = tmp_path / "checkpoint-pub.pem"
    ok(cli(attestor, "auditor", "audit", "key", "--out", str(key)))
    offline = subprocess.run(  # noqa: S603  (no server, no database, no passphrase)
        [sys.executable, "-m", "attestor.cli", "audit", "verify", "--file", str(export),
         "--key", str(key)], capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "EDGEPROOF_CLI_CONFIG": str(tmp_path / "none.toml")})
    assert offline.returncode == 0, offline.stdout + offline.stderr
    verified = cli(attestor, "auditor", "audit", "verify", "--json")
    assert json.loads(ok(verified))["ok"] is True

    with OperatorClient(attestor.url, attestor.token("auditor")) as api:  # the typed client
        page = api.audit(device_id=device_id, limit=1)
        assert isinstance(page, Page) and isinstance(page.items[0], AuditPublic)
        assert isinstance(api.device(device_id), DevicePublic)


def test_an_auditor_is_refused_admin_actions(attestor: LiveAttestor, device: Device,
                                             tmp_path: Path) -> None:
    device_id = attested(attestor, device)
    refused = cli(attestor, "auditor", "device", "revoke", device_id, "--reason", "test")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: auth.forbidden: role auditor may not do this")
    assert "(HTTP 403)" in refused.stderr and len(refused.stderr.splitlines()) == 1
    policy = tmp_path / "policy.json"
    policy.write_text(ok(cli(attestor, "auditor", "policy", "show", "-o", "json")))
    serial = json.loads(ok(cli(attestor, "auditor", "device", "show", device_id))
                        )["current_certificate"]["serial"]
    for attempt in (["device", "quarantine", device_id, "--reason", "x"],
                    ["certificates", "revoke", serial],
                    ["policy", "set", str(policy)],
                    ["policy", "learn", "--device", device_id],
                    ["trust", "add", str(attestor.ca_bundle)]):
        result = cli(attestor, "auditor", *attempt)
        assert (result.exit_code, result.stderr.split(":")[:2]) == (
            1, ["error", " auth.forbidden"]), attempt
    assert json.loads(ok(cli(attestor, "auditor", "device", "show", device_id))
                      )["state"] == "active"

    quarantined = json.loads(ok(cli(attestor, "admin", "device", "quarantine", device_id,
                                    "--reason", "under investigation", "-o", "json")))
    assert (quarantined["state"], quarantined["state_reason"]) == (
        "quarantined", "under investigation")
    again = cli(attestor, "admin", "device", "quarantine", device_id, "--reason", "x")
    assert (again.exit_code, again.stderr.split(":")[1]) == (1, " request.conflict")
    ok(cli(attestor, "admin", "device", "release", device_id, "--reason", "cleared"))
    ok(cli(attestor, "admin", "certificates", "revoke", serial, "--reason", "superseded"))
    revoked = json.loads(ok(cli(attestor, "admin", "device", "revoke", device_id,
                                "--reason", "stolen", "-o", "json")))
    assert revoked["state"] == "revoked"
    trail = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--device", device_id,
                              "--actor", "token:test-admin")))
    assert [e["action"] for e in trail if e["action"].startswith("device.")] == [
        "device.quarantine", "device.release", "device.revoke"]
    certs = json.loads(ok(cli(attestor, "auditor", "certificates", "list", "--device",
                              device_id, "--status", "revoked")))
    assert serial in {c["serial"] for c in certs}


def test_policy_round_trip_gate_rules_and_learning(attestor: LiveAttestor, device: Device,
                                                   tmp_path: Path) -> None:
    device_id = attested(attestor, device)
    shown = json.loads(ok(cli(attestor, "auditor", "policy", "show", "-o", "json")))
    assert (shown["device_class"], shown["version"]) == ("default", 1)
    shown["document"]["gates"] = [{"action": "update:firmware/*", "max_age_seconds": 900}]
    edited = tmp_path / "policy.json"
    edited.write_text(json.dumps(shown))
    stored = json.loads(ok(cli(attestor, "admin", "policy", "set", str(edited), "-o",
                               "json")))
    assert (stored["device_class"], stored["version"]) == ("default", 2)
    rules = json.loads(ok(cli(attestor, "auditor", "gate", "rules", "-o", "json")))
    assert [(r["action"], r["max_age_seconds"]) for r in rules] == [("update:firmware/*", 900)]

    # What show prints, set takes back unchanged (here from stdin).
    current = ok(cli(attestor, "auditor", "policy", "show", "-o", "json"))
    again = json.loads(ok(cli(attestor, "admin", "policy", "set", "-", "-o", "json",
                              stdin=current)))
    assert again["version"] == 3
    assert again["document"] == json.loads(current)["document"]
    # The local mode answers with the same model, on the attestor's data directory.
    local = CliRunner().invoke(app, ["policy", "show", "-o", "json", "-d",
                                     str(attestor.settings.data_dir), "--dev"])
    assert json.loads(ok(local)) == json.loads(ok(cli(attestor, "auditor", "policy",
                                                      "show")))

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"pcrs": [99]}))
    bad = cli(attestor, "admin", "policy", "set", str(broken))
    assert bad.exit_code == 1 and "input.malformed" in bad.stderr

    learned = json.loads(ok(cli(attestor, "admin", "policy", "learn", "--device", device_id,
                                "-o", "json")))
    assert learned["policy"]["version"] == 4 and learned["attestation_id"] is not None
    assert learned["policy"]["document"]["golden"]
    trail = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--action",
                              "policy.learn", "--actor", "token:test-admin")))
    assert [(e["actor"], e["device_id"]) for e in trail] == [("token:test-admin", device_id)]
    none = cli(attestor, "auditor", "policy", "show", "--class", "nothing-here")
    assert (none.exit_code, none.stderr.split(":")[1]) == (1, " request.not_found")


def test_trust_store_over_the_api(attestor: LiveAttestor, manufacturer: Manufacturer,
                                  rogue_manufacturer: Manufacturer, tmp_path: Path) -> None:
    listed = json.loads(ok(cli(attestor, "auditor", "trust", "list", "-o", "json")))
    assert sorted(c["kind"] for c in listed["certificates"]) == ["intermediate", "root"]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    added = cli(attestor, "admin", "trust", "add", str(rogue_manufacturer.root_certificate),
                str(rogue_manufacturer.intermediate_certificate), str(junk), "-o", "json")
    assert added.exit_code == 1  # one file refused
    result = json.loads(added.stdout)
    assert len(result["imported"]) == 2
    assert [r["source"] for r in result["refused"]] == [str(junk)]
    now_listed = json.loads(ok(cli(attestor, "auditor", "trust", "list", "-o", "json")))
    assert len(now_listed["certificates"]) == 4
    entries = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--action",
                                "trust.add")))
    assert [(e["actor"], len(e["details"]["imported"])) for e in entries] == [
        ("token:test-admin", 2)]
    table = ok(cli(attestor, "auditor", "trust", "list", "-o", "table"))
    assert "intermediate" in table and "root" in table
    # A store this attestor cannot write (as a mounted ConfigMap): refused as a conflict
    # naming the directory, not a server error.
    store = attestor.settings.trust_dir
    store.rename(store.with_name("moved"))
    store.write_text("not a directory")
    blocked = cli(attestor, "admin", "trust", "add", str(manufacturer.root_certificate))
    assert blocked.exit_code == 1 and blocked.stderr.startswith("error: request.conflict: ")
    assert str(store) in blocked.stderr and "(HTTP 409)" in blocked.stderr


def test_connection_failures_are_one_line_with_their_code(attestor: LiveAttestor) -> None:
    runner = CliRunner()
    unreachable = runner.invoke(app, ["--server", "http://127.0.0.1:9", "device", "list"])
    assert unreachable.exit_code == 3
    assert unreachable.stderr.startswith("error: client.unreachable: http://127.0.0.1:9")
    clear = runner.invoke(app, ["--server", "http://attestor.example", "--token", "t",
                                "device", "list"])
    assert clear.exit_code == 2 and "client.insecure" in clear.stderr
    local_only = runner.invoke(app, ["--server", attestor.url, "token", "create", "--role",
                                     "admin"])
    assert local_only.exit_code == 2 and "never against a server" in local_only.stderr
    no_server = runner.invoke(app, ["certificates", "list"])
    assert no_server.exit_code == 2 and "works against a server" in no_server.stderr
    anonymous = runner.invoke(app, ["--server", attestor.url, "device", "list"])
    assert anonymous.exit_code == 1 and anonymous.stderr.startswith(
        "error: auth.missing:")
    forged = runner.invoke(app, ["--server", attestor.url, "--token", "x.y.z", "audit",
                                 "query"])
    assert forged.exit_code == 1 and "auth.invalid" in forged.stderr


def test_learning_from_log_files_over_the_api(attestor: LiveAttestor, device: Device) -> None:
    """The logs travel in the request body: a boot policy and an IMA allowlist learned
    for a class no device is in yet."""
    learned = json.loads(ok(cli(attestor, "admin", "policy", "learn", "--class", "gateway",
                                "--eventlog", str(device.log), "--ima", str(device.ima),
                                "-o", "json")))
    document = learned["policy"]["document"]
    assert learned["attestation_id"] is None and learned["policy"]["version"] == 1
    assert document["boot"] is not None and document["ima"]["allowlist"]
    assert 10 in document["pcrs"]
    nothing = cli(attestor, "admin", "policy", "learn", "--class", "gateway")
    assert nothing.exit_code == 1 and "input.malformed" in nothing.stderr
    garbage = device.root / "garbage.bin"
    garbage.write_bytes(b"\x00\x01not an event log")
    refused = cli(attestor, "admin", "policy", "learn", "--class", "gateway", "--eventlog",
                  str(garbage))
    assert refused.exit_code == 1 and "eventlog.malformed" in refused.stderr


def test_local_mode_prints_the_same_json(attestor: LiveAttestor, device: Device) -> None:
    """Without --server the commands read the data directory and print the same models."""
    device_id = attested(attestor, device)
    ok(cli(attestor, "admin", "policy", "set", "-", stdin=json.dumps(
        {"device_class": "default", "version": 0, "document": {
            **json.loads(ok(cli(attestor, "auditor", "policy", "show")))["document"],
            "gates": [{"action": "workload:*"}]}})))
    local_args = ["-d", str(attestor.settings.data_dir), "--dev", "-o", "json"]
    for command in (["device", "list"], ["device", "show", device_id],
                    ["device", "history", device_id], ["gate", "rules"], ["trust", "list"]):
        remote = json.loads(ok(cli(attestor, "auditor", *command, "-o", "json")))
        local = json.loads(ok(CliRunner().invoke(app, [*command, *local_args])))
        assert local == remote, command
    with OperatorClient(attestor.url, attestor.token("admin")) as api:
        dry = api.dry_run("default", device_id)
        assert (dry.verdict, dry.attestation_id) == ("pass", api.attestations(
            device_id).items[0].id)
        decision = api.gate_decision(device_id, "workload:payments")
        assert (decision.decision, decision.reasons) == ("allow", [])
