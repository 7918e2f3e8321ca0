"""The agent's view of the network: the attestor's TLS certificate verified against the
configured bundle (a wrong one is a typed error naming the attestor and the reason, never
a retry without TLS), several attestor URLs, and failover on the renewal backoff."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from agent.attest import attest_once, read_status
from agent.client import AttestorClient, TlsRefused, Unreachable, with_failover
from agent.config import ConfigError, load_config
from agent.renew import Backoff, Renewer
from agent.sim.swtpm import free_port_pair
from agent.tpm.openssl import TpmTlsError, needs_resource_manager
from tests.agent.network import TcpRelay, TinyServer
from tests.harness import Device, LiveAttestor, enroll_and_learn
from tests.tls import TestCa

DAY = dt.timedelta(days=1)


@pytest.fixture
def trusted(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path / "trusted", "trusted CA")


@pytest.fixture
def servers() -> Iterator[list[TinyServer]]:
    started: list[TinyServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[TinyServer], cert: tuple[Path, Path] | None = None) -> TinyServer:
    server = TinyServer(*cert) if cert else TinyServer()
    servers.append(server)
    return server


def test_a_certificate_from_the_bundle_verifies(trusted: TestCa,
                                                servers: list[TinyServer]) -> None:
    server = serve(servers, trusted.issue_server("localhost", "127.0.0.1"))
    for url in (server.url, server.url.replace("127.0.0.1", "localhost")):
        with AttestorClient(url, str(trusted.root_pem)) as client:
            client.health()
    assert server.requests == ["GET /healthz HTTP/1.1"] * 2


@pytest.mark.parametrize("case, reason, says", [
    ("other CA", "tls.untrusted", "not issued by a CA in the bundle"),
    ("impostor CA", "tls.untrusted", "not issued by a CA in the bundle"),
    ("wrong name", "tls.name_mismatch", "mismatch"),
    ("expired", "tls.certificate_expired", "expired"),
    ("not yet valid", "tls.certificate_not_yet_valid", "not yet valid"),
])
def test_a_wrong_certificate_is_a_typed_error_naming_attestor_and_reason(
        tmp_path: Path, trusted: TestCa, servers: list[TinyServer], case: str, reason: str,
        says: str) -> None:
    if case == "other CA":
        cert = TestCa(tmp_path / "other", "other CA").issue_server("127.0.0.1")
    elif case == "impostor CA":  # the trusted CA's name, another key
        cert = TestCa(tmp_path / "impostor", "x", subject=x509.load_pem_x509_certificate(
            trusted.root_pem.read_bytes()).subject).issue_server("127.0.0.1")
    elif case == "wrong name":
        cert = trusted.issue_server("attestor.elsewhere.example", "10.9.9.9")
    elif case == "expired":
        cert = trusted.issue_server("127.0.0.1", valid=(-10 * DAY, -DAY))
    else:
        cert = trusted.issue_server("127.0.0.1", valid=(DAY, 10 * DAY))
    server = serve(servers, cert)
    with AttestorClient(server.url, str(trusted.root_pem)) as client, \
            pytest.raises(TlsRefused) as refused:
        client.health()
    assert refused.value.reason == reason
    assert refused.value.url == server.url
    message = str(refused.value)
    assert server.url in message and reason in message and says in message
    assert str(trusted.root_pem) in message  # which bundle it was checked against
    assert server.requests == []  # no request went out without a verified TLS session


def test_a_plain_http_server_behind_an_https_url_is_refused_not_used(
        trusted: TestCa, servers: list[TinyServer]) -> None:
    plain = serve(servers)
    url = plain.url.replace("http://", "https://")
    with AttestorClient(url, str(trusted.root_pem)) as client, \
            pytest.raises(TlsRefused) as refused:
        client.health()
    assert refused.value.reason == "tls.handshake"
    assert "does not speak TLS" in str(refused.value)
    assert plain.requests == []  # nothing was sent in clear text


def test_without_a_bundle_the_system_store_is_used_and_says_so(
        trusted: TestCa, servers: list[TinyServer]) -> None:
    server = serve(servers, trusted.issue_server("127.0.0.1"))
    with AttestorClient(server.url) as client, pytest.raises(TlsRefused) as refused:
        client.health()
    assert "system CA store" in str(refused.value)


def test_configuration_of_urls_and_bundle(tmp_path: Path, trusted: TestCa,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("EDGE_AGENT_ATTESTOR_URLS",
                       "https://a.example:8443, https://b.example:8443/edge")
    config = load_config(state_dir=state, ca_bundle=trusted.root_pem)
    assert config.urls == ("https://a.example:8443", "https://b.example:8443/edge")
    monkeypatch.setenv("EDGE_AGENT_ATTESTOR_URLS", '["https://c.example"]')
    assert load_config(state_dir=state).urls == ("https://c.example",)
    monkeypatch.delenv("EDGE_AGENT_ATTESTOR_URLS")
    assert load_config(state_dir=state, attestor_url="https://one.example").urls == (
        "https://one.example",)  # the single-URL shorthand
    state.mkdir()
    (state / "agent.toml").write_text('attestor_urls = ["https://a.example", '
                                      '"https://b.example"]\n')
    config = load_config(state_dir=state, device_id="d1")
    config.save()
    assert load_config(state_dir=state).urls == ("https://a.example", "https://b.example")
    (state / "agent.toml").write_text('attestor_urls = ["https://a.example", '
                                      '"http://b.example"]\n')
    with pytest.raises(ConfigError, match="mixes https:// and http://"):
        load_config(state_dir=state)
    (state / "agent.toml").write_text("attestor_urls = []\n")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_config(state_dir=state)
    (state / "agent.toml").write_text('attestor_url = "http://a.example"\n')
    with pytest.raises(ConfigError, match="would verify nothing"):
        load_config(state_dir=state, ca_bundle=trusted.root_pem)


def test_one_shot_commands_try_each_url_until_one_answers(
        tmp_path: Path, trusted: TestCa, servers: list[TinyServer]) -> None:
    wrong = serve(servers, TestCa(tmp_path / "other", "other").issue_server("127.0.0.1"))
    good = serve(servers, trusted.issue_server("127.0.0.1"))
    dead = f"https://127.0.0.1:{free_port_pair()}"
    with AttestorClient([dead, wrong.url, good.url], str(trusted.root_pem)) as client:
        with_failover(client, client.health)
        assert client.base_url == good.url
    with AttestorClient([dead, wrong.url], str(trusted.root_pem)) as client, \
            pytest.raises(Unreachable):
        with_failover(client, client.health)


@pytest.fixture
def relays(https_attestor: LiveAttestor) -> Iterator[list[TcpRelay]]:
    pair = [TcpRelay(https_attestor.port), TcpRelay(https_attestor.port)]
    yield pair
    for relay in pair:
        relay.down()


@pytest.mark.e2e
@pytest.mark.tpm
def test_one_attestor_down_one_with_a_wrong_certificate_one_up(
        https_attestor: LiveAttestor, device: Device, relays: list[TcpRelay],
        servers: list[TinyServer], tmp_path: Path) -> None:
    """Enrollment and attestation over verified HTTPS; then the renewal loop meets a dead
    attestor and one with a certificate from another CA before the good one: each failure
    is recorded with its URL and reason, the next attempt goes to the next URL."""
    config = enroll_and_learn(https_attestor, device)
    assert config.urls[0].startswith("https://")
    up = relays[1].up()
    impostor = serve(servers, TestCa(tmp_path / "other", "other").issue_server("127.0.0.1"))
    dead = relays[0].url()
    config.attestor_urls = [dead, impostor.url, up.url()]
    with AttestorClient(config.urls, str(https_attestor.ca_bundle),
                        clock=lambda: https_attestor.clock().timestamp()) as client:
        renewer = Renewer(config, device.tpm, client, https_attestor.clock,
                          rng=random.Random(1))
        backoff = Backoff(rng=random.Random(1))
        errors = []
        for _ in range(2):
            delay = renewer.step(backoff)
            assert 0 <= delay <= 4  # the existing backoff: base 2 s, doubling
            errors.append(read_status(config.state_dir)["last_error"])
        assert dead in errors[0] and "unreachable" in errors[0]
        assert impostor.url in errors[1] and "tls.untrusted" in errors[1]
        assert impostor.requests == []
        renewer.step(backoff)  # the third URL answers
        assert client.base_url == up.url()
    status = read_status(config.state_dir)
    assert status["last_error"] is None and status["failures"] == 0
    cert = x509.load_pem_x509_certificate((config.output / "cert.pem").read_bytes())
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC)


@pytest.mark.e2e
@pytest.mark.tpm
def test_both_attestors_down_then_one_returns(
        https_attestor: LiveAttestor, device: Device, relays: list[TcpRelay]) -> None:
    config = enroll_and_learn(https_attestor, device)
    with https_attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, https_attestor.clock())
    before = (config.output / "cert.pem").read_bytes()
    https_attestor.clock.offset += dt.timedelta(minutes=50)  # renewal is due
    config.attestor_urls = [relays[0].url(), relays[1].url()]
    with AttestorClient(config.urls, str(https_attestor.ca_bundle),
                        clock=lambda: https_attestor.clock().timestamp()) as client:
        renewer = Renewer(config, device.tpm, client, https_attestor.clock,
                          rng=random.Random(2))
        backoff = Backoff(rng=random.Random(2))
        tried = []
        for _ in range(4):
            tried.append(client.base_url)
            assert renewer.step(backoff) <= 300
        assert tried == [relays[0].url(), relays[1].url()] * 2  # alternating
        assert backoff.attempt == 4 and renewer.failures == 4  # one backoff for both
        assert (config.output / "cert.pem").read_bytes() == before  # kept while away
        relays[1].up()
        for _ in range(2):  # the next attempt may still go to the one that is down
            renewer.step(backoff)
            if renewer.failures == 0:
                break
        assert renewer.failures == 0 and client.base_url == relays[1].url()
    assert (config.output / "cert.pem").read_bytes() != before


@pytest.mark.parametrize("tcti, allowed", [
    ("device:/dev/tpmrm0", True), ("tabrmd:bus_type=session", True), ("tabrmd", True),
    ("device:/dev/tpm0", False), ("swtpm:host=127.0.0.1,port=2321", False),
    ("mssim:host=localhost", False),
])
def test_device_mtls_needs_a_resource_manager(tcti: str, allowed: bool) -> None:
    if allowed:
        needs_resource_manager(tcti)
        return
    with pytest.raises(TpmTlsError, match="needs a TPM resource manager"):
        needs_resource_manager(tcti)
