"""`attestor tls issue` and `attestor serve` over HTTPS: the certificate profile, the refusal
of plain HTTP, and a real served listener (server and client certificates)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from typer.testing import CliRunner

from agent.sim.swtpm import free_port_pair
from attestor.cli import app
from attestor.serving import PLAIN_HTTP_REFUSED, uvicorn_tls_options
from attestor.settings import ConfigError, load_settings
from tests.tls import TestCa


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # at each use: certificates are issued during the test


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    cli("init", "-d", str(tmp_path / "data"), "--dev")
    return tmp_path / "data"


def issue(data: Path, *names: str, force: bool = False, code: int = 0) -> str:
    out = data.parent
    args = ["tls", "issue", "-d", str(data), "--dev", "--out-cert", str(out / "tls.pem"),
            "--out-key", str(out / "tls.key"), *names]
    return cli(*args, *(["--force"] if force else []), code=code)


def test_issue_makes_a_server_certificate_from_the_attestor_ca(data: Path) -> None:
    issue(data, "--dns", "attestor.example", "--dns", "localhost", "--ip", "127.0.0.1",
          "--ip", "::1")
    certs = x509.load_pem_x509_certificates((data.parent / "tls.pem").read_bytes())
    leaf, chain = certs[0], certs[1:]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["attestor.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]  # never usable as a client cert
    assert (leaf.not_valid_after_utc - now()) < dt.timedelta(days=91)
    root = x509.load_pem_x509_certificate((data / "ca" / "root.pem").read_bytes())
    verifier = PolicyBuilder().store(Store([root])).time(now())
    for name in (x509.DNSName("attestor.example"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verifier.build_server_verifier(name).verify(leaf, chain)
    key = serialization.load_pem_private_key((data.parent / "tls.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == leaf.public_key()
    assert (data.parent / "tls.key").stat().st_mode & 0o777 == 0o600


def test_issue_refuses_no_names_and_overwriting(data: Path) -> None:
    assert "at least one --dns" in issue(data, code=2)
    assert "--ip" in issue(data, "--ip", "not-an-address", code=2)
    issue(data, "--dns", "a.example")
    first = (data.parent / "tls.key").read_bytes()
    assert "exists; pass --force" in issue(data, "--dns", "a.example", code=1)
    assert (data.parent / "tls.key").read_bytes() == first
    issue(data, "--dns", "a.example", force=True)
    assert (data.parent / "tls.key").read_bytes() != first


def test_plain_http_needs_dev_or_an_explicit_choice(data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as refused:
        uvicorn_tls_options(load_settings(data), now())
    assert str(refused.value) == PLAIN_HTTP_REFUSED
    assert uvicorn_tls_options(load_settings(data, dev=True), now()) == {}
    assert uvicorn_tls_options(load_settings(data, tls={"insecure_http": True}), now()) == {}
    monkeypatch.setenv("EDGEPROOF_TLS__INSECURE_HTTP", "true")
    assert uvicorn_tls_options(load_settings(data), now()) == {}
    monkeypatch.delenv("EDGEPROOF_TLS__INSECURE_HTTP")
    (data / "attestor.toml").write_text("[tls]\ninsecure_http = true\n")
    assert uvicorn_tls_options(load_settings(data), now()) == {}


def test_serve_refuses_plain_http_with_one_line(data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPROOF_")}
    proc = subprocess.run([sys.executable, "-m", "attestor.cli", "serve", "-d", str(data)],
                          capture_output=True, text=True, env={**env, "COLUMNS": "60",
                          "EDGEPROOF_CA__PASSPHRASE": "a long and private passphrase"},
                          timeout=60, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {PLAIN_HTTP_REFUSED}"]


@pytest.mark.parametrize("settings, message", [
    ({"cert_file": "c.pem"}, "cert_file and key_file go together"),
    ({"client_ca_file": "ca.pem"}, "client_ca_file needs cert_file"),
    ({"cert_file": "c.pem", "key_file": "k.pem", "insecure_http": True}, "contradict"),
])
def test_inconsistent_tls_settings_are_refused(data: Path, settings: dict[str, object],
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(data, dev=True, tls=settings)


def test_unusable_files_are_refused_at_start(data: Path, tmp_path: Path) -> None:
    issue(data, "--dns", "localhost")
    cert, key = data.parent / "tls.pem", data.parent / "tls.key"
    other = tmp_path / "other.key"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cases = [({"cert_file": cert, "key_file": other}, "cannot be used with"),
             ({"cert_file": tmp_path / "missing.pem", "key_file": key}, "not a readable PEM"),
             ({"cert_file": cert, "key_file": key, "client_ca_file": tmp_path / "none.pem"},
              "client_ca_file")]
    for tls, message in cases:
        with pytest.raises(ConfigError, match=message):
            uvicorn_tls_options(load_settings(data, tls=tls), now())
    later = now() + dt.timedelta(days=200)
    with pytest.raises(ConfigError, match="issue a new one"):
        uvicorn_tls_options(load_settings(data, tls={"cert_file": cert, "key_file": key}), later)


def _wait_https(url: str, proc: subprocess.Popen[bytes], **kwargs: object) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "attestor serve exited"
        try:
            httpx.get(url, timeout=1, **kwargs)  # type: ignore[arg-type]
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("attestor serve did not start")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_serve_https_with_client_certificates(data: Path, tmp_path: Path) -> None:
    """A real `attestor serve --tls-cert --tls-key --tls-client-ca`: HTTPS verified with the
    attestor's root; no plain HTTP; TLS 1.1 refused; a client certificate required."""
    issue(data, "--dns", "localhost", "--ip", "127.0.0.1")
    clients = TestCa(tmp_path / "clients", "client CA")
    client_cert, client_key = clients.issue_client("operator-proxy")
    root = str(data / "ca" / "root.pem")
    port = free_port_pair()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "attestor.cli", "serve", "-d", str(data), "--dev",
         "--port", str(port), "--tls-cert", str(data.parent / "tls.pem"),
         "--tls-key", str(data.parent / "tls.key"), "--tls-client-ca", str(clients.root_pem)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        good = ssl.create_default_context(cafile=root)
        good.load_cert_chain(client_cert, client_key)
        _wait_https(f"https://127.0.0.1:{port}/healthz", proc, verify=good)
        for host in ("127.0.0.1", "localhost"):
            answer = httpx.get(f"https://{host}:{port}/readyz", verify=good, timeout=5)
            assert answer.status_code == 200, answer.text
        no_client_cert = ssl.create_default_context(cafile=root)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=no_client_cert, timeout=5)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        old = ssl.create_default_context(cafile=root)
        old.load_cert_chain(client_cert, client_key)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would offer TLS 1.1
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="localhost")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
