"""The Vault backends beyond the shared contract: auth methods and token renewal,
fail-closed reasons, the role's TTL clamp, a role that copies CSR names, response
wrapping, and templated KV paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography import x509

from attestor.backends.issuer.vault_pki import VaultPki
from attestor.backends.secrets import SecretSubject, WrappedSecret, wrap_id
from attestor.backends.secrets.vault_kv import VaultKv
from attestor.backends.vault.connection import VaultConnection
from attestor.vault_settings import VaultSettings
from identity.errors import IssuerMismatch, VaultRefused, VaultSealed, VaultUnreachable
from tests.attestor.backends.conftest import (
    ATTESTOR_PATHS,
    ROLE_MAX_TTL,
    TRUST_DOMAIN,
    csr,
    pki_role,
    utc_now,
    vault_settings,
)
from tests.vault import VaultUnderTest

SUBJECT = SecretSubject("dev-1", "sensors", "m1")


class FakeClock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> dt.datetime:
        return self.now


def _kv(vault: VaultUnderTest, **overrides: object) -> VaultKv:
    return VaultKv(VaultConnection(vault_settings(vault, **overrides), utc_now))


# -- auth ---------------------------------------------------------------------------
def test_approle_login_and_refusal(vault: VaultUnderTest) -> None:
    role_id, secret_id = vault.add_approle(ATTESTOR_PATHS)
    conn = VaultConnection(VaultSettings(address=vault.address, auth="approle",
                                         role_id=role_id, secret_id=secret_id), utc_now)
    lease = conn.login()
    assert lease.expires_at is not None and lease.renewable
    vault.put_kv("edgeproof/sensors/db", {"value": "v"})
    assert VaultKv(conn).read("db", SUBJECT) is not None
    wrong = VaultConnection(VaultSettings(address=vault.address, auth="approle",
                                          role_id=role_id, secret_id="0" * 32), utc_now)
    with pytest.raises(VaultRefused, match="invalid secret id"):
        wrong.login()


def test_secret_id_and_token_come_from_files(vault: VaultUnderTest, tmp_path: Path) -> None:
    role_id, secret_id = vault.add_approle(ATTESTOR_PATHS)
    (tmp_path / "sid").write_text(secret_id + "\n")
    VaultConnection(VaultSettings(address=vault.address, auth="approle", role_id=role_id,
                                  secret_id_file=tmp_path / "sid"), utc_now).login()
    (tmp_path / "token").write_text(vault.token(ATTESTOR_PATHS))
    VaultConnection(VaultSettings(address=vault.address, token_file=tmp_path / "token"),
                    utc_now).login()
    with pytest.raises(VaultRefused, match="cannot read"):
        VaultConnection(VaultSettings(address=vault.address, token_file=tmp_path / "none"),
                        utc_now).login()


def test_kubernetes_login_with_the_pod_token(vault: VaultUnderTest, tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZWRnZSJ9.c2ln"
    vault.add_kubernetes_role("edgeproof-attestor", jwt, ATTESTOR_PATHS)
    (tmp_path / "token").write_text(jwt)
    conn = VaultConnection(VaultSettings(
        address=vault.address, auth="kubernetes", kubernetes_role="edgeproof-attestor",
        kubernetes_jwt_file=tmp_path / "token"), utc_now)
    assert conn.login().renewable
    (tmp_path / "token").write_text(jwt + "forged")
    with pytest.raises(VaultRefused, match="permission denied"):
        conn.login()


def test_settings_name_what_each_auth_method_needs() -> None:
    with pytest.raises(ValueError, match="needs vault.token"):
        VaultSettings(address="http://v:8200")
    with pytest.raises(ValueError, match="role_id"):
        VaultSettings(address="http://v:8200", auth="approle", role_id="r")
    with pytest.raises(ValueError, match="kubernetes_role"):
        VaultSettings(address="http://v:8200", auth="kubernetes")
    with pytest.raises(ValueError, match="kv_path"):
        VaultSettings(address="http://v:8200", token="t", kv_path="x/{secret_value}/{name}")


def test_token_is_renewed_at_two_thirds_of_its_lease(vault: VaultUnderTest) -> None:
    role_id, secret_id = vault.add_approle(ATTESTOR_PATHS, ttl=3600, max_ttl=14400)
    clock = FakeClock()
    conn = VaultConnection(VaultSettings(address=vault.address, auth="approle",
                                         role_id=role_id, secret_id=secret_id), clock)
    conn.maintain()  # first: log in
    first = conn.lease
    assert first is not None and first.expires_at is not None
    clock.now += dt.timedelta(minutes=30)
    conn.maintain()  # not due yet
    assert conn.lease is first
    clock.now += dt.timedelta(minutes=11)  # 41 of 60 minutes: due
    token = conn.client.token
    conn.maintain()
    assert conn.lease is not first and conn.lease is not None
    assert conn.lease.obtained_at == clock.now
    assert conn.client.token == token  # renewed, not replaced


def test_a_revoked_token_is_replaced_by_logging_in_again(vault: VaultUnderTest) -> None:
    role_id, secret_id = vault.add_approle(ATTESTOR_PATHS)
    conn = VaultConnection(VaultSettings(address=vault.address, auth="approle",
                                         role_id=role_id, secret_id=secret_id), utc_now)
    conn.login()
    old = conn.client.token
    vault.revoke(old)
    vault.put_kv("edgeproof/sensors/db", {"value": "v"})
    assert VaultKv(conn).read("db", SUBJECT) is not None  # 403, log in, retry
    assert conn.client.token != old


def test_token_auth_cannot_log_in_again(vault: VaultUnderTest) -> None:
    token = vault.token(ATTESTOR_PATHS)
    kv = VaultKv(VaultConnection(VaultSettings(address=vault.address, token=token), utc_now))
    vault.revoke(token)
    with pytest.raises(VaultRefused):
        kv.read("db", SUBJECT)


# -- failing closed -------------------------------------------------------------------
def test_sealed_vault_fails_closed(vault: VaultUnderTest) -> None:
    pki_role(vault)
    settings = vault_settings(vault)
    conn = VaultConnection(settings, utc_now)
    pki, kv = VaultPki(conn, trust_domain=TRUST_DOMAIN), VaultKv(conn)
    vault.put_kv("edgeproof/sensors/db", {"value": "v"})
    vault.sealed = True
    try:
        for attempt in (lambda: pki.issue_workload(csr(), device_id="d", now=utc_now(),
                                                   ttl=dt.timedelta(hours=1)),
                        lambda: kv.read("db", SUBJECT), lambda: kv.health(),
                        lambda: pki.health(utc_now())):
            with pytest.raises(VaultSealed):
                attempt()
    finally:
        vault.sealed = False
    kv.health()


def test_unreachable_vault_fails_closed(vault: VaultUnderTest) -> None:
    settings = vault_settings(vault, timeout_seconds=2)
    vault.stop()
    conn = VaultConnection(settings, utc_now)
    with pytest.raises(VaultUnreachable):
        VaultPki(conn, trust_domain=TRUST_DOMAIN).issue_workload(
            csr(), device_id="d", now=utc_now(), ttl=dt.timedelta(hours=1))
    with pytest.raises(VaultUnreachable):
        VaultKv(conn).health()


def test_refusing_vault_fails_closed(vault: VaultUnderTest) -> None:
    pki_role(vault)
    conn = VaultConnection(vault_settings(vault, token=vault.token(["secret/data/other/*"])),
                           utc_now)
    with pytest.raises(VaultRefused, match="permission denied"):
        VaultPki(conn, trust_domain=TRUST_DOMAIN).issue_workload(
            csr(), device_id="d", now=utc_now(), ttl=dt.timedelta(hours=1))
    with pytest.raises(VaultRefused, match="permission denied"):
        VaultKv(conn).read("db", SUBJECT)


# -- PKI ---------------------------------------------------------------------------------
def test_ttl_is_clamped_to_the_roles_maximum(vault: VaultUnderTest) -> None:
    pki_role(vault)
    pki = VaultPki(VaultConnection(vault_settings(vault), utc_now), trust_domain=TRUST_DOMAIN)
    now = utc_now()
    issued = pki.issue_workload(csr(), device_id="d", now=now, ttl=dt.timedelta(days=30))
    assert issued.cert.not_valid_after_utc <= now + dt.timedelta(seconds=ROLE_MAX_TTL + 1)
    assert pki.clamp(dt.timedelta(days=30), now) == dt.timedelta(seconds=ROLE_MAX_TTL)


def test_dns_name_from_the_record_when_configured(vault: VaultUnderTest) -> None:
    pki_role(vault)
    pki = VaultPki(VaultConnection(vault_settings(vault, dns_suffix="devices.test"),
                                   utc_now), trust_domain=TRUST_DOMAIN)
    issued = pki.issue_workload(csr([x509.DNSName("evil.devices.test")]), device_id="d-9",
                                now=utc_now(), ttl=dt.timedelta(hours=1))
    sans = issued.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["d-9.devices.test"]


def test_a_role_that_copies_csr_names_is_caught(vault: VaultUnderTest) -> None:
    pki_role(vault, use_csr_sans=True, allowed_uri_sans=["spiffe://*"])
    pki = VaultPki(VaultConnection(vault_settings(vault), utc_now), trust_domain=TRUST_DOMAIN)
    greedy = csr([x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/device/victim")])
    with pytest.raises(IssuerMismatch, match="victim"):
        pki.issue_workload(greedy, device_id="attacker", now=utc_now(),
                           ttl=dt.timedelta(hours=1))


# -- KV v2 and response wrapping --------------------------------------------------------------
def test_wrapped_release_is_single_use(vault: VaultUnderTest) -> None:
    vault.put_kv("edgeproof/sensors/registry", {"value": "pull-secret-xyz"})
    kv = _kv(vault, wrap_ttl_seconds=60)
    released = kv.release("registry", SUBJECT)
    assert isinstance(released, WrappedSecret)
    assert released.version == 1 and released.ttl_seconds == 60
    assert "pull-secret-xyz" not in repr(released) and released.token not in repr(released)
    assert released.wrap_id == wrap_id(released.token)
    assert kv.wrapping_token_valid(released.token)
    device = hvac.Client(vault.address, token=released.token)
    unwrapped = device.adapter.post("/v1/sys/wrapping/unwrap")
    assert unwrapped["data"]["data"]["value"] == "pull-secret-xyz"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="not valid"):
        device.adapter.post("/v1/sys/wrapping/unwrap")
    assert not kv.wrapping_token_valid(released.token)


def test_kv_path_is_templated_with_safe_device_attributes(vault: VaultUnderTest) -> None:
    kv = _kv(vault, kv_path="edgeproof/{device_class}/{device_id}/{name}")
    vault.put_kv("edgeproof/sensors/dev-1/disk-key", {"value": "k1"})
    value = kv.read("disk-key", SUBJECT)
    assert value is not None and value.value == b"k1"
    assert kv.read("disk-key", SecretSubject("dev-2", "sensors")) is None
    for hostile in (SecretSubject("../../x", "sensors"), SecretSubject("d", "a/b"),
                    SecretSubject("d", "..")):
        with pytest.raises(VaultRefused, match="cannot be used in a Vault path"):
            kv.read("disk-key", hostile)


def test_secret_without_the_field_is_a_typed_error(vault: VaultUnderTest) -> None:
    from attestor.backends.secrets.vault_kv import VaultSecretShape

    vault.put_kv("edgeproof/sensors/odd", {"password": "p"})
    with pytest.raises(VaultSecretShape, match="no text field 'value'"):
        _kv(vault).read("odd", SUBJECT)
