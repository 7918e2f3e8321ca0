"""One contract for every issuer and every secret store: the local CA and the embedded
store, and Vault's PKI and KV v2 (real dev server if on PATH, else the HTTP double).
The test run's summary names which Vault ran; each test's id names the backend."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from attestor.backends.secrets import SecretSubject, SecretValue
from identity.x509.profiles import spiffe_id
from tests.attestor.backends.conftest import (
    TRUST_DOMAIN,
    IssuerUnderTest,
    StoreUnderTest,
    csr,
    utc_now,
)

SUBJECT = SecretSubject("dev-1", "sensors", "m1")


def _names(cert: x509.Certificate) -> set[str]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in sans}


def test_issued_certificate_is_for_the_csr_key_and_chains(issuer_impl: IssuerUnderTest) -> None:
    request = csr()
    now = utc_now()
    issued = issuer_impl.issuer.issue_workload(request, device_id="dev-1", now=now,
                                               ttl=dt.timedelta(hours=1), serial=12345)
    assert issued.cert.public_key() == request.public_key
    PolicyBuilder().store(Store(issuer_impl.roots)).time(now).build_client_verifier().verify(
        issued.cert, list(issued.chain))
    roots = x509.load_pem_x509_certificates(issuer_impl.issuer.roots_pem().encode())
    assert roots == issuer_impl.roots
    if not issuer_impl.issuer.assigns_serials:
        assert issued.cert.serial_number == 12345
    assert issued.serial == f"{issued.cert.serial_number:x}"  # what the attestor records


def test_names_come_from_the_device_record_not_the_csr(issuer_impl: IssuerUnderTest) -> None:
    greedy = csr([x509.DNSName("bank.example"), x509.UniformResourceIdentifier(
        f"spiffe://{TRUST_DOMAIN}/device/someone-else"), x509.DNSName("localhost")],
        cn="admin")
    issued = issuer_impl.issuer.issue_workload(greedy, device_id="dev-1", now=utc_now(),
                                               ttl=dt.timedelta(hours=1))
    assert _names(issued.cert) == {spiffe_id(TRUST_DOMAIN, "dev-1")}


def test_lifetime_is_at_most_the_ttl_asked_for(issuer_impl: IssuerUnderTest) -> None:
    now = utc_now()
    issued = issuer_impl.issuer.issue_workload(csr(), device_id="dev-1", now=now,
                                               ttl=dt.timedelta(minutes=20))
    assert issued.cert.not_valid_after_utc <= now + dt.timedelta(minutes=20, seconds=1)
    assert issued.cert.not_valid_before_utc <= now


def test_issuer_reports_healthy(issuer_impl: IssuerUnderTest) -> None:
    issuer_impl.issuer.health(utc_now())


def test_store_reads_latest_version(store_impl: StoreUnderTest) -> None:
    assert store_impl.put("wifi/psk", SUBJECT, b"first value") == 1
    assert store_impl.put("wifi/psk", SUBJECT, b"second value") == 2
    value = store_impl.store.read("wifi/psk", SUBJECT)
    assert value == SecretValue("wifi/psk", 2, b"second value")
    assert "second value" not in repr(value)


def test_store_missing_secret_is_none(store_impl: StoreUnderTest) -> None:
    assert store_impl.store.read("not/there", SUBJECT) is None
    assert store_impl.store.release("not/there", SUBJECT) is None


def test_store_release_without_wrapping_is_the_value(store_impl: StoreUnderTest) -> None:
    store_impl.put("registry/pull", SUBJECT, b"pull-token-value")
    assert store_impl.store.release("registry/pull", SUBJECT) == SecretValue(
        "registry/pull", 1, b"pull-token-value")


def test_store_reports_healthy(store_impl: StoreUnderTest) -> None:
    store_impl.store.health()


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", ""])
def test_store_refuses_unsafe_names(store_impl: StoreUnderTest, name: str) -> None:
    from identity.errors import ServiceError

    with pytest.raises(ServiceError):
        store_impl.store.read(name, SUBJECT) if store_impl.kind.startswith("Vault") \
            else store_impl.put(name, SUBJECT, b"x")
