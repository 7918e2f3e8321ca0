"""`attestor secret put/get/list/rotate-key` on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from attestor import audit
from attestor.cli import app
from attestor.db import queries
from attestor.db.engine import make_engine

VALUE = "registry-pull-token-0123456789"


def run(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.output


def test_put_get_list_rotate(tmp_path: Path) -> None:
    d = ["-d", str(tmp_path / "data"), "--dev"]
    run("init", *d)
    run("secret", "put", "registry/pull", "--value", VALUE, *d)
    run("secret", "put", "registry/pull", *d, input=VALUE + "-v2")
    listing = run("secret", "list", *d)  # not a terminal: JSON
    assert json.loads(listing) == [{"name": "registry/pull", "version": 2}]
    table = run("secret", "list", "-o", "table", *d)
    assert "registry/pull" in table and "2" in table and VALUE not in table
    key = run("apikey", "create", "--name", "station-9", *d).strip()
    keys = json.loads(run("apikey", "list", "-o", "json", *d))
    assert [(k["name"], k["role"], k["revoked_at"]) for k in keys] == [
        ("station-9", "enroller", None)]
    assert key not in json.dumps(keys)
    assert run("secret", "get", "registry/pull", *d) == VALUE + "-v2"
    old_key = (tmp_path / "data" / "secrets.key").read_bytes()
    assert "2 version(s) re-encrypted" in run("secret", "rotate-key", *d)
    assert (tmp_path / "data" / "secrets.key").read_bytes() != old_key
    assert run("secret", "get", "registry/pull", *d) == VALUE + "-v2"
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'attestor.db'}")
    with Session(engine) as session:
        entries = [audit.event_json(e) for e in queries.audit_events(session)]
    engine.dispose()
    assert {"secret.put", "secret.get", "secret.rotate_key"} <= {e["action"] for e in entries}
    assert VALUE not in json.dumps(entries, default=str)


def test_missing_secret_and_both_sources_are_errors(tmp_path: Path) -> None:
    d = ["-d", str(tmp_path / "data"), "--dev"]
    run("init", *d)
    result = CliRunner().invoke(app, ["secret", "get", "nope", *d])
    assert result.exit_code == 1 and "no secret named" in result.output
    result = CliRunner().invoke(app, ["secret", "put", "x", "--value", "v", "--from-file",
                                      "/etc/hostname", *d])
    assert result.exit_code == 1 and "not both" in result.output
