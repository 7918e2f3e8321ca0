"""Attacks on the auditor's commands (review of issue 16): an audit log poisoned by an
anonymous caller must not break or restyle `audit query`'s table; an export crafted to
carry markup must not break or restyle `audit verify --file`'s verdict; a filtered
export must not pass for the whole log; files that cannot be written are one error
line, and a refused export leaves no empty file that looks like one."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from attestor.cli import app
from tests.harness import Device, LiveAttestor, enroll_and_learn

pytestmark = [pytest.mark.e2e, pytest.mark.adversarial]
CLAIM = "[/]x[bold red]TAMPERED"


def cli(attestor: LiveAttestor, *args: str, token: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--server", attestor.url, "--token",
                                    token or attestor.token("auditor"), *args])


def clean(result: Result) -> bool:
    """Ended by the command itself (an exit code), not by an exception."""
    return result.exception is None or isinstance(result.exception, SystemExit)


def offline(*args: str) -> Result:
    return CliRunner().invoke(app, ["audit", "verify", *args, "-d", "/nonexistent/edgeproof"])


def test_a_claimed_device_id_with_markup_does_not_break_the_table(
        attestor: LiveAttestor) -> None:
    # Anyone can put a device id of their choosing in the audit log: a refused request
    # records the id it claims.
    refused = httpx.post(attestor.url + "/v1/devices/abc/challenge", json={},
                         headers={"X-Edgeproof-Device": CLAIM})
    assert refused.status_code == 401
    result = cli(attestor, "audit", "query", "--action", "auth", "-o", "table")
    assert result.exit_code == 0 and clean(result), result.output
    assert "[/]x[bold" in result.stdout  # the literal text, not a style


def _export(attestor: LiveAttestor, tmp_path: Path, *filters: str) -> tuple[Path, Path]:
    export, key = tmp_path / "export.jsonl", tmp_path / "key.pem"
    token = attestor.token("auditor")
    for args in (("audit", "export", *filters, "--out", str(export)),
                 ("audit", "key", "--out", str(key))):
        result = cli(attestor, *args, token=token)
        assert result.exit_code == 0, result.output
    return export, key


def test_markup_in_an_export_is_reported_as_text(attestor: LiveAttestor,
                                                 tmp_path: Path) -> None:
    assert httpx.get(attestor.url + "/v1/devices",
                     headers={"Authorization": "Bearer x"}).status_code == 401
    export, key = _export(attestor, tmp_path)
    lines = export.read_bytes().splitlines(keepends=True)
    for forged in ("[/]", "[green]intact[/green]"):
        entry = json.loads(lines[0])
        entry["at"] = forged
        export.write_bytes(json.dumps(entry).encode() + b"\n" + b"".join(lines[1:]))
        result = offline("--file", str(export), "--key", str(key))
        assert result.exit_code == 1 and clean(result), result.output
        assert forged in result.stdout and "TAMPERED" in result.stdout


def test_a_filtered_export_says_so(attestor: LiveAttestor, tmp_path: Path) -> None:
    assert httpx.get(attestor.url + "/v1/devices",
                     headers={"Authorization": "Bearer x"}).status_code == 401
    whole, key = _export(attestor, tmp_path)
    done = offline("--file", str(whole), "--key", str(key))
    assert done.exit_code == 0, done.output
    assert "the whole log up to entry" in done.stdout and "FILTERED" not in done.stdout
    part, _ = _export(attestor, tmp_path, "--outcome", "success")
    done = offline("--file", str(part), "--key", str(key))
    assert done.exit_code == 0, done.output  # intact, as exported
    assert "FILTERED" in done.stdout  # but not the whole log


def test_an_unwritable_out_file_is_one_line(attestor: LiveAttestor, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory"
    for command in ("export", "key"):
        result = cli(attestor, "audit", command, "--out", str(missing / "f"))
        assert result.exit_code == 2 and clean(result), result.output
        assert "cannot write" in result.stderr
    local = CliRunner().invoke(app, ["audit", "export", "--out", str(missing / "f"), "-d",
                                     str(attestor.settings.data_dir), "--dev"])
    assert local.exit_code == 2 and "cannot write" in local.stderr, local.output


def test_a_refused_export_leaves_no_file(attestor: LiveAttestor, tmp_path: Path) -> None:
    target = tmp_path / "export.jsonl"
    result = cli(attestor, "audit", "export", "--out", str(target),
                 token=attestor.token("enroller"))
    assert result.exit_code == 1 and "auth.forbidden" in result.stderr, result.output
    assert not target.exists()


@pytest.mark.tpm
def test_a_state_reason_with_markup_is_printed_as_given(attestor: LiveAttestor,
                                                        device: Device) -> None:
    """The reason an admin types (or pastes) comes back from the server and is printed:
    as text, after the change was made, not as a traceback."""
    device_id = enroll_and_learn(attestor, device).device_id
    assert device_id is not None
    reason = "[/]ticket [bold]42"
    done = cli(attestor, "device", "quarantine", device_id, "--reason", reason,
               token=attestor.token("admin"))
    assert done.exit_code == 0 and clean(done), done.output
    assert f"quarantined ({reason})" in done.stdout
    listed = cli(attestor, "audit", "query", "--action", "device.quarantine", "-o", "table")
    assert listed.exit_code == 0 and clean(listed), listed.output


def test_a_policy_author_with_markup_is_printed_as_given(attestor: LiveAttestor,
                                                        tmp_path: Path) -> None:
    """An OIDC subject is the identity provider's to choose: `policy show` prints it."""
    from attestor.auth.tokens import local_issuer, mint

    author = mint(attestor.services.signer, local_issuer(attestor.settings.trust_domain),
                  role="admin", subject="[/]mallory", ttl=dt.timedelta(minutes=5),
                  now=attestor.clock())
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"pcrs": [0], "golden": {"0": "00" * 32}}))
    assert cli(attestor, "policy", "set", str(policy), "--class", "kiosk",
               token=author).exit_code == 0
    shown = cli(attestor, "policy", "show", "--class", "kiosk", "-o", "table")
    assert shown.exit_code == 0 and clean(shown), shown.output
    assert "by=token:[/]mallory" in shown.stdout


