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
from attestor.backends.secrets import SecretValue
from attestor.backends.secrets.embedded import (
    EmbeddedSecretStore,
    SecretStoreError,
    next_key_file,
)
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


def test_local_ca_device_identity_chains(tmp_path: Path) -> None:
    """(Workload certificates: the issuer contract in tests/attestor/backends.)"""
    LocalCa.create(tmp_path, PASS, NOW, name="t", root_days=10, issuing_days=5)
    ca = LocalCa.load(tmp_path, PASS, trust_domain="fleet", device_identity_days=3)
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    devid = ca.issue_device_identity(leaf, device_id="d1", serial=None, now=NOW)
    PolicyBuilder().store(Store([ca.root])).time(NOW).build_client_verifier().verify(
        devid.cert, list(devid.chain))
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


def test_key_rotation_reencrypts_everything(engine: sa.Engine, tmp_path: Path) -> None:
    key = tmp_path / "k"
    EmbeddedSecretStore.create_key(key)
    store = EmbeddedSecretStore.from_key_file(engine, key)
    store.put("a", b"alpha value", NOW)
    store.put("a", b"alpha value 2", NOW)
    store.put("b", b"bravo value", NOW)
    old = key.read_bytes()
    assert store.rotate_key(key) == 3
    assert key.read_bytes() != old and not next_key_file(key).exists()
    assert key.stat().st_mode & 0o777 == 0o600
    fresh = EmbeddedSecretStore.from_key_file(engine, key)
    assert fresh.read("a") == SecretValue("a", 2, b"alpha value 2")
    with Session(engine) as session:
        assert {r.key_id for r in session.exec(select(StoredSecret)).all()} == {fresh.key_id}
    with pytest.raises(SecretStoreError, match="another key"):
        EmbeddedSecretStore(engine, old).read("b")  # the old key opens nothing now


def test_interrupted_rotation_loses_nothing_and_completes(engine: sa.Engine,
                                                         tmp_path: Path) -> None:
    key = tmp_path / "k"
    EmbeddedSecretStore.create_key(key)
    store = EmbeddedSecretStore.from_key_file(engine, key)
    store.put("a", b"alpha value", NOW)
    # killed after the new key was staged, before the re-encryption committed:
    EmbeddedSecretStore.create_key(next_key_file(key))
    staged = EmbeddedSecretStore.from_key_file(engine, key)
    staged.put("b", b"written meanwhile", NOW)  # under the staged key
    assert staged.read("a") == SecretValue("a", 1, b"alpha value")  # under the old key
    assert EmbeddedSecretStore.from_key_file(engine, key).rotate_key(key) == 1
    done = EmbeddedSecretStore.from_key_file(engine, key)
    assert done.read("a") == SecretValue("a", 1, b"alpha value")
    assert done.read("b") == SecretValue("b", 1, b"written meanwhile")


def test_other_replica_picks_up_a_rotated_key(engine: sa.Engine, tmp_path: Path) -> None:
    key = tmp_path / "k"
    EmbeddedSecretStore.create_key(key)
    replica = EmbeddedSecretStore.from_key_file(engine, key)
    replica.put("a", b"alpha value", NOW)
    EmbeddedSecretStore.from_key_file(engine, key).rotate_key(key)
    assert replica.read("a") == SecretValue("a", 1, b"alpha value")  # re-reads the key file


def test_issued_certificate_text_is_encoded_once_and_as_before(tmp_path: Path) -> None:
    """serial, pem and chain_pem are read several times per attestation (issue 15):
    encoded once, the same text as encoding them each time; equality ignores the memo."""
    from cryptography.hazmat.primitives import serialization

    from attestor.backends.issuer import IssuedCertificate
    from identity.x509.csr import CheckedCsr

    LocalCa.create(tmp_path, PASS, NOW, name="t", root_days=10, issuing_days=5)
    ca = LocalCa.load(tmp_path, PASS, trust_domain="fleet", device_identity_days=3)
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    issued = ca.issue_workload(CheckedCsr(leaf, "CN=x"), device_id="d1", now=NOW,
                               ttl=dt.timedelta(minutes=5), serial=0xABC)
    pem = issued.cert.public_bytes(serialization.Encoding.PEM).decode()
    chain = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in issued.chain)
    for _ in range(2):
        assert (issued.serial, issued.pem, issued.chain_pem) == ("abc", pem, chain)
    assert ca.roots_pem() == ca.root.public_bytes(serialization.Encoding.PEM).decode()
    assert issued == IssuedCertificate(issued.cert, issued.chain)
    assert hash(issued) == hash(IssuedCertificate(issued.cert, issued.chain))
