"""`attestor audit prune` against a running attestor's database (SQLite and PostgreSQL):
a refusal exits 1 naming its reason and deletes nothing; a prune against the export the
auditor fetched leaves a chain that `audit verify`, GET /v1/audit/verify and the
console's /ui/audit report intact from its anchor, and whose new export verifies
offline."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from attestor.cli import app
from attestor.services import housekeeping
from tests.harness import LiveAttestor

BOTH_DATABASES = True


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _local(attestor: LiveAttestor, *args: str) -> tuple[int, str]:
    return _cli(*args, "-d", str(attestor.settings.data_dir), "--dev")


def _export(attestor: LiveAttestor, path: Path) -> Path:
    response = httpx.get(f"{attestor.url}/v1/audit/export", headers=attestor.headers("auditor"))
    assert response.status_code == 200
    path.write_bytes(response.content)
    return path


def _checkpoint(attestor: LiveAttestor) -> int:
    code, output = _local(attestor, "audit", "checkpoint")
    assert code == 0 and output.startswith("checkpoint at "), output
    return int(output.split()[-1])


def test_prune_against_an_export_then_everything_verifies_from_the_anchor(
        attestor: LiveAttestor, tmp_path: Path) -> None:
    for name in ("station-1", "station-2", "station-3"):
        assert _local(attestor, "apikey", "create", "--name", name)[0] == 0
    seq = _checkpoint(attestor)
    assert _local(attestor, "apikey", "create", "--name", "station-4")[0] == 0
    archive = _export(attestor, tmp_path / "archive.jsonl")

    # refusals: exit 1, a reason code, nothing deleted
    filtered = tmp_path / "filtered.jsonl"
    filtered.write_bytes(httpx.get(f"{attestor.url}/v1/audit/export", params={
        "action": "apikey.create"}, headers=attestor.headers("auditor")).content)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"".join(archive.read_bytes().splitlines(keepends=True)[:2]))
    signed = {json.loads(line)["checkpoint"]["seq"] for line in archive.read_bytes()
              .splitlines() if line.startswith(b'{"checkpoint"')}
    unsigned = min(set(range(1, seq)) - signed)  # an entry no checkpoint covers
    for path, through, reason in ((filtered, seq, "audit.prune_archive_filtered"),
                                  (truncated, seq, "audit.prune_archive_invalid"),
                                  (archive, unsigned, "audit.prune_checkpoint_missing")):
        code, output = _local(attestor, "audit", "prune", "--through-checkpoint",
                              str(through), "--archive", str(path), "--json")
        assert code == 1, output
        assert json.loads(output) == {"ok": False, "code": reason,
                                      "detail": json.loads(output)["detail"]}
    # housekeeping never prunes the audit log (the archive is the operator's to keep)
    counts = housekeeping.purge(attestor.services)
    assert not [table for table in counts if table.startswith("audit")]
    verified = httpx.get(f"{attestor.url}/v1/audit/verify",
                         headers=attestor.headers("auditor")).json()
    assert verified["ok"] and verified["base_seq"] == 0 and verified["entries"] > seq

    code, output = _local(attestor, "audit", "prune", "--through-checkpoint", str(seq),
                          "--archive", str(archive), "--json")
    assert code == 0, output
    done = json.loads(output)
    assert done["ok"] and done["from_seq"] == 1 and done["through_seq"] == seq

    code, output = _local(attestor, "audit", "verify")
    assert code == 0 and f"pruned up to {seq}" in output, output
    verified = httpx.get(f"{attestor.url}/v1/audit/verify",
                         headers=attestor.headers("auditor")).json()
    assert verified["ok"] and verified["base_seq"] == seq, verified

    pem = tmp_path / "key.pem"
    pem.write_text(httpx.get(f"{attestor.url}/v1/audit/checkpoint-key",
                             headers=attestor.headers("auditor")).text)
    after = _export(attestor, tmp_path / "after.jsonl")
    assert json.loads(after.read_bytes().splitlines()[0])["checkpoint"]["seq"] == seq
    for path in (after, archive):  # the new export, and the archive on its own
        code, output = _cli("audit", "verify", "--file", str(path), "--key", str(pem))
        assert code == 0 and "intact" in output, output

    entries = httpx.get(f"{attestor.url}/v1/audit", params={"limit": 1000},
                        headers=attestor.headers("auditor")).json()["items"]
    assert entries[0]["seq"] == seq + 1
    assert any(e["action"] == "audit.pruned" for e in entries)

    console = httpx.Client(base_url=attestor.url)
    assert console.post("/ui/login", data={"token": attestor.token("auditor")}
                        ).status_code == 200
    page = console.get("/ui/audit")
    assert page.status_code == 200
    assert 'id="chain-status">intact<' in page.text
    assert 'id="chain-anchor"' in page.text and f"up to {seq} were pruned" in page.text


def test_prune_runs_on_the_host_only(tmp_path: Path) -> None:
    archive = tmp_path / "a.jsonl"
    archive.write_text("{}\n")
    code, output = _cli("--server", "https://attestor.example", "--token", "t", "audit",
                        "prune", "--through-checkpoint", "1", "--archive", str(archive))
    assert code != 0 and "not with --server" in output
