"""`attestor serve --metrics-port`: Prometheus scrapes without a credential on a port of its
own that serves nothing else, while `/metrics` on the API port keeps requiring an operator
role; and the live scrape passes `promtool check metrics`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent.sim.swtpm import Manufacturer, free_port_pair
from tests.harness import LiveAttestor
from tests.tools import require_tool

pytestmark = [pytest.mark.e2e]


@dataclass
class Served:
    setup: LiveAttestor  # the data directory, prepared in-process (tokens, keys)
    api: str
    metrics: str
    log: Path


def _serve(data_dir: Path, *args: str, log: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "attestor.cli", "serve", "--data-dir", str(data_dir),
             "--dev", *args], stdout=out, stderr=out, env={**os.environ, **(env or {})})


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"serve exited:\n{log.read_text()}"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"nothing answers at {url}:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           manufacturer: Manufacturer) -> Iterator[Served]:
    """One `attestor serve` for the module (starting one takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("served")
    setup = LiveAttestor(tmp_path / "attestor", [manufacturer])
    port, metrics_port = free_port_pair(), free_port_pair()
    log = tmp_path / "serve.log"
    process = _serve(setup.settings.data_dir, "--port", str(port), log=log,
                     env={"EDGEPROOF_METRICS__PORT": str(metrics_port)})
    api, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    try:
        _wait(f"{api}/healthz", process, log)
        _wait(f"{metrics}/metrics", process, log)
        yield Served(setup, api, metrics, log)
    finally:
        process.terminate()
        process.wait(timeout=20)
        setup.services.engine.dispose()


def test_metrics_port_answers_without_credentials_and_serves_nothing_else(
        served: Served) -> None:
    scrape = httpx.get(f"{served.metrics}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=")
    assert "edgeproof_build_info{" in scrape.text
    assert 'edgeproof_backend_up{backend="database"} 1.0' in scrape.text
    assert "metrics listener" in served.log.read_text()  # said once at start-up

    for path in ("/", "/healthz", "/readyz", "/v1/devices", "/v1/ca", "/docs",
                 "/openapi.json", "/.well-known/jwks.json", "/metrics/", "/metricsx"):
        answer = httpx.get(f"{served.metrics}{path}")
        assert answer.status_code == 404, path
        assert "edgeproof_" not in answer.text
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, f"{served.metrics}/metrics").status_code == 405
    assert httpx.head(f"{served.metrics}/metrics").status_code == 200  # GET without a body


def test_api_port_metrics_still_need_an_operator_role(served: Served) -> None:
    assert httpx.get(f"{served.api}/metrics").status_code == 401
    enroller = httpx.get(f"{served.api}/metrics", headers=served.setup.headers("enroller"))
    assert enroller.status_code == 403
    assert httpx.get(f"{served.api}/metrics", headers={"X-Api-Key": "ep_forged_key"}
                     ).status_code == 401
    allowed = httpx.get(f"{served.api}/metrics", headers=served.setup.headers("auditor"))
    assert allowed.status_code == 200 and "edgeproof_build_info{" in allowed.text


def test_live_scrape_passes_promtool_check_metrics(served: Served) -> None:
    promtool = require_tool("promtool", "apt-get install prometheus (make setup)")
    httpx.get(f"{served.api}/v1/devices/nobody", headers=served.setup.headers("auditor"))
    text = httpx.get(f"{served.metrics}/metrics").text
    assert "edgeproof_http_requests_total{" in text and "process_cpu_seconds_total" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),  # noqa: S603
                           capture_output=True, timeout=60, check=False)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    assert not (check.stdout + check.stderr).strip(), (check.stdout + check.stderr).decode()


def test_serve_refuses_a_metrics_port_it_cannot_use(tmp_path: Path,
                                                    manufacturer: Manufacturer) -> None:
    setup = LiveAttestor(tmp_path / "attestor", [manufacturer])
    try:
        port = free_port_pair()
        log = tmp_path / "same.log"
        same = _serve(setup.settings.data_dir, "--port", str(port), "--metrics-port",
                      str(port), log=log)
        assert same.wait(timeout=30) != 0
        assert "metrics.port" in log.read_text()

        taken = free_port_pair()
        with socket.create_server(("127.0.0.1", taken)):
            log = tmp_path / "taken.log"
            busy = _serve(setup.settings.data_dir, "--port", str(free_port_pair()),
                          "--metrics-port", str(taken), log=log)
            assert busy.wait(timeout=30) != 0
        assert f"cannot listen for metrics on 127.0.0.1:{taken}" in log.read_text()
    finally:
        setup.services.engine.dispose()
