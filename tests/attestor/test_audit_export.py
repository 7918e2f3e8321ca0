"""An audit export checked offline (`attestor audit verify --file … --key …`): no database
and no CA passphrase needed; intact it exits 0, and 1 after any byte or line of it was
changed, removed or moved. The keys come from GET /v1/audit/checkpoint-key (auditor role)
or `attestor audit key`, and are the same."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from attestor.audit_offline import load_public_keys, public_pem
from attestor.cli import app
from tests.harness import LiveAttestor

BOTH_DATABASES = True


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _local(attestor: LiveAttestor, *args: str) -> str:
    code, output = _cli(*args, "-d", str(attestor.settings.data_dir), "--dev")
    assert code == 0, output
    return output


def _exported(attestor: LiveAttestor, tmp_path: Path, **params: str) -> tuple[Path, Path]:
    """Some history (CLI actions, a refused request, a checkpoint between them), then
    the export and the key, both over the API as an auditor would fetch them."""
    _local(attestor, "token", "create", "--role", "auditor", "--subject", "carol")
    assert httpx.get(f"{attestor.url}/v1/devices", headers={
        "Authorization": "Bearer nonsense"}).status_code == 401
    _local(attestor, "audit", "checkpoint")
    _local(attestor, "apikey", "create", "--name", "station-9")
    headers = attestor.headers("auditor")
    export = tmp_path / "export.jsonl"
    export.write_bytes(httpx.get(f"{attestor.url}/v1/audit/export", params=params,
                                 headers=headers).content)
    response = httpx.get(f"{attestor.url}/v1/audit/checkpoint-key", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    key = tmp_path / "checkpoint-pub.pem"
    key.write_text(response.text)
    return export, key


def _verify(export: Path, key: Path) -> tuple[int, str]:
    # No data directory, no database, no passphrase: only the two files.
    return _cli("audit", "verify", "--file", str(export), "--key", str(key),
                "-d", "/nonexistent/edgeproof")


def test_an_intact_export_verifies_offline(attestor: LiveAttestor, tmp_path: Path) -> None:
    export, key = _exported(attestor, tmp_path)
    lines = export.read_bytes().splitlines()
    assert b'"checkpoint"' in b"".join(lines) and lines[-1].startswith(b'{"export"')
    code, output = _verify(export, key)
    assert code == 0, output
    assert "intact" in output
    # `attestor audit key` prints the same keys as the endpoint
    assert load_public_keys(_local(attestor, "audit", "key").encode()).keys() == \
        load_public_keys(key.read_bytes()).keys()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _where(data: bytes, marker: bytes) -> int:
    return next(i for i, line in enumerate(_lines(data)) if marker in line)


TAMPERS = {
    # one byte of an entry's actor, of a checkpoint's signature, of the last line's digest
    "flip-entry-byte": lambda d: _flip(d, d.index(b"cli:") + 5),
    "flip-checkpoint-byte": lambda d: _flip(d, d.index(b'"signature":"') + 20),
    "flip-last-line-byte": lambda d: _flip(d, d.index(b'"sha256":"') + 12),
    "flip-first-byte-of-a-hash": lambda d: _flip(d, d.index(b'"hash":"') + 8),
    "delete-first-line": lambda d: b"".join(_lines(d)[1:]),
    "delete-middle-entry": lambda d: b"".join(
        x for i, x in enumerate(_lines(d)) if i != 1),
    "delete-checkpoint-line": lambda d: b"".join(
        x for i, x in enumerate(_lines(d)) if i != _where(d, b'{"checkpoint"')),
    "delete-last-line": lambda d: b"".join(_lines(d)[:-1]),
    "swap-two-entries": lambda d: b"".join([_lines(d)[1], _lines(d)[0], *_lines(d)[2:]]),
    "swap-entry-and-checkpoint": lambda d: _swap(d, _where(d, b'{"checkpoint"')),
    "add-a-blank-line": lambda d: d + b"\n",
}


def _swap(data: bytes, index: int) -> bytes:
    lines = _lines(data)
    lines[index - 1], lines[index] = lines[index], lines[index - 1]
    return b"".join(lines)


@pytest.mark.adversarial
def test_any_change_to_an_export_fails_offline(attestor: LiveAttestor,
                                                tmp_path: Path) -> None:
    export, key = _exported(attestor, tmp_path)
    original = export.read_bytes()
    for name, tamper in TAMPERS.items():
        changed = tamper(original)
        assert changed != original, name
        export.write_bytes(changed)
        code, output = _verify(export, key)
        assert code == 1, f"{name}: {output}"
        assert "TAMPERED" in output, name


def test_another_attestors_key_does_not_verify(attestor: LiveAttestor, tmp_path: Path) -> None:
    export, key = _exported(attestor, tmp_path)
    key.write_text(public_pem([ec.generate_private_key(ec.SECP256R1()).public_key()]))
    code, output = _verify(export, key)
    assert code == 1 and "audit.checkpoint_invalid" in output


def test_a_filtered_export_is_checked_entry_by_entry(attestor: LiveAttestor,
                                                     tmp_path: Path) -> None:
    export, key = _exported(attestor, tmp_path, outcome="success")
    code, output = _cli("audit", "verify", "--file", str(export), "--key", str(key),
                        "--json")
    assert code == 0, output
    assert '"complete": false' in output and '"export_signed": true' in output
    export.write_bytes(_flip(export.read_bytes(), export.read_bytes().index(b"cli:") + 5))
    assert _verify(export, key)[0] == 1


def test_the_checkpoint_key_is_for_auditors(attestor: LiveAttestor) -> None:
    url = f"{attestor.url}/v1/audit/checkpoint-key"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=attestor.headers("gatekeeper")).status_code == 403
    assert httpx.get(url, headers=attestor.enroller_headers).status_code == 403
