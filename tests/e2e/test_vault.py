"""The attestor on Vault end to end, with swtpm devices: certificates from Vault's PKI,
secrets from KV v2 (as values, response-wrapped, or sealed to the TPM), failing closed
when Vault is sealed, refusing or gone, a reused wrapping token audited, and no secret
value or Vault token anywhere it must not be (logs, audit, other responses, database).
Vault is a real dev server when a binary is on PATH, else the HTTP double."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import hvac
import pytest
import sqlalchemy as sa
from cryptography import x509
from sqlmodel import select

from agent import vaultwrap
from agent.attest import attest_once, collect_evidence
from agent.client import AttestorError
from agent.sim.swtpm import Manufacturer
from attestor.backends.secrets import wrap_id
from attestor.db import queries
from attestor.db.models import AuditEvent, Certificate
from attestor.services.policies import policy_for, set_policy
from identity.messages import WrapReuseReport
from tests.attestor.backends.conftest import ATTESTOR_PATHS, TRUST_DOMAIN, pki_role
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.vault import VaultUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
PULL = "registry-pull-secret-7f3a9c1e"
PSK = "wpa2-psk-correct-horse-battery"


def _start(tmp_path: Path, manufacturer: Manufacturer, vault: VaultUnderTest,
           wrap_ttl: int) -> LiveAttestor:
    pki_role(vault)
    role_id, secret_id = vault.add_approle(ATTESTOR_PATHS)
    live = LiveAttestor(tmp_path / "attestor", [manufacturer], trust_domain=TRUST_DOMAIN,
                        issuer="vault", secrets={"backend": "vault"},
                        vault={"address": vault.address, "auth": "approle",
                               "role_id": role_id, "secret_id": secret_id,
                               "wrap_ttl_seconds": wrap_ttl})
    live.watch.secret("the AppRole secret_id", secret_id)
    live.watch.secret("Vault's root token", vault.root_token)
    return live.start()


def _stop(live: LiveAttestor, vault: VaultUnderTest) -> None:
    """Stop with the leak check, knowing every Vault token the attestor held (the double
    knows every token it issued; a real server, the one held last)."""
    tokens = set(getattr(vault, "tokens", {}))
    if live.services.vault is not None and live.services.vault.client.token:
        tokens.add(live.services.vault.client.token)
    for token in tokens:
        live.watch.secret("a Vault token", token)
    live.stop()


@contextmanager
def _attestor(tmp_path: Path, manufacturer: Manufacturer, vault: VaultUnderTest,
              wrap_ttl: int) -> Iterator[LiveAttestor]:
    live = _start(tmp_path, manufacturer, vault, wrap_ttl=wrap_ttl)
    try:
        yield live
    finally:
        _stop(live, vault)


@pytest.fixture
def vault_attestor(tmp_path: Path, manufacturer: Manufacturer,
                   vault: VaultUnderTest) -> Iterator[LiveAttestor]:
    with _attestor(tmp_path, manufacturer, vault, wrap_ttl=0) as live:
        yield live


@pytest.fixture
def wrapping_attestor(tmp_path: Path, manufacturer: Manufacturer,
                      vault: VaultUnderTest) -> Iterator[LiveAttestor]:
    with _attestor(tmp_path, manufacturer, vault, wrap_ttl=120) as live:
        yield live


def _grant(attestor: LiveAttestor, vault: VaultUnderTest, *, tpm_bound: bool = False) -> None:
    vault.put_kv("edgeproof/default/registry/pull", {"value": PULL})
    names: tuple[str, ...] = ("registry/pull",)
    if tpm_bound:
        vault.put_kv("edgeproof/default/wifi/psk", {"value": PSK})
        names += ("wifi/psk",)
    with attestor.services.session() as session, session.begin():
        document, _ = policy_for(session, "default")
        set_policy(session, "default", document.model_copy(update={
            "secrets": names, "tpm_bound_secrets": names[1:]}), "test", attestor.clock())


def _database_text(attestor: LiveAttestor) -> str:
    """Every value of every row of every table, as text."""
    meta = sa.MetaData()
    meta.reflect(attestor.services.engine)
    with attestor.services.engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for table in meta.sorted_tables
                         for row in conn.execute(sa.select(table)))


def test_certificate_and_secret_from_vault(vault_attestor: LiveAttestor, device: Device,
                                           vault: VaultUnderTest) -> None:
    config = enroll_and_learn(vault_attestor, device)
    assert "double root" in (config.state_dir / "ca.pem").read_text() or \
        vault.roots_pem() in (config.state_dir / "ca.pem").read_text()
    _grant(vault_attestor, vault)
    vault_attestor.watch.release(PULL.encode())
    with vault_attestor.client(config, device.tpm) as client:
        issued = attest_once(config, device.tpm, client, now())
    cert = x509.load_pem_x509_certificate((config.output / "cert.pem").read_bytes())
    vault_root = x509.load_pem_x509_certificate(vault.roots_pem().encode())
    chain = x509.load_pem_x509_certificates((config.output / "chain.pem").read_bytes())
    assert cert.issuer == chain[0].subject and chain[0].issuer == vault_root.subject
    assert issued.subject_uri == f"spiffe://{TRUST_DOMAIN}/device/{config.device_id}"
    assert (config.output / "secrets" / "registry" / "pull").read_text() == PULL
    with vault_attestor.services.session() as session:
        row = session.get(Certificate, issued.serial)  # Vault's serial, recorded here
        assert row is not None and row.status == "issued"
        assert not session.exec(select(Certificate).where(
            Certificate.status == "pending")).all()
    assert PULL not in _database_text(vault_attestor)


def test_vault_sealed_refusing_or_gone_fails_closed(vault_attestor: LiveAttestor,
                                                    device: Device,
                                                    vault: VaultUnderTest) -> None:
    config = enroll_and_learn(vault_attestor, device)
    _grant(vault_attestor, vault)
    vault_attestor.watch.release(PULL.encode())
    with vault_attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    before = (config.output / "cert.pem").read_bytes()

    def refused_with(code: str) -> None:
        with vault_attestor.services.session() as session:
            count = len(session.exec(select(Certificate)).all())
        with vault_attestor.client(config, device.tpm) as client, \
                pytest.raises(AttestorError) as refusal:
            attest_once(config, device.tpm, client, now())
        assert refusal.value.status == 503 and refusal.value.code == code
        assert (config.output / "cert.pem").read_bytes() == before  # credentials stay
        with vault_attestor.services.session() as session:
            assert len(session.exec(select(Certificate)).all()) == count  # nothing issued
            last = queries.audit_events(session)[-1]
        assert (last.action, last.outcome, last.reasons) == (
            "attestation", "error", [code])

    vault.sealed = True
    try:
        refused_with("backend.vault_sealed")
        ready = httpx.get(f"{vault_attestor.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["issuer"] == "unavailable: backend.vault_sealed"
        assert ready.json()["secrets"] == "unavailable: backend.vault_sealed"
    finally:
        vault.sealed = False
    assert httpx.get(f"{vault_attestor.url}/readyz").status_code == 200

    vault.put_kv("edgeproof/default/registry/pull", {"not-value": "x"})  # wrong shape
    refused_with("secrets.vault")
    vault.put_kv("edgeproof/default/registry/pull", {"value": PULL})
    vault_attestor.services.vault.client.token = "hvs.revoked-or-forged"  # type: ignore[union-attr]
    with vault_attestor.client(config, device.tpm) as client:  # AppRole logs in again
        attest_once(config, device.tpm, client, now())
    before = (config.output / "cert.pem").read_bytes()
    vault.stop()
    refused_with("backend.vault_unreachable")


def test_wrapped_and_tpm_bound_secrets(wrapping_attestor: LiveAttestor, device: Device,
                                       vault: VaultUnderTest) -> None:
    config = enroll_and_learn(wrapping_attestor, device)
    _grant(wrapping_attestor, vault, tpm_bound=True)
    wrapping_attestor.watch.secret("a value Vault delivers wrapped", PULL)  # never here
    wrapping_attestor.watch.secret("a TPM-bound value", PSK)
    with wrapping_attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    assert (config.output / "secrets" / "registry" / "pull").read_text() == PULL
    assert (config.output / "secrets" / "wifi" / "psk").read_text() == PSK
    with wrapping_attestor.services.session() as session:
        entry = [e for e in queries.audit_events(session) if e.action == "attestation"][-1]
    delivered = {s["name"]: s for s in entry.details["secrets"]}
    assert delivered["registry/pull"]["delivery"] == "vault_wrap"
    assert delivered["wifi/psk"]["delivery"] == "tpm"
    text = _database_text(wrapping_attestor)
    assert PULL not in text and PSK not in text


def test_wrapping_token_used_twice_is_refused_and_audited(wrapping_attestor: LiveAttestor,
                                                          device: Device,
                                                          vault: VaultUnderTest) -> None:
    config = enroll_and_learn(wrapping_attestor, device)
    _grant(wrapping_attestor, vault)
    wrapping_attestor.watch.secret("a value Vault delivers wrapped", PULL)
    device_id = str(config.device_id)
    with wrapping_attestor.client(config, device.tpm) as client:
        result = client.attest(device_id, collect_evidence(
            config, device.tpm, device_id, client.challenge(device_id)).body)
        wrap = result.secrets[0].vault_wrap
        assert wrap is not None and result.secrets[0].value is None
        # a still-valid token is not reuse: nothing is recorded
        assert client.report_wrap_reuse(device_id, WrapReuseReport(
            name="registry/pull", token=wrap.token, age_seconds=1)).status == "valid"
        # someone who copied the response unwraps first ...
        stolen = hvac.Client(vault.address, token=wrap.token).adapter.post(
            "/v1/sys/wrapping/unwrap")
        assert stolen["data"]["data"]["value"] == PULL
        # ... so Vault refuses the device, which reports it
        with pytest.raises(vaultwrap.WrappedSecretUnavailable, match="not valid"):
            vaultwrap.resolve(result, client, device_id, None, received=time.monotonic())
    with wrapping_attestor.services.session() as session:
        alerts = session.exec(select(AuditEvent).where(
            AuditEvent.action == "secret.wrap_reuse")).all()
    assert len(alerts) == 1 and alerts[0].outcome == "alert"
    assert alerts[0].device_id == device_id
    assert alerts[0].details["wrap_id"] == wrap_id(wrap.token) == wrap.wrap_id
    metrics = httpx.get(f"{wrapping_attestor.url}/metrics",
                        headers=wrapping_attestor.headers("auditor")).text
    assert "edgeproof_wrap_reuse_reports_total 1.0" in metrics
    assert base64.b64encode(PULL.encode()).decode() not in metrics


def test_metrics_report_vault_health_and_its_ca_expiry(vault_attestor: LiveAttestor,
                                                       vault: VaultUnderTest) -> None:
    from tests.attestor.test_metrics import scrape, value

    samples = scrape(vault_attestor)
    assert value(samples, "edgeproof_backend_up", backend="vault") == 1
    vault_root = x509.load_pem_x509_certificate(vault.roots_pem().encode())
    assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds", backend="vault",
                 ca="root") == vault_root.not_valid_after_utc.timestamp()
    assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds", backend="vault",
                 ca="issuing") > 0
    assert value(samples, "edgeproof_ca_certificate_expiry_timestamp_seconds", backend="local",
                 ca="root") > 0  # device identities still come from the local CA
    vault.sealed = True
    try:
        sealed = scrape(vault_attestor)
    finally:
        vault.sealed = False
    assert value(sealed, "edgeproof_backend_up", backend="vault") == 0
    assert value(sealed, "edgeproof_backend_up", backend="issuer") == 0
    assert value(sealed, "edgeproof_backend_up", backend="database") == 1
    assert value(scrape(vault_attestor), "edgeproof_backend_up", backend="vault") == 1
