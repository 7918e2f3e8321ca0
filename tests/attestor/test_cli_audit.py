"""Operator commands on the attestor host are audited with who ran them (OS user and
host), what they did and never the secret: minting a token, API keys, key rotation,
policy and trust-store changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session
from typer.testing import CliRunner

from agent.sim.swtpm import Manufacturer
from attestor import audit, origin
from attestor.cli import app
from attestor.db import queries
from attestor.db.engine import make_engine


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _entries(data: Path) -> list[dict[str, Any]]:
    engine = make_engine(f"sqlite:///{data / 'attestor.db'}")
    try:
        with Session(engine) as session:
            return [audit.event_json(e) for e in queries.audit_events(session)]
    finally:
        engine.dispose()


def test_operator_commands_are_audited_without_their_secrets(
        tmp_path: Path, manufacturer: Manufacturer) -> None:
    data = tmp_path / "data"
    d = ["-d", str(data), "--dev"]
    _run("init", *d)
    token = _run("token", "create", "--role", "auditor", "--subject", "carol", "--ttl", "2h",
                 *d).strip()
    key = _run("apikey", "create", "--name", "station-7", *d).strip()
    key_id = key.split("_")[1]
    _run("apikey", "revoke", key_id, *d)
    _run("keys", "rotate", *d)
    _run("trust", "add", str(manufacturer.root_certificate), *d)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"pcrs": [0, 7], "golden": {"0": "00" * 32, "7": "11" * 32}}))
    _run("policy", "set", str(policy), "--class", "kiosk", *d)

    entries = {e["action"]: e for e in _entries(data)}
    me = origin.cli_principal()
    for action in ("token.mint", "apikey.create", "apikey.revoke", "keys.rotate",
                   "trust.add", "policy.update"):
        entry = entries[action]
        assert (entry["actor"], entry["outcome"]) == (me, "success"), action
        assert entry["user_agent"].startswith("attestor-cli"), action
        assert entry["client_address"] is None, action  # no connection
    mint = entries["token.mint"]
    assert mint["subject"] == "token:carol" and mint["details"]["role"] == "auditor"
    assert set(mint["details"]) == {"role", "jti", "kid", "expires_at"}
    assert entries["apikey.create"]["details"] == {"name": "station-7", "role": "enroller"}
    assert entries["apikey.revoke"]["subject"] == f"apikey:{key_id}"
    assert entries["keys.rotate"]["details"]["retired"]
    (added,) = entries["trust.add"]["details"]["added"]
    assert added["file"] == manufacturer.root_certificate.name and len(added["sha256"]) == 64
    assert entries["policy.update"]["subject"] == "policy:kiosk"
    assert len(entries["policy.update"]["details"]["document_sha256"]) == 64
    text = json.dumps(list(entries.values()))
    assert token not in text and token.split(".")[2] not in text
    assert key.split("_")[2] not in text


def test_a_refused_trust_import_is_audited_as_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = ["-d", str(data), "--dev"]
    _run("init", *d)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    result = CliRunner().invoke(app, ["trust", "add", str(junk), *d])
    assert result.exit_code == 1
    (entry,) = [e for e in _entries(data) if e["action"] == "trust.add"]
    assert (entry["outcome"], entry["reasons"]) == ("refused", ["trust.certificate_invalid"])
    assert entry["details"]["refused"][0]["file"] == "junk.pem"
