"""Device mTLS with the TPM-resident workload key, end to end on swtpm behind tpm2-abrmd.

The attestor serves HTTPS with a certificate from its own CA; the device enrolls and
attests through tpm2-abrmd (as a device does through /dev/tpmrm0); the reference update
server requires mutual TLS with a client certificate from the attestor's CA and binds
the attestation-result token to it; `edge-agent fetch-update` (its own process: the TPM
provider is process-wide) proves the key with a handshake the TPM signs. Refused: a
client certificate from another CA (even with a TPM key), no client certificate, a
token bound to another certificate, a server certificate from another CA, and a TPM
reached without a resource manager.
"""

from __future__ import annotations

import glob
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from agent.attest import TOKEN_FILE, attest_once, workload_public_key
from agent.config import AgentConfig
from agent.sim.abrmd import Abrmd, SessionBus
from agent.sim.swtpm import free_port_pair
from attestor.auth.tokens import local_issuer
from deploy.examples.update_server.__main__ import server_options
from deploy.examples.update_server.app import Config, create_app
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.tls import TestCa, server_files
from tests.tools import require_tool

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
ARTIFACT = b"firmware 2.2.0 " * 5000


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionBus]:
    require_tool("dbus-daemon", "apt-get install dbus-daemon (scripts/sysdeps.sh)")
    require_tool("tpm2-abrmd", "apt-get install tpm2-abrmd (scripts/sysdeps.sh)")
    modules = glob.glob("/usr/lib/*/ossl-modules/tpm2.so")
    require_tool("tpm2.so", "apt-get install tpm2-openssl (scripts/sysdeps.sh)",
                 path=modules[0] if modules else None)
    session = SessionBus(tmp_path_factory.mktemp("dbus")).start()
    yield session
    session.stop()


@pytest.fixture
def attested(https_attestor: LiveAttestor, device: Device, bus: SessionBus,
             tmp_path: Path) -> Iterator[AgentConfig]:
    """A device enrolled and attested through tpm2-abrmd, its set in ``config.output``."""
    manager = Abrmd(bus, device.process.tcti, tmp_path / "abrmd.log")
    with device.released():  # abrmd holds swtpm's one connection from now on
        manager.start()
        device.tcti = manager.tcti
    try:
        config = enroll_and_learn(https_attestor, device)
        with https_attestor.client(config, device.tpm) as client:
            attest_once(config, device.tpm, client, now())
        yield config
    finally:
        with device.released():
            manager.stop()
            device.tcti = device.process.tcti


class UpdateServer:
    """The reference update server under uvicorn in a thread, with the TLS options
    ``python -m deploy.examples.update_server`` uses."""

    def __init__(self, attestor: LiveAttestor, root: Path, cert: tuple[Path, Path], *,
                 ask_for_client_certificates: bool = True) -> None:
        (root / "artifacts").mkdir(parents=True)
        (root / "artifacts" / "fw.bin").write_bytes(ARTIFACT)
        self.config = Config(artifacts=root / "artifacts", attestor_url=attestor.url,
                             issuer=local_issuer(attestor.settings.trust_domain),
                             roots_pem=attestor.ca_bundle.read_bytes(),
                             attestor_tls_ca=attestor.ca_bundle)
        port = free_port_pair()
        options = server_options(self.config, str(cert[0]), str(cert[1]),
                                 str(attestor.ca_bundle))
        if not ask_for_client_certificates:  # a misconfigured TLS layer in front of the app
            options = {"ssl_certfile": str(cert[0]), "ssl_keyfile": str(cert[1])}
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(self.config), host="127.0.0.1", port=port, log_level="warning",
            log_config=None, **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            assert self.thread.is_alive(), "the update server did not start"
            time.sleep(0.01)
        self.url = f"https://localhost:{port}/updates/fw.bin"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def server_cert(attestor: LiveAttestor, directory: Path) -> tuple[Path, Path]:
    """An update-server certificate from the attestor's CA (`attestor tls issue`)."""
    return server_files(attestor.services.ca, directory, now())


@pytest.fixture
def update_server(https_attestor: LiveAttestor, tmp_path: Path) -> Iterator[UpdateServer]:
    server = UpdateServer(https_attestor, tmp_path / "update-server",
                          server_cert(https_attestor, tmp_path / "update-server-tls"))
    yield server
    server.stop()


