"""The leak watch itself: planted leaks are found, so a clean run means something."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets

import httpx
import sqlalchemy as sa

from attestor import audit
from tests.harness import LiveAttestor
from tests.leaks import LOGS


def test_planted_leaks_are_found(attestor: LiveAttestor) -> None:
    token = attestor.token("auditor")
    assert httpx.get(f"{attestor.url}/v1/audit", headers={"Authorization": f"Bearer {token}"}
                     ).status_code == 200
    assert attestor.leaks() == []

    logging.getLogger("attestor.test").info("oops: %s", token)
    nonce = secrets.token_bytes(32)
    attestor.watch.nonce(nonce)
    with attestor.services.session() as session, session.begin():
        audit.append(session, at=dt.datetime.now(dt.UTC), actor="test", action="plant",
                     outcome="success", details={"note": base64.b64encode(nonce).decode()})
    found = attestor.leaks()
    assert any(f.startswith("a bearer token in a log line") for f in found)
    assert any(f.startswith("nonce in an audit entry") for f in found)
    key = attestor.services.signer.key.private_numbers().private_value.to_bytes(32, "big")
    logging.getLogger("attestor.test").warning("key %s", key.hex())
    assert any(f.startswith("the attestor's signing key in a log line")
               for f in attestor.leaks())
    # Clear the plants so the fixture's own check at teardown still means something.
    attestor.watch.log_start = len(LOGS.lines)
    with attestor.services.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE action = 'plant'"))
    assert attestor.leaks() == []
