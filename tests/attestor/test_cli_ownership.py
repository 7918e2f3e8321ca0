"""`attestor ownership …` against a live attestor over real HTTP (and the same JSON on
the data directory): an admin imports an OEM's roots and signed batch manifest of a
swtpm device made on the factory line, and a CSV; an auditor lists them (-o json|table)
and is refused the changes with the server's code; revoke/release round trip; the audit
log names the token's subject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agent.oem.provision import batch_manifest
from agent.sim.swtpm import Manufacturer
from attestor.cli import app
from attestor.client import OperatorClient
from attestor.client.errors import ApiError
from tests.e2e.onboarding import factory, now, oem
from tests.harness import Device, LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # runs on SQLite and on PostgreSQL


def cli(attestor: LiveAttestor, role: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--server", attestor.url, "--token",
                                    attestor.token(role), *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result.stdout


def test_ownership_over_the_api(attestor: LiveAttestor, device: Device,
                                manufacturer: Manufacturer, tmp_path: Path) -> None:
    authority = oem(tmp_path / "oem")
    factory(device, manufacturer, authority, tmp_path / "batch")
    manifest = tmp_path / "batch.json"
    manifest.write_bytes(batch_manifest(authority, tmp_path / "batch", now()))
    roots = [str(authority.directory / "root.pem"), str(authority.directory / "issuing.pem")]
    csv = tmp_path / "serials.csv"
    csv.write_text("serial\nSN-CSV-1\nSN-CSV-2\n")

    for attempt in (["ownership", "import-roots", *roots],
                    ["ownership", "import-manifest", str(manifest)],
                    ["ownership", "import-csv", str(csv), "--root", "0" * 64]):
        refused = cli(attestor, "auditor", *attempt)
        assert (refused.exit_code, refused.stderr.split(":")[:2]) == (
            1, ["error", " auth.forbidden"]), attempt

    added = json.loads(ok(cli(attestor, "admin", "ownership", "import-roots", *roots,
                              "-o", "json")))
    assert sorted(r["is_root"] for r in added) == [False, True]
    assert {r["imported_by"] for r in added} == {"token:test-admin"}
    listed = json.loads(ok(cli(attestor, "auditor", "ownership", "roots", "-o", "json")))
    assert {r["sha256"] for r in listed} == {r["sha256"] for r in added}

    root_sha = next(r["sha256"] for r in added if r["is_root"])
    issuing_sha = next(r["sha256"] for r in added if not r["is_root"])
    # a CSV names the root its serials are bound to: an intermediate, or a root never
    # imported, is refused (typed, audited) and owns nothing
    for wrong in (issuing_sha, "e" * 64):
        refused = cli(attestor, "admin", "ownership", "import-csv", str(csv), "--root", wrong)
        assert refused.exit_code == 1 and "ownership.root_unknown" in refused.stderr
    imported = ok(cli(attestor, "admin", "ownership", "import-manifest", str(manifest),
                      "--class", "cameras"))
    assert imported.strip() == "1 created, 0 updated"
    csv_imported = json.loads(ok(cli(attestor, "admin", "ownership", "import-csv", str(csv),
                                     "--root", root_sha.upper(), "-o", "json")))
    assert csv_imported == {"created": 2, "updated": 0, "already_onboarded": [],
                            "kept_revoked": [], "kept_conflicting": []}

    records = json.loads(ok(cli(attestor, "auditor", "ownership", "list", "-o", "json")))
    assert [(r["serial"], r["device_class"], r["state"], r["root_sha256"])
            for r in records] == sorted([
        (device.serial, "cameras", "owned", root_sha), ("SN-CSV-1", "default", "owned", root_sha),
        ("SN-CSV-2", "default", "owned", root_sha)])
    table = ok(cli(attestor, "auditor", "ownership", "list", "--state", "owned",
                   "-o", "table"))
    assert device.serial in table and "cameras" in table
    assert json.loads(ok(cli(attestor, "auditor", "ownership", "list", "--limit", "1",
                             "-o", "json")))[0]["serial"] == records[0]["serial"]

    refused = cli(attestor, "auditor", "ownership", "revoke", "SN-CSV-1")
    assert (refused.exit_code, refused.stderr.split(":")[1]) == (1, " auth.forbidden")
    revoked = json.loads(ok(cli(attestor, "admin", "ownership", "revoke", "SN-CSV-1",
                                "-o", "json")))
    assert revoked["state"] == "revoked"
    assert ok(cli(attestor, "admin", "ownership", "release", "SN-CSV-1")).strip() == (
        "SN-CSV-1: owned again; it may onboard once more")
    unknown = cli(attestor, "admin", "ownership", "revoke", "SN-NOBODY")
    assert unknown.exit_code == 1 and "(HTTP 404)" in unknown.stderr

    trail = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--actor",
                              "token:test-admin", "-o", "json")))
    assert sorted((e["action"], e["outcome"]) for e in trail
                  if e["action"].startswith("ownership.")) == [
        ("ownership.import", "refused"), ("ownership.import", "refused"),
        ("ownership.import", "success"), ("ownership.import", "success"),
        ("ownership.release", "success"), ("ownership.revoke", "refused"),  # SN-NOBODY
        ("ownership.revoke", "success"), ("ownership.root_import", "success")]

    # the same models on the data directory
    local_args = ["-d", str(attestor.settings.data_dir), "--dev", "-o", "json"]
    for command in (["ownership", "list"], ["ownership", "roots"]):
        remote = json.loads(ok(cli(attestor, "auditor", *command, "-o", "json")))
        assert json.loads(ok(CliRunner().invoke(app, [*command, *local_args]))) == remote

    # the typed client: removing a root, and the server's refusal as an ApiError
    with OperatorClient(attestor.url, attestor.token("admin")) as api:
        root = next(r for r in api.ownership_roots() if r.is_root)
        api.remove_ownership_root(root.sha256)
        assert root.sha256 not in {r.sha256 for r in api.ownership_roots()}
        with pytest.raises(ApiError) as refusal:
            api.import_manifest(manifest.read_text(), "cameras")
        assert refusal.value.status == 400
        # the records bound to the removed root stay bound to it (nothing else may onboard
        # them), and no new serial can be bound to it
        assert {r.root_sha256 for r in api.ownership()} == {root.sha256}
        with pytest.raises(ApiError) as unknown_root:
            api.import_serials("SN-CSV-3\n", root.sha256)
        assert (unknown_root.value.status, unknown_root.value.problem.code) == (
            400, "ownership.root_unknown")
    removal = json.loads(ok(cli(attestor, "auditor", "audit", "query", "--actor",
                                "token:test-admin", "-o", "json")))
    assert [e["details"] for e in removal if e["action"] == "ownership.root_remove"] == [
        {"owned_bound": 3}]
