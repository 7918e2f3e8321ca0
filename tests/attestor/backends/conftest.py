"""Implementations of the issuer and secret-store interfaces, for the contract suite.

Each fixture yields one implementation: the embedded ones, and the Vault ones
against the ``vault`` fixture (a real dev server when a binary is on PATH, the
in-process HTTP double otherwise; ``kind`` says which)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestor.backends.issuer import Issuer
from attestor.backends.issuer.local_ca import LocalCa
from attestor.backends.issuer.vault_pki import VaultPki
from attestor.backends.secrets import SecretStore, SecretSubject
from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.backends.secrets.vault_kv import VaultKv
from attestor.backends.vault.connection import VaultConnection
from attestor.db.engine import make_engine, upgrade
from attestor.vault_settings import VaultSettings
from identity.x509.csr import CheckedCsr, check_csr
from tests.vault import VaultUnderTest
from tests.vault.double import Role

TRUST_DOMAIN = "fleet.test"
ROLE_MAX_TTL = 7200
PASS = b"a long test passphrase"
#: what the attestor's Vault token may do (the HCL policy in docs/vault.md, as globs)
ATTESTOR_PATHS = ["pki/sign/edgeproof-device", "pki/roles/edgeproof-device", "pki/ca_chain",
                  "secret/data/edgeproof/*", "secret/metadata/edgeproof/*",
                  "sys/wrapping/lookup"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def csr(sans: list[x509.GeneralName] | None = None, cn: str = "whatever") -> CheckedCsr:
    """A device-made CSR (its names are ignored by every issuer)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return check_csr(builder.sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM))


def vault_settings(vault: VaultUnderTest, **overrides: Any) -> VaultSettings:
    fields: dict[str, Any] = {"address": vault.address, "auth": "token",
                              "token": vault.token(ATTESTOR_PATHS)}
    fields.update(overrides)
    return VaultSettings(**fields)


def pki_role(vault: VaultUnderTest, **overrides: Any) -> None:
    fields: dict[str, Any] = {"max_ttl": ROLE_MAX_TTL,
                              "allowed_uri_sans": [f"spiffe://{TRUST_DOMAIN}/device/*"],
                              "allowed_domains": ["devices.test"], "allow_any_name": False}
    fields.update(overrides)
    vault.add_pki_role("edgeproof-device", Role(**fields))


@dataclass
class IssuerUnderTest:
    issuer: Issuer
    roots: list[x509.Certificate]
    kind: str


@dataclass
class StoreUnderTest:
    store: SecretStore
    put: Callable[[str, SecretSubject, bytes], int]
    kind: str


@pytest.fixture(params=["local-ca", "vault"])
def issuer_impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IssuerUnderTest]:
    if request.param == "local-ca":
        LocalCa.create(tmp_path, PASS, utc_now(), name="t", root_days=10, issuing_days=5)
        ca = LocalCa.load(tmp_path, PASS, trust_domain=TRUST_DOMAIN, device_identity_days=3)
        yield IssuerUnderTest(ca, [ca.root], "local CA")
        return
    vault: VaultUnderTest = request.getfixturevalue("vault")
    pki_role(vault)
    pki = VaultPki(VaultConnection(vault_settings(vault), utc_now), trust_domain=TRUST_DOMAIN)
    roots = x509.load_pem_x509_certificates(vault.roots_pem().encode())
    yield IssuerUnderTest(pki, roots, f"Vault PKI on {vault.kind}")


@pytest.fixture(params=["embedded", "vault"])
def store_impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if request.param == "embedded":
        # PostgreSQL: test_backends
        engine = make_engine(f"sqlite:///{tmp_path / 'attestor.db'}", create=True)
        upgrade(engine)
        EmbeddedSecretStore.create_key(tmp_path / "k")
        store = EmbeddedSecretStore.from_key_file(engine, tmp_path / "k")
        yield StoreUnderTest(store, lambda name, _, value: store.put(name, value, utc_now()),
                             "embedded store")
        engine.dispose()
        return
    vault: VaultUnderTest = request.getfixturevalue("vault")
    kv = VaultKv(VaultConnection(vault_settings(vault), utc_now))

    def put(name: str, subject: SecretSubject, value: bytes) -> int:
        return vault.put_kv(kv.path(name, subject), {"value": value.decode()})
    yield StoreUnderTest(kv, put, f"Vault KV v2 on {vault.kind}")
