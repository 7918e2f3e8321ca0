"""The local CA and the embedded secret store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store
from sqlmodel import Session, select

from attestor.backends.issuer.local_ca import CaError, LocalCa
from attestor.backends.secrets.embedded import EmbeddedSecretStore, SecretStoreError
from attestor.db.models import StoredSecret

NOW = dt.datetime.now(dt.UTC)
PASS = b"a long test passphrase"


def test_local_ca_keys_are_private_and_encrypted(tmp_path: Path) -> None:
    LocalCa.create(tmp_path, PASS, NOW, name="t", root_days=10, issuing_days=5)
    for key in ("root.key", "issuing.key"):
        path = tmp_path / key
        assert path.stat().st_mode & 0o777 == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    with pytest.raises(CaError, match="wrong passphrase"):
        LocalCa.load(tmp_path, b"wrong passphrase!!", trust_domain="t", device_identity_days=1)
    with pytest.raises(CaError, match="already exists"):
        LocalCa.create(tmp_path, PASS, NOW, name="t", root_days=10, issuing_days=5)


def test_local_ca_issues_a_chain_that_verifies(tmp_path: Path) -> None:
    LocalCa.create(tmp_path, PASS, NOW, name="t", root_days=10, issuing_days=5)
    ca = LocalCa.load(tmp_path, PASS, trust_domain="fleet", device_identity_days=3)
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    issued = ca.issue_workload(leaf, device_id="d1", now=NOW, ttl=dt.timedelta(hours=1))
    PolicyBuilder().store(Store([ca.root])).time(NOW).build_client_verifier().verify(
        issued.cert, list(issued.chain))
    devid = ca.issue_device_identity(leaf, device_id="d1", serial=None, now=NOW)
    assert devid.cert.not_valid_after_utc <= ca.issuing.cert.not_valid_after_utc


def test_secret_store_encrypts_and_versions(engine: sa.Engine, tmp_path: Path) -> None:
    EmbeddedSecretStore.create_key(tmp_path / "k")
    store = EmbeddedSecretStore.from_key_file(engine, tmp_path / "k")
    assert store.put("wifi/psk", b"hunter2-value", NOW) == 1
    assert store.put("wifi/psk", b"second-value", NOW) == 2
    value = store.read("wifi/psk")
    assert value is not None and (value.version, value.value) == (2, b"second-value")
    assert "second-value" not in repr(value)
    assert store.read("missing") is None
    assert store.names() == [("wifi/psk", 2)]
    with Session(engine) as session:
        rows = session.exec(select(StoredSecret)).all()
    assert all(b"value" not in row.ciphertext for row in rows)


def test_ciphertext_moved_to_another_name_fails(engine: sa.Engine, tmp_path: Path) -> None:
    EmbeddedSecretStore.create_key(tmp_path / "k")
    store = EmbeddedSecretStore.from_key_file(engine, tmp_path / "k")
    store.put("a", b"for a only", NOW)
    store.put("b", b"for b", NOW)
    with Session(engine) as session, session.begin():
        row_a = session.exec(select(StoredSecret).where(StoredSecret.name == "a")).one()
        row_b = session.exec(select(StoredSecret).where(StoredSecret.name == "b")).one()
        row_b.nonce, row_b.ciphertext = row_a.nonce, row_a.ciphertext
    with pytest.raises(SecretStoreError, match="fails authentication"):
        store.read("b")


@pytest.mark.parametrize("name", ["", "../etc", "a" * 200, "/abs"])
def test_bad_secret_names_are_refused(engine: sa.Engine, tmp_path: Path, name: str) -> None:
    EmbeddedSecretStore.create_key(tmp_path / "k")
    with pytest.raises(SecretStoreError):
        EmbeddedSecretStore.from_key_file(engine, tmp_path / "k").put(name, b"x", NOW)
