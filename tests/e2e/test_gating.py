"""Gating end to end on swtpm: attestation-result tokens, the gate API, the reference
update server and `edge-agent fetch-update`; key rotation with overlap."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from agent.attest import TOKEN_FILE, attest_once, collect_evidence
from agent.cli import app as agent_cli
from agent.client import AttestorError
from agent.config import AgentConfig
from agent.fetch import FetchRefused, fetch_update
from agent.sim.swtpm import free_port_pair
from attestor.auth import apikeys
from attestor.auth.tokens import local_issuer
from deploy.examples.update_server.app import Config, create_app
from identity import gate
from identity.gate import GateRefused
from identity.policy import GateRule
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
ARTIFACT = b"firmware image 2.1.0\n" * 1000


def set_gates(attestor: LiveAttestor, *rules: GateRule) -> None:
    from attestor.services.policies import policy_for, set_policy

    with attestor.services.session() as session, session.begin():
        document, _ = policy_for(session, "default")
        set_policy(session, "default", document.model_copy(update={"gates": rules}), "test",
                   attestor.clock())


def attested(attestor: LiveAttestor, device: Device) -> AgentConfig:
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    return config


def jwks(attestor: LiveAttestor) -> dict[str, object]:
    data: dict[str, object] = httpx.get(f"{attestor.url}/.well-known/jwks.json").json()
    return data


def need(attestor: LiveAttestor) -> gate.Requirements:
    return gate.Requirements(issuer=local_issuer(attestor.settings.trust_domain))


def cert_der(config: AgentConfig) -> bytes:
    cert = x509.load_pem_x509_certificate((config.output / "cert.pem").read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def _tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a localhost server certificate for the update server's TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "update server test CA")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(1).not_valid_before(start)
          .not_valid_after(start + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(name).public_key(server_key.public_key())
              .serial_number(2).not_valid_before(start)
              .not_valid_after(start + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                             critical=False)
              .sign(key, hashes.SHA256()))
    paths = root / "ca.pem", root / "server.pem", root / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


@pytest.fixture
def update_server(attestor: LiveAttestor, tmp_path: Path) -> Iterator[tuple[str, Path, Config]]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "firmware-2.1.0.bin").write_bytes(ARTIFACT)
    with attestor.services.session() as session, session.begin():
        gate_key = apikeys.create(session, "update server", "gatekeeper", attestor.clock())
    config = Config(artifacts=artifacts, attestor_url=attestor.url,
                    issuer=local_issuer(attestor.settings.trust_domain),
                    roots_pem=httpx.get(f"{attestor.url}/v1/ca").content, gate_api_key=gate_key,
                    client_auth="signature")  # mTLS: tests/e2e/test_device_mtls.py
    ca, cert, key = _tls_files(tmp_path)
    port = free_port_pair()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port,
                                           ssl_certfile=str(cert), ssl_keyfile=str(key),
                                           log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"https://localhost:{port}", ca, config
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_passing_attestation_yields_a_bound_ear_token(attestor: LiveAttestor,
                                                      device: Device) -> None:
    config = attested(attestor, device)
    token = (config.output / TOKEN_FILE).read_text()
    result = gate.verify(token, jwks(attestor), need(attestor), now(), cert_der(config))
    assert (result.device_id, result.status) == (config.device_id, "affirming")
    assert result.vector["instance-identity"] == 2 and result.vector["hardware"] == 2
    assert result.policy_id.startswith("edgeproof:policy/default/v")
    assert result.expires_at - result.issued_at == dt.timedelta(minutes=10)
    assert json.loads((config.output / "attestation.json").read_text())["verdict"] == "pass"
    with pytest.raises(GateRefused) as refused:  # a bearer token is not an attestation result
        gate.verify(attestor.token("admin"), jwks(attestor), need(attestor), now(), None)
    assert refused.value.code == "gate.claim_missing"

    # a relying party's nonce, carried by the device into its attestation, comes back
    with attestor.client(config, device.tpm) as client:
        challenge = client.challenge(str(config.device_id))
        evidence = collect_evidence(config, device.tpm, str(config.device_id), challenge)
        answer = client.attest(str(config.device_id),
                               {**evidence.body, "ear_nonce": "cnAtbm9uY2UtMTIzNA"})
    nonce_need = gate.Requirements(issuer=need(attestor).issuer, nonce="cnAtbm9uY2UtMTIzNA")
    assert gate.verify(str(answer.token), jwks(attestor), nonce_need, now(), None).device_id


def test_update_is_served_only_to_attested_devices_holding_their_keys(
        attestor: LiveAttestor, device: Device, other_device: Device,
        update_server: tuple[str, Path, Config], tmp_path: Path) -> None:
    url, ca, server_config = update_server
    device_a, device_b = attested(attestor, device), attested(attestor, other_device)
    set_gates(attestor, GateRule(action="update:*", max_age_seconds=600))
    target = f"{url}/updates/firmware-2.1.0.bin"

    with device.released():  # the device's own command, as an operator would run it
        result = CliRunner().invoke(agent_cli, ["fetch-update", target, "--out",
                                                str(tmp_path / "a.bin"), "--state-dir",
                                                str(device_a.state_dir), "--ca-bundle", str(ca),
                                                "--client-auth", "signature"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.bin").read_bytes() == ARTIFACT

    def fetch_as(config: AgentConfig, dev: Device) -> FetchRefused:
        with pytest.raises(FetchRefused) as refused:
            fetch_update(config, target, tmp_path / "x.bin", str(ca), auth="signature",
                         tpm=dev.tpm)
        return refused.value

    # device B presents device A's token (copied) with its own certificate and key
    stolen = replace(device_b, output_dir=tmp_path / "b-with-a-token")
    _copy_set(device_b.output, stolen.output, token_from=device_a.output)
    assert fetch_as(stolen, other_device).code == "gate.binding_mismatch"
    # ... or A's token and certificate under A's name, without A's key (B's TPM signs)
    posing = replace(device_b, device_id=device_a.device_id, output_dir=tmp_path / "posing")
    _copy_set(device_a.output, posing.output, key_from=device_b.output)
    refused = fetch_as(posing, other_device)
    assert (refused.status, refused.code) == (401, "auth.invalid")

    # device B reboots with a tampered boot loader: refused, its reasons named
    other_device.reboot(tamper="bootloader")
    with attestor.client(device_b, other_device.tpm) as client, pytest.raises(AttestorError):
        attest_once(device_b, other_device.tpm, client, now())
    refused = fetch_as(device_b, other_device)  # its old token is still unexpired
    assert refused.code == "gate.denied"
    assert "gate.last_attestation_failed" in refused.reasons
    assert "policy.pcr_mismatch" in refused.reasons

    # device A quarantined: refused at once, although its token is unexpired
    httpx.post(f"{attestor.url}/v1/devices/{device_a.device_id}/quarantine",
               json={"reason": "incident 7"}, headers=attestor.headers("admin"))
    refused = fetch_as(device_a, device)
    assert (refused.code, refused.reasons) == ("gate.denied", ["gate.device_not_active"])
    released_ = httpx.post(f"{attestor.url}/v1/devices/{device_a.device_id}/release",
                           json={"reason": "cleared"}, headers=attestor.headers("admin"))
    assert released_.status_code == 200, released_.text
    fetch_update(device_a, target, tmp_path / "again.bin", str(ca), auth="signature",
                 tpm=device.tpm)

    # the token expires (ten minutes later by the update server's clock)
    server_config.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
    assert fetch_as(device_a, device).code == "gate.expired"
    decisions = httpx.get(f"{attestor.url}/v1/audit", params={"action": "gate.decision"},
                          headers=attestor.headers("auditor")).json()["items"]
    assert {(d["outcome"], d["details"]["decision"]) for d in decisions} == {
        ("success", "allow"), ("refused", "deny")}
    assert all(d["reasons"] for d in decisions if d["outcome"] == "refused")


def _copy_set(source: Path, target: Path, *, token_from: Path | None = None,
              key_from: Path | None = None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("cert.pem", "chain.pem", "key.pem", TOKEN_FILE):
        origin = source
        if name == TOKEN_FILE and token_from is not None:
            origin = token_from
        if name == "key.pem" and key_from is not None:
            origin = key_from
        (target / name).unlink(missing_ok=True)
        (target / name).write_bytes((origin / name).read_bytes())


def test_gate_decisions_follow_rules_state_and_age(attestor: LiveAttestor, device: Device,
                                                   other_device: Device) -> None:
    fresh = enroll_and_learn(attestor, other_device)  # its only attestation was refused
    config = attested(attestor, device)

    def decide(device_id: str, action: str) -> dict[str, object]:
        response = httpx.post(f"{attestor.url}/v1/gate/decisions",
                              json={"device_id": device_id, "action": action},
                              headers=attestor.headers("gatekeeper"))
        assert response.status_code == 200, response.text
        answer: dict[str, object] = response.json()
        return answer

    assert decide(str(config.device_id), "update:firmware/stable")["reasons"] == ["gate.no_rule"]
    set_gates(attestor, GateRule(action="update:firmware/*", max_age_seconds=300),
              GateRule(action="workload:payments", claims={"file-system": "affirming"}),
              GateRule(action="workload:telemetry", claims={"executables": "affirming"}))
    allowed = decide(str(config.device_id), "update:firmware/stable")
    assert allowed["decision"] == "allow" and allowed["reasons"] == []
    assert allowed["attestation"]["status"] == "affirming"  # type: ignore[index]
    assert decide(str(config.device_id), "workload:telemetry")["decision"] == "allow"
    # this class's policy appraises no IMA list: no file-system claim to meet the rule
    assert decide(str(config.device_id), "workload:payments")["reasons"] == [
        "gate.claim_insufficient"]
    assert decide(str(config.device_id), "workload:other")["reasons"] == ["gate.no_rule"]
    denied = decide(str(fresh.device_id), "update:firmware/stable")
    assert denied["reasons"][:2] == ["gate.last_attestation_failed", "policy.no_reference"]
    attestor.clock.offset = dt.timedelta(minutes=6)
    assert decide(str(config.device_id), "update:firmware/stable")["reasons"] == [
        "gate.attestation_stale"]
    assert httpx.post(f"{attestor.url}/v1/gate/decisions",
                      json={"device_id": str(config.device_id), "action": "update:x"},
                      headers=attestor.headers("auditor")).status_code == 403


def test_rotated_keys_verify_old_tokens_until_they_expire(attestor: LiveAttestor,
                                                          device: Device) -> None:
    config = attested(attestor, device)
    old_token = (config.output / TOKEN_FILE).read_text()
    old_bearer = attestor.token("auditor")
    old_kid = json.loads(base64.urlsafe_b64decode(old_token.split(".")[0] + "==="))["kid"]
    with attestor.services.session() as session, session.begin():
        new_kid, retired = attestor.services.keys.rotate(session, attestor.clock())
    assert retired == [old_kid]
    assert {k["kid"] for k in jwks(attestor)["keys"]} == {old_kid, new_kid}  # type: ignore[union-attr]
    assert gate.verify(old_token, jwks(attestor), need(attestor), now(), cert_der(config))
    assert httpx.get(f"{attestor.url}/v1/audit", headers={
        "Authorization": f"Bearer {old_bearer}"}).status_code == 200

    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    new_token = (config.output / TOKEN_FILE).read_text()
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "==="))["kid"] == new_kid

    attestor.clock.offset = dt.timedelta(minutes=12)  # past the old tokens' lifetime
    published = jwks(attestor)
    assert {k["kid"] for k in published["keys"]} == {new_kid}  # type: ignore[union-attr]
    later = now() + dt.timedelta(minutes=12)
    with pytest.raises(GateRefused) as refused:
        gate.verify(old_token, published, need(attestor), later, cert_der(config))
    assert refused.value.code == "gate.key_unknown"
    report = httpx.get(f"{attestor.url}/v1/audit/verify", headers=attestor.headers("auditor"))
    assert report.json()["ok"] is True
