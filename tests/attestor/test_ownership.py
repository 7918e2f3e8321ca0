"""Ownership records through the API and the CLI: import, list, revoke, release, each an
audited operation; manifests whose signature fails are refused and audited."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from typer.testing import CliRunner

from attestor.cli import app
from attestor.db import queries
from identity.devid.manifest import ManifestEntry, certificate_sha256, sign_manifest
from tests.e2e.onboarding import now, oem
from tests.harness import LiveAttestor

BOTH_DATABASES = True


def _manifest(tmp_path: Path, name: str = "Acme") -> tuple[Path, bytes]:
    authority = oem(tmp_path / name)
    data = sign_manifest(authority.issuing.key, authority.issuing.cert, oem=name, batch="b-1",
                         issued_at=now(), devices=[ManifestEntry("SN-10", "c" * 64),
                                                   ManifestEntry("SN-11", "d" * 64)])
    return authority.directory, data


def _audit(attestor: LiveAttestor) -> list[tuple[str, str, list[str]]]:
    with attestor.services.session() as session:
        return [(e.action, e.outcome, list(e.reasons)) for e in queries.audit_events(session)]


def test_api_import_list_revoke_release(attestor: LiveAttestor, tmp_path: Path) -> None:
    ca_dir, data = _manifest(tmp_path)
    admin = attestor.headers("admin")
    url = f"{attestor.url}/v1/ownership"
    # Before the roots are imported the manifest's signer is unknown: refused, audited.
    refused = httpx.post(f"{url}/manifests", json={"manifest": data.decode()}, headers=admin)
    assert refused.status_code == 400 and refused.json()["code"] == "ownership.manifest_invalid"
    roots = httpx.post(f"{url}/roots", headers=admin, json={
        "certificates": (ca_dir / "root.pem").read_text()})
    assert roots.status_code == 201 and roots.json()[0]["is_root"] is True
    done = httpx.post(f"{url}/manifests", headers=admin,
                      json={"manifest": data.decode(), "device_class": "cameras"})
    assert done.json() == {"created": 2, "updated": 0, "already_onboarded": [],
                           "kept_revoked": [], "kept_conflicting": []}

    # a tampered copy: one more serial in the signed payload
    outer = json.loads(data)
    body = json.loads(base64.b64decode(outer["manifest"]))
    body["devices"].append({"serial": "SN-12", "idevid_sha256": "e" * 64})
    outer["manifest"] = base64.b64encode(json.dumps(body).encode()).decode()
    tampered = httpx.post(f"{url}/manifests", headers=admin,
                          json={"manifest": json.dumps(outer)})
    assert tampered.status_code == 400

    listed = httpx.get(url, headers=attestor.headers("auditor")).json()
    assert [(r["serial"], r["device_class"], r["state"], r["batch"]) for r in listed] == [
        ("SN-10", "cameras", "owned", "b-1"), ("SN-11", "cameras", "owned", "b-1")]
    assert httpx.post(f"{url}/SN-10/revoke", headers=attestor.headers("auditor")
                      ).status_code == 403  # auditors read, admins change
    assert httpx.post(f"{url}/SN-10/revoke", headers=admin).json()["state"] == "revoked"
    assert httpx.post(f"{url}/SN-99/revoke", headers=admin).status_code == 404
    assert httpx.get(url, params={"state": "revoked"},
                     headers=admin).json()[0]["serial"] == "SN-10"
    assert httpx.post(f"{url}/SN-10/release", headers=admin).json()["state"] == "owned"
    entries = _audit(attestor)
    assert ("ownership.import", "refused", ["ownership.manifest_invalid"]) in entries
    assert ("ownership.root_import", "success", []) in entries
    assert ("ownership.import", "success", []) in entries
    assert ("ownership.revoke", "success", []) in entries
    assert ("ownership.revoke", "refused", ["request.not_found"]) in entries
    assert ("ownership.release", "success", []) in entries


def test_cli(attestor: LiveAttestor, tmp_path: Path) -> None:
    ca_dir, data = _manifest(tmp_path)
    (tmp_path / "manifest.json").write_bytes(data)
    (tmp_path / "serials.csv").write_text("serial\nSN-20\nSN-21\n")
    where = ["--data-dir", str(attestor.settings.data_dir), "--dev"]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["ownership", *args, *where])
        assert result.exit_code == 0, result.output
        return result.output

    assert "1 certificate(s) added" in run("import-roots", str(ca_dir / "root.pem"))
    assert "2 created, 0 updated" in run("import-manifest", str(tmp_path / "manifest.json"),
                                         "--class", "cameras")
    root = certificate_sha256(x509.load_pem_x509_certificate(
        (ca_dir / "root.pem").read_bytes()))
    assert "2 created, 0 updated" in run("import-csv", str(tmp_path / "serials.csv"),
                                         "--root", root)
    assert "--root" in runner.invoke(app, ["ownership", "import-csv", str(
        tmp_path / "serials.csv"), *where]).output  # the root is required
    run("revoke", "SN-20")
    listing = run("list", "--state", "revoked")
    assert "SN-20" in listing and "SN-21" not in listing
    # a re-import never undoes the revocation (release is the audited way back)
    assert run("import-manifest", str(tmp_path / "manifest.json")).split() == [
        "0", "created,", "2", "updated"]
    run("revoke", "SN-10")
    assert run("import-manifest", str(tmp_path / "manifest.json")).split() == [
        "0", "created,", "1", "updated;", "revoked", "(kept):", "SN-10"]
    forged = sign_manifest(oem(tmp_path / "Forger").issuing.key,
                           oem(tmp_path / "Forger2").issuing.cert, oem="x", batch="y",
                           issued_at=now(), devices=[ManifestEntry("SN-30", "f" * 64)])
    (tmp_path / "forged.json").write_bytes(forged)
    refused = runner.invoke(app, ["ownership", "import-manifest", str(tmp_path / "forged.json"),
                                  *where])
    assert refused.exit_code == 1 and "ownership.manifest_invalid" in refused.output
    actions = [(a, o) for a, o, _ in _audit(attestor) if a.startswith("ownership.")]
    assert ("ownership.revoke", "success") in actions
    assert ("ownership.import", "refused") in actions


@pytest.mark.parametrize("body", [{"csv": "SN\x01\n"}, {"csv": "SN-1\nSN-1\n"}])
def test_bad_csv_is_refused(attestor: LiveAttestor, body: dict[str, str],
                            tmp_path: Path) -> None:
    ca_dir, _ = _manifest(tmp_path)
    pem = (ca_dir / "root.pem").read_bytes()
    assert httpx.post(f"{attestor.url}/v1/ownership/roots", json={"certificates": pem.decode()},
                      headers=attestor.headers("admin")).status_code == 201
    root = certificate_sha256(x509.load_pem_x509_certificate(pem))
    answer = httpx.post(f"{attestor.url}/v1/ownership/serials",
                        json={**body, "root_sha256": root}, headers=attestor.headers("admin"))
    assert answer.status_code == 400 and answer.json()["code"] == "ownership.manifest_invalid"


@pytest.mark.parametrize("root", [None, "AB" * 32, "ab" * 31])
def test_a_csv_must_name_its_root(attestor: LiveAttestor, root: str | None) -> None:
    """The API model requires the root (64 lower-case hex); a root never imported is
    the typed refusal ownership.root_unknown (tests/attestor/test_cli_ownership.py)."""
    body = {"csv": "SN-1\n"} | ({"root_sha256": root} if root else {})
    answer = httpx.post(f"{attestor.url}/v1/ownership/serials", json=body,
                        headers=attestor.headers("admin"))
    assert answer.status_code == 422 and answer.json()["code"] == "request.invalid"
