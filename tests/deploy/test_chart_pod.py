"""The real attestor and agent started on exactly what the chart mounts (tests/deploy/pod.py
lays a rendered pod's volumes and environment out locally): the Secrets an operator makes
from `attestor init` on an admin host, the migration hook's environment alone migrates a
real PostgreSQL, and the serving pod's layout answers /readyz with Vault (Kubernetes auth
through the projected token) while writing nothing at all: no writable volume is needed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from agent.config import DEFAULT_EVENT_LOG, DEFAULT_IMA_LOG, DEFAULT_STATE_DIR, load_config
from agent.sim.swtpm import Manufacturer
from tests.attestor.backends.conftest import ATTESTOR_PATHS, pki_role
from tests.deploy.chart import Doc, example, one, render
from tests.deploy.pod import SERVICE_ACCOUNT_JWT, Cluster, lay_out, rebase_paths, tree
from tests.vault import VaultUnderTest

pytestmark = [pytest.mark.deploy, pytest.mark.pg]

PASSPHRASE = "a long passphrase kept in a Secret"
CA_FILES = ("root.pem", "root.key", "issuing.pem", "issuing.key", "signing.key")
WRITES: list[str] | None = None  # write-mode opens while recording (audit hook below)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if WRITES is None or event != "open":
        return
    path, mode, flags = args
    writing = any(c in str(mode or "") for c in "wax+") or bool(
        (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    if writing:
        WRITES.append(str(path))


sys.addaudithook(_audit)


def _admin_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`attestor init` on the operator's machine; the README turns its files into Secrets."""
    from attestor.cli import app

    admin = tmp_path / "admin"
    with monkeypatch.context() as m:
        m.setenv("EDGEPROOF_CA__PASSPHRASE", PASSPHRASE)
        result = CliRunner().invoke(app, ["init", "-d", str(admin)])
    assert result.exit_code == 0, result.output
    return admin


def _pod(docs: list[Doc], kind: str, suffix: str = "") -> tuple[Doc, Doc]:
    pod = one(docs, kind, suffix)["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


async def _get(app: Any, *paths: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://attestor") as client:
        return [await client.get(path) for path in paths]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("EDGEPROOF_", "EDGE_AGENT_")):
            monkeypatch.delenv(name)
    yield


@pytest.mark.usefixtures("environment")
def test_production_pod_layout_migrates_and_serves_ready_without_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str, vault: VaultUnderTest,
        manufacturer: Manufacturer) -> None:
    global WRITES
    from attestor.app import create_app
    from attestor.cli import app
    from attestor.services.context import build_services
    from attestor.settings import load_settings

    admin = _admin_host(tmp_path, monkeypatch)
    vault.add_kubernetes_role("edgeproof-attestor", SERVICE_ACCOUNT_JWT, ATTESTOR_PATHS)
    pki_role(vault)
    docs = render(example("production"), values={"vault": {
        "address": vault.address, "caBundle": {"configMap": ""}, "pki": {"mount": "pki"}}})
    cluster = Cluster(secrets={
        # kubectl create secret generic edgeproof-ca --from-file=admin/ca (root.key too:
        # the chart's items keep it out of the pod)
        "edgeproof-ca": {f: (admin / "ca" / f).read_bytes() for f in CA_FILES},
        "edgeproof-ca-passphrase": {"passphrase": PASSPHRASE.encode()},
        "edgeproof-database": {"url": pg_url.encode()},
        # serve's --tls-cert/--tls-key files; not read by what this test runs
        "edgeproof-tls": {"tls.crt": b"unused here", "tls.key": b"unused here"},
    }, config_maps={"edgeproof-ek-roots": {
        "vendor-root.pem": manufacturer.root_certificate.read_bytes(),
        "vendor-intermediate.pem": manufacturer.intermediate_certificate.read_bytes()}})
    cluster.add_config_maps(docs)
    settings_map = cluster.config_maps["rel-edgeproof"]

    # 1. The pre-install hook: its environment alone migrates the database.
    job_pod, job = _pod(docs, "Job", "-migrate")
    for name, value in lay_out(job_pod, job, tmp_path / "job", cluster).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, job["args"])
    assert result.exit_code == 0 and "database at revision" in result.output, result.output

    # 2. A replica, on the Secrets and ConfigMaps it mounts.
    root = tmp_path / "pod"
    settings_map["attestor.toml"] = rebase_paths(settings_map["attestor.toml"].decode(),
                                                 root).encode()
    pod, attestor = _pod(docs, "Deployment")
    env = lay_out(pod, attestor, root, cluster)
    assert set(env) == {"EDGEPROOF_DATA_DIR", "EDGEPROOF_CONFIG", "EDGEPROOF_DATABASE_URL"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ca_dir = Path(env["EDGEPROOF_DATA_DIR"]) / "ca"
    assert sorted(p.name for p in ca_dir.iterdir()) == ["issuing.key", "issuing.pem",
                                                        "root.pem", "signing.key"]
    before = tree(root)
    WRITES = []
    try:
        settings = load_settings(Path(env["EDGEPROOF_DATA_DIR"]))
        services = build_services(settings)
        ready, jwks = asyncio.run(_get(create_app(services), "/readyz",
                                       "/.well-known/jwks.json"))
        writes, WRITES = WRITES, None
    finally:
        WRITES = None
    assert (settings.issuer, settings.secrets.backend, settings.vault and settings.vault.auth
            ) == ("vault", "vault", "kubernetes")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "database": "ok", "issuer": "ok", "secrets": "ok",
                            "signing_key": "ok"}
    assert jwks.status_code == 200 and jwks.json()["keys"]
    assert len(services.trust.roots) == 1 and not services.trust.rejected
    # Read-only root filesystem, read-only mounts, no emptyDir: nothing may be written.
    assert tree(root) == before
    assert writes == [], f"the attestor opened files for writing: {writes}"
    services.engine.dispose()


@pytest.mark.usefixtures("environment")
def test_agent_daemonset_layout_is_a_valid_agent_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(example("agent"))
    pod, agent = _pod(docs, "DaemonSet", "-agent")
    bundle = b"-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n"
    cluster = Cluster(config_maps={"edgeproof-attestor-ca": {"ca.pem": bundle}})
    host = {v["name"]: v for v in pod["volumes"]}
    # hostPath volumes: the node's directories, here empty local ones.
    pod = {**pod, "volumes": [{"name": v["name"], "emptyDir": {}} if "hostPath" in v else v
                              for v in pod["volumes"]]}
    env = lay_out(pod, agent, tmp_path, cluster)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    assert config.state_dir == tmp_path / str(DEFAULT_STATE_DIR).lstrip("/")
    assert config.tcti == "device:/dev/tpmrm0"
    assert config.ca_bundle is not None and config.ca_bundle.read_bytes() == bundle
    # The securityfs mount holds the agent's default event logs.
    security = next(m for m in agent["volumeMounts"] if m["name"] == "securityfs")
    assert host["securityfs"]["hostPath"]["path"] == security["mountPath"]
    for log in (DEFAULT_EVENT_LOG, DEFAULT_IMA_LOG):
        assert log.is_relative_to(security["mountPath"])
    # The liveness probe is a real command: on a node not yet provisioned it says
    # "unhealthy" (exit 1), not a usage error (2).
    probe = agent["livenessProbe"]["exec"]["command"]
    done = subprocess.run([str(Path(sys.executable).parent / probe[0]), *probe[1:]],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not provisioned" in done.stdout
