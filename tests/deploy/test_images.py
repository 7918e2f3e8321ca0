"""The container images, built as `make images` builds them and run as production runs them:
read-only root file system, every capability dropped, no privilege gain, uid 10001, state only
in volumes. The attestor answers /readyz from the host; the agent, from its image, reaches an
swtpm on the host, reads its EK certificate, provisions against the attestor's image and
`edge-agent doctor` then reports exactly what a container without event logs lacks."""

from __future__ import annotations

import errno
import json
import socket
import ssl
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent.sim.swtpm import Manufacturer, SwtpmProcess
from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE, Endorsement, Tpm
from tests.deploy.images import (
    LOCKED_DOWN,
    ROOT,
    Built,
    Podman,
    build,
    owned_by_image_user,
    process_status,
    require_image_tools,
)

pytestmark = [pytest.mark.images, pytest.mark.tpm, pytest.mark.timeout(1800)]

PASSPHRASE = "image test: CA passphrase"
TLS_CERT = "/var/lib/edgeproof/tls/tls.crt"
TLS_KEY = "/var/lib/edgeproof/tls/tls.key"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


class BuildTime:
    """Says in the run's summary (visible with -q) how long the image build took."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.write_line(f"container images: built by scripts/images.sh in "
                                    f"{self.seconds:.0f} s")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Built:
    require_image_tools()
    built = build(tmp_path_factory.mktemp("images"))
    pytestconfig.pluginmanager.register(BuildTime(built.seconds), "edgeproof-image-build-time")
    return built


@pytest.fixture(scope="module")
def podman(images: Built) -> Podman:
    return Podman(images.env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    container: str
    url: str
    data: Path
    enroller_key: str


@pytest.fixture(scope="module")
def served(images: Built, podman: Podman, manufacturer: Manufacturer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`attestor init`, `trust add`, `apikey create`, then `attestor serve` detached, each in
    the locked-down attestor image on one data volume."""
    data = owned_by_image_user(tmp_path_factory.mktemp("attestor") / "data")
    trust = tmp_path_factory.mktemp("trust")
    trust.chmod(0o755)
    for name, source in (("root.pem", manufacturer.root_certificate),
                         ("intermediate.pem", manufacturer.intermediate_certificate)):
        (trust / name).write_bytes(source.read_bytes())
        (trust / name).chmod(0o644)
    # The passphrase reaches the container from podman's environment, never its command line.
    podman.env["EDGEPROOF_CA__PASSPHRASE"] = PASSPHRASE
    volume = ("-v", f"{data}:/var/lib/edgeproof", "-e", "EDGEPROOF_CA__PASSPHRASE")
    podman.run(images.attestor, "init", options=volume)
    podman.run(images.attestor, "trust", "add", "/trust/root.pem", "/trust/intermediate.pem",
               options=(*volume, "-v", f"{trust}:/trust:ro"))
    key = podman.run(images.attestor, "apikey", "create", "--name", "image-test",
                     "--role", "enroller", options=volume).stdout.strip()
    # HTTPS from a certificate of the attestor's own CA; the image's default command
    # (`serve`) with the TLS settings in its environment, as the chart runs it.
    podman.run(images.attestor, "tls", "issue", "--dns", "localhost", "--ip", "127.0.0.1",
               "--out-cert", TLS_CERT, "--out-key", TLS_KEY, options=volume)
    port = free_port()
    name = f"edgeproof-test-attestor-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *LOCKED_DOWN, *volume, "-e", f"EDGEPROOF_PORT={port}",
           "-e", f"EDGEPROOF_TLS__CERT_FILE={TLS_CERT}", "-e", f"EDGEPROOF_TLS__KEY_FILE={TLS_KEY}",
           images.attestor)
    url = f"https://localhost:{port}"
    try:
        wait_ready(podman, name, url, data / "ca" / "root.pem")
        yield Served(name, url, data, key)
    finally:
        podman("rm", "--force", "--volumes", name, check=False)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def wait_ready(podman: Podman, name: str, url: str, ca: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"{url}/readyz", timeout=2, verify=trusting(ca))
        except httpx.HTTPError as exc:
            last = repr(exc)
        else:
            if reply.status_code == 200:
                return
            last = f"{reply.status_code} {reply.text}"
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            break
        time.sleep(0.5)
    logs = podman("logs", name, check=False)
    pytest.fail(f"the attestor container did not become ready ({last}):\n"
                f"{logs.stdout[-3000:]}\n{logs.stderr[-3000:]}")