class CutOff:
    """An HTTP server that starts an export (chunked) and closes the connection midway,
    as a proxy timing out a long export does."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                line = b'{"seq":1}\n'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n"
                             + f"{len(line):x}\r\n".encode() + line + b"\r\n"
                             + b"400\r\n" + b"x" * 10)

    def close(self) -> None:
        self.listener.close()


def test_an_export_cut_off_midway_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    server = CutOff()
    try:
        target = tmp_path / "export.jsonl"
        result = CliRunner().invoke(app, ["--server", server.url, "--token", "t", "audit",
                                          "export", "--out", str(target)])
        assert result.exit_code == 3 and clean(result), result.output
        assert "client.unreachable" in result.stderr and "cut off" in result.stderr
        assert not target.exists()
    finally:
        server.close()


def test_a_filtered_export_counts_its_own_unanchored_entries(attestor: LiveAttestor,
                                                            tmp_path: Path) -> None:
    """Not the whole log's (it said "31 unanchored entries since None" for a file of 13)."""
    data = ["-d", str(attestor.settings.data_dir), "--dev"]
    assert CliRunner().invoke(app, ["token", "create", "--role", "auditor", *data]
                              ).exit_code == 0  # entry 1: token.mint
    for _ in range(2):
        assert httpx.get(attestor.url + "/v1/devices",
                         headers={"Authorization": "Bearer x"}).status_code == 401
    assert CliRunner().invoke(app, ["apikey", "create", "--name", "s", *data]).exit_code == 0
    part, key = _export(attestor, tmp_path, "--outcome", "refused")
    done = offline("--file", str(part), "--key", str(key), "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["complete"] is False
    entries = [json.loads(x) for x in part.read_bytes().splitlines()[:-1]]
    assert [e["seq"] for e in entries] == [2, 3]
    assert report["unanchored_entries"] == len(entries) == report["entries"]
    assert report["unanchored_since"] == entries[0]["at"]