def fetch(config: AgentConfig, bus: SessionBus, url: str, out: Path, ca: Path,
          output_dir: Path | None = None, tcti: str | None = None,
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **bus.env(), "COLUMNS": "200"}
    if output_dir is not None:
        env["EDGE_AGENT_OUTPUT_DIR"] = str(output_dir)
    if tcti is not None:
        env["EDGE_AGENT_TCTI"] = tcti
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "agent", "fetch-update", url, "--out", str(out),
         "--state-dir", str(config.state_dir), "--ca-bundle", str(ca)],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def copy_set(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("cert.pem", "chain.pem", "key.pem", TOKEN_FILE):
        shutil.copyfile(source / name, target / name)
    return target


def test_update_over_mutual_tls_with_the_tpm_key(
        attested: AgentConfig, bus: SessionBus, update_server: UpdateServer,
        https_attestor: LiveAttestor, device: Device, tmp_path: Path) -> None:
    ca = https_attestor.ca_bundle
    started = time.monotonic()
    ran = fetch(attested, bus, update_server.url, tmp_path / "fw.bin", ca)
    elapsed = time.monotonic() - started
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "fw.bin").read_bytes() == ARTIFACT
    assert "fetched" in ran.stdout
    print(f"fetch-update over mTLS (process start, provider, handshake, download): "
          f"{elapsed:.2f} s")

    # the token of the previous certificate, with the current certificate and TPM key
    earlier = copy_set(attested.output, tmp_path / "earlier")
    with https_attestor.client(attested, device.tpm) as client:  # beside the provider's
        attest_once(attested, device.tpm, client, now())  # session: abrmd shares the TPM
    mixed = copy_set(attested.output, tmp_path / "mixed")
    shutil.copyfile(earlier / TOKEN_FILE, mixed / TOKEN_FILE)
    ran = fetch(attested, bus, update_server.url, tmp_path / "no.bin", ca, output_dir=mixed)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "gate.binding_mismatch" in ran.stderr
    assert not (tmp_path / "no.bin").exists()

    # a TPM key with a certificate from another CA, and the device's own valid token
    key = device.tpm.create_workload_key(attested.srk_handle)
    other = TestCa(tmp_path / "other-ca", "other CA")
    forged = _certificate_for(other, workload_public_key(key))
    rogue = copy_set(attested.output, tmp_path / "rogue")
    (rogue / "key.pem").write_bytes(key.to_pem())
    (rogue / "cert.pem").write_bytes(forged)
    (rogue / "chain.pem").write_bytes(other.root_pem.read_bytes())
    ran = fetch(attested, bus, update_server.url, tmp_path / "no.bin", ca, output_dir=rogue)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "tls.client_certificate_refused" in ran.stderr
    assert not (tmp_path / "no.bin").exists()

    # no client certificate at all: the TLS layer refuses
    no_cert = ssl.create_default_context(cafile=ca)
    with pytest.raises(httpx.TransportError):
        httpx.get(update_server.url, verify=no_cert, timeout=10,
                  headers={"X-Edgeproof-Attestation": (attested.output / TOKEN_FILE)
                           .read_text()})

    # the TPM reached without a resource manager: refused before any TPM use
    ran = fetch(attested, bus, update_server.url, tmp_path / "no.bin", ca,
                tcti=device.process.tcti)
    assert ran.returncode == 1 and "needs a TPM resource manager" in ran.stderr


def test_the_server_certificate_is_verified_with_the_provider_loaded(
        attested: AgentConfig, bus: SessionBus, https_attestor: LiveAttestor,
        tmp_path: Path) -> None:
    """With TPM signatures preferred, verification runs in the TPM: it must still refuse
    a server certificate from another CA (here under the attestor CA's very name)."""
    trusted = x509.load_pem_x509_certificate(https_attestor.ca_bundle.read_bytes())
    impostor = TestCa(tmp_path / "impostor", "x", subject=trusted.subject)
    server = UpdateServer(https_attestor, tmp_path / "impostor-server",
                          impostor.issue_server("localhost", "127.0.0.1"))
    try:
        ran = fetch(attested, bus, server.url, tmp_path / "no.bin", https_attestor.ca_bundle)
    finally:
        server.stop()
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "update server" in ran.stderr and "tls.untrusted" in ran.stderr
    assert not (tmp_path / "no.bin").exists()


def test_mtls_mode_refuses_a_request_without_a_client_certificate_in_the_app(
        https_attestor: LiveAttestor, tmp_path: Path) -> None:
    """Behind a TLS layer that asked for no client certificate, the app still refuses."""
    server = UpdateServer(https_attestor, tmp_path / "lax-server",
                          server_cert(https_attestor, tmp_path / "lax-tls"),
                          ask_for_client_certificates=False)
    try:
        answer = httpx.get(server.url, headers={"X-Edgeproof-Attestation": "x"}, timeout=10,
                           verify=ssl.create_default_context(cafile=https_attestor.ca_bundle))
    finally:
        server.stop()
    assert (answer.status_code, answer.json()["code"]) == (401, "certificate.missing")


def _certificate_for(ca: TestCa, public: object) -> bytes:
    import datetime as dt

    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    moment = now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")]))
            .issuer_name(ca.ca.cert.subject).public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - dt.timedelta(minutes=5))
            .not_valid_after(moment + dt.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca.ca.key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)