def test_image_configuration(images: Built, podman: Podman) -> None:
    """Both images: uid/gid 10001, exec-form entrypoint, command and HEALTHCHECK (nothing
    needs a shell), the writable paths declared as volumes, OCI labels of this tree."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    expected = {
        images.attestor: (["attestor"], ["serve"], "/var/lib/edgeproof", "edgeproof-attestor"),
        images.agent: (["edge-agent"], ["run"], "/var/lib/edge-agent", "edgeproof-agent"),
    }
    for image, (entrypoint, command, state, title) in expected.items():
        info = json.loads(podman("image", "inspect", image).stdout)[0]
        config = info["Config"]
        assert config["User"] == "10001:10001"
        assert config["Entrypoint"] == entrypoint
        assert config["Cmd"] == command
        assert set(config["Volumes"]) == {state, "/tmp"}
        assert info["Healthcheck"]["Test"][0] == "CMD", info["Healthcheck"]  # not CMD-SHELL
        labels = config["Labels"]
        assert labels["org.opencontainers.image.title"] == title
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.revision"] in (head, f"{head}-dirty")
        assert labels["org.opencontainers.image.source"]


def test_attestor_serves_ready_read_only_as_non_root(podman: Podman, served: Served) -> None:
    ca = trusting(served.data / "ca" / "root.pem")
    reply = httpx.get(f"{served.url}/readyz", timeout=5, verify=ca)
    assert reply.status_code == 200, reply.text
    assert reply.json()["ready"] is True
    assert httpx.get(f"{served.url}/healthz", timeout=5, verify=ca).status_code == 200
    with pytest.raises(httpx.HTTPError):  # HTTPS only: no plain-HTTP answer on the port
        httpx.get(served.url.replace("https://", "http://") + "/healthz", timeout=5)

    # The serving process itself, as the host sees it: no shell in front of it, uid/gid
    # 10001, no capabilities at all, no privilege gain.
    pid = int(podman("inspect", "--format", "{{.State.Pid}}", served.container).stdout)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[:4] == [b"/opt/edgeproof/bin/python", b"/opt/edgeproof/bin/attestor",
                        b"serve", b""], argv
    status = process_status(pid)
    assert status["Uid"].split() == ["10001"] * 4
    assert status["Gid"].split() == ["10001"] * 4
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"] == "1"

    # The root file system refuses writes as read-only (EROFS, not a permission error).
    write = ("import os\ntry:\n    os.open('/opt/edgeproof/probe', os.O_CREAT | os.O_WRONLY)\n"
             "except OSError as e:\n    print(e.errno)")
    probe = podman("exec", served.container, "python3", "-c", write, timeout=60)
    assert probe.stdout.strip() == str(errno.EROFS)

    # State went to the volume, owned by the image's user.
    database = served.data / "attestor.db"
    assert database.stat().st_uid == 10001
    assert (served.data / "ca").stat().st_uid == 10001

    # The documented HEALTHCHECK (deploy/images/healthcheck.py) passes on the live container.
    health = podman("healthcheck", "run", served.container, check=False, timeout=60)
    assert health.returncode == 0, health.stdout + health.stderr


def test_agent_image_reaches_the_tpm_provisions_and_doctor_reports_it(
        images: Built, podman: Podman, served: Served, manufacturer: Manufacturer,
        tmp_path: Path) -> None:
    maker_state = manufacturer.manufacture(tmp_path / "tpm")
    with SwtpmProcess(maker_state) as swtpm:
        # What the TPM holds, read from the host before the container connects (swtpm
        # serves one connection at a time).
        with Tpm(swtpm.tcti) as tpm:
            endorsement: Endorsement = tpm.endorsement()
        assert endorsement.certificate
        state = owned_by_image_user(tmp_path / "agent-state")
        agent = ("-v", f"{state}:/var/lib/edge-agent", "-e",
                 f"EDGE_AGENT_ATTESTOR_URL={served.url}",
                 "-v", f"{served.data / 'ca' / 'root.pem'}:/etc/edge-agent/ca.pem:ro",
                 "-e", "EDGE_AGENT_CA_BUNDLE=/etc/edge-agent/ca.pem")

        before = doctor(podman, images.agent, swtpm.tcti, agent)
        assert before["persistent_objects"] == {
            "status": "fail", "detail": "the device is not provisioned"}
        assert before["enrollment"]["status"] == "warn", before["enrollment"]
        expect_reached(before, swtpm.tcti, endorsement, served.url)

        provisioned = podman.run(
            images.agent, "provision", "--attestor", served.url, "--tcti", swtpm.tcti,
            "--serial", "SN-IMAGE-1", "--api-key", served.enroller_key, options=agent,
            check=False, timeout=180)
        assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
        assert (state / "agent.toml").stat().st_uid == 10001

        after = doctor(podman, images.agent, swtpm.tcti, agent)
        handles = (f"SRK 0x{SRK_HANDLE:08x}, AK 0x{AK_HANDLE:08x}, "
                   f"DevID 0x{DEVID_HANDLE:08x}")
        assert after["persistent_objects"] == {"status": "ok", "detail": handles}
        # The TPM's keys are the ones the attestor enrolled (asked over HTTPS, DevID-signed).
        assert after["enrollment"]["status"] == "ok", after["enrollment"]
        expect_reached(after, swtpm.tcti, endorsement, served.url)


def doctor(podman: Podman, image: str, tcti: str,
           options: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`edge-agent doctor --json` in the agent image: each check's status and detail. It
    exits 1 here: a container has no event logs (see expect_reached)."""
    proc = podman.run(image, "doctor", "--json", "--tcti", tcti, options=options, check=False,
                      timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    return {c["name"]: {"status": c["status"], "detail": c["detail"]} for c in report["checks"]}


def expect_reached(checks: dict[str, dict[str, str]], tcti: str, endorsement: Endorsement,
                   attestor_url: str) -> None:
    """What "doctor works in the image" means: its state volume is the agent's own (0700,
    uid 10001); it opened the TPM over the TCTI and read the same EK certificate the host
    reads from NV; it reached the attestor and their clocks agree. The only failures are
    the event logs: securityfs is not in a container unless mounted (the DaemonSet does)."""
    assert checks["state_dir"] == {"status": "ok", "detail": "/var/lib/edge-agent (0700)"}
    assert checks["tpm"] == {"status": "ok", "detail": f"reachable at {tcti}"}
    assert endorsement.certificate is not None
    assert checks["ek_certificate"] == {
        "status": "ok", "detail": f"{endorsement.ek_type} certificate in NV "
                                  f"({len(endorsement.certificate)} bytes)"}
    assert checks["attestor"] == {"status": "ok", "detail": f"{attestor_url} answers"}
    assert checks["clock"]["status"] == "ok", checks["clock"]
    assert checks["clock"]["detail"].endswith("s from the attestor's clock")
    assert checks["credentials"]["status"] == "warn"  # provisioned, not yet attested
    for log in ("event_log", "ima_log"):
        assert checks[log]["status"] == "fail", checks[log]
        assert checks[log]["detail"].startswith("/sys/kernel/security/"), checks[log]
    assert set(checks) == {"state_dir", "credentials", "tpm", "ek_certificate",
                           "persistent_objects", "enrollment", "event_log", "ima_log",
                           "attestor", "clock"}
