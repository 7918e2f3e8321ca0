"""The renewal loop under faults, on swtpm against a live attestor, in virtual time.

The attestor's clock and the agent's are one movable clock, so an hour-long
certificate lifetime and a twenty-minute outage take seconds. Between the agent
and the attestor sits a proxy that can refuse connections, answer 500 or 429, or
answer with bodies that are not what the API promises.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from agent.attest import current_certificate, device_signer, read_status
from agent.client import AttestorClient
from agent.config import AgentConfig
from agent.renew import Renewer
from agent.sim.boot import simulate_boot
from agent.sim.ima import simulate_ima
from agent.tpm.device import Tpm
from tests.agent.proxy import FlakyProxy
from tests.harness import Device, LiveAttestor, enroll_and_learn

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]


def renewer_for(attestor: LiveAttestor, config: AgentConfig, tpm: Tpm, proxy: FlakyProxy,
                **kwargs: object) -> Renewer:
    client = AttestorClient(proxy.url, signer=device_signer(config, tpm),
                            clock=lambda: attestor.clock().timestamp())
    return Renewer(config, tpm, client, attestor.clock, rng=random.Random(5),
                   **kwargs)  # type: ignore[arg-type]


def advance(attestor: LiveAttestor, seconds: float) -> None:
    attestor.clock.offset += dt.timedelta(seconds=seconds)


def cert_now(config: AgentConfig) -> x509.Certificate:
    cert = current_certificate(config.output)
    assert cert is not None
    return cert


def to_renewal(attestor: LiveAttestor, config: AgentConfig, proxy: FlakyProxy,
               device: Device) -> tuple[Renewer, x509.Certificate]:
    """Enrolled, attested once, and the clock moved to the renewal time."""
    renewer = renewer_for(attestor, config, device.tpm, proxy)
    backoff = renewer.backoff()
    renewer.step(backoff)
    first = cert_now(config)
    advance(attestor, renewer.step(backoff))
    return renewer, first


def test_outage_shorter_than_the_remaining_life_never_lets_the_certificate_expire(
        attestor: LiveAttestor, device: Device, proxy: FlakyProxy) -> None:
    config = enroll_and_learn(attestor, device)
    renewer, first = to_renewal(attestor, config, proxy, device)
    backoff = renewer.backoff()
    proxy.mode = "down"
    outage_ends = first.not_valid_after_utc - dt.timedelta(seconds=20)
    delays = []
    while attestor.clock() < outage_ends:
        delay = renewer.step(backoff)
        delays.append(delay)
        assert cert_now(config).serial_number == first.serial_number  # kept meanwhile
        advance(attestor, delay)
        assert attestor.clock() < first.not_valid_after_utc, "slept past expiry"
    assert 5 < len(delays) < 200, len(delays)  # backed off, but kept trying
    assert max(delays) <= 300
    assert read_status(config.state_dir)["last_error"].startswith("attestor unreachable")

    proxy.mode = "up"
    renewer.step(backoff)
    second = cert_now(config)
    assert second.serial_number != first.serial_number
    assert second.not_valid_before_utc < first.not_valid_after_utc  # renewed in time
    assert read_status(config.state_dir)["last_error"] is None


@pytest.mark.parametrize("mode", ["500", "429", "garbage", "truncated", "incomplete",
                                  "unsafe"])
def test_bad_answers_keep_the_credentials_and_back_off(
        attestor: LiveAttestor, device: Device, proxy: FlakyProxy, mode: str) -> None:
    config = enroll_and_learn(attestor, device)
    renewer, first = to_renewal(attestor, config, proxy, device)
    backoff = renewer.backoff()
    proxy.mode, proxy.only = mode, ("/attestations" if mode in ("incomplete", "unsafe")
                                    else None)
    delays = [renewer.step(backoff) for _ in range(3)]
    assert cert_now(config).serial_number == first.serial_number
    assert (config.output / "key.pem").read_bytes()  # the set is whole
    assert all(0 <= d <= 300 for d in delays)
    if mode == "429":
        assert all(d >= 7 for d in delays)  # Retry-After honoured
    assert not list(config.output.glob("escape*")) and not (config.output.parent /
                                                              "escape").exists()
    error = read_status(config.state_dir)["last_error"]
    assert error and ("malformed" in error or "incomplete" in error or "not JSON" in error
                      or "unsafe" in error or "refused" in error), error

    proxy.mode, proxy.only = "up", None
    renewer.step(backoff)
    assert cert_now(config).serial_number != first.serial_number


def test_swtpm_restarted_under_the_agent_reconnects(
        attestor: LiveAttestor, device: Device, proxy: FlakyProxy) -> None:
    config = enroll_and_learn(attestor, device)
    renewer, first = to_renewal(attestor, config, proxy, device)
    renewer.reconnect = lambda: Tpm(device.process.tcti)
    backoff = renewer.backoff()
    resets_before = read_status(config.state_dir)["tpm_reset_count"]
    device.process.stop()  # the TPM goes away under the agent
    assert renewer.step(backoff) <= 300
    assert "TPM" in read_status(config.state_dir)["last_error"]
    assert cert_now(config).serial_number == first.serial_number
    device.process.start()  # and comes back (PCRs reset, resetCount + 1): boot again
    with Tpm(device.process.tcti) as fresh:
        simulate_boot(fresh, device.log)
        simulate_ima(fresh, device.ima)
    renewer.step(backoff)  # reconnects and attests the new boot
    device.tpm = renewer.tpm  # for the fixture's clean-up
    assert cert_now(config).serial_number != first.serial_number
    assert read_status(config.state_dir)["tpm_reset_count"] != resets_before  # noticed


def test_clock_jumps(attestor: LiveAttestor, device: Device, proxy: FlakyProxy) -> None:
    config = enroll_and_learn(attestor, device)
    renewer = renewer_for(attestor, config, device.tpm, proxy, slice_seconds=0.05)
    renewer.step(renewer.backoff())
    first = cert_now(config)
    attestations = proxy.requests

    advance(attestor, -86400)  # backwards a day: no renewal storm, credentials kept
    assert renewer.step(renewer.backoff()) > 3600
    assert proxy.requests == attestations

    loop = threading.Thread(target=renewer.run, daemon=True)
    advance(attestor, 86400)
    loop.start()
    try:
        time.sleep(0.5)  # the loop planned its sleep until the renewal time
        assert cert_now(config).serial_number == first.serial_number
        advance(attestor, 2 * 86400)  # forwards past expiry: renews within a slice
        deadline = time.monotonic() + 20
        while cert_now(config).serial_number == first.serial_number:
            assert time.monotonic() < deadline, "no renewal after the clock jumped"
            time.sleep(0.05)
    finally:
        renewer.stop.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    assert cert_now(config).not_valid_after_utc > attestor.clock()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs",  # noqa: S607
                           str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # noqa: S607


def test_full_output_directory_keeps_the_old_set_and_says_so(
        attestor: LiveAttestor, device: Device, proxy: FlakyProxy, small_disk: Path) -> None:
    config = enroll_and_learn(attestor, device)
    config.output_dir = small_disk
    renewer, first = to_renewal(attestor, config, proxy, device)
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    backoff = renewer.backoff()
    assert renewer.step(backoff) <= 300
    error = read_status(config.state_dir)["last_error"]
    assert "No space left on device" in error and "current set is kept" in error
    assert cert_now(config).serial_number == first.serial_number
    assert (config.output / "key.pem").read_bytes().startswith(b"-----BEGIN TSS2")
    filler.unlink()
    renewer.step(backoff)
    assert cert_now(config).serial_number != first.serial_number


@pytest.mark.parametrize(("answer", "says"), [
    (b'{"nonce": "AAAA", "expires_at": "2025-01-01T00:00:00Z"}', "pcr_selection"),
    (b'{"nonce": 5, "expires_at": "2025-01-01T00:00:00Z", "pcr_selection": {}}', "nonce"),
    (b'["a", "list"]', "Challenge"),
    (b"<html>proxy</html>", "not JSON"),
])
def test_an_answer_of_the_wrong_shape_is_a_typed_error(answer: bytes, says: str) -> None:
    """An attestor (or a proxy) answering 200 with the wrong shape: MalformedAnswer naming
    what is wrong, never a KeyError or TypeError in the agent."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from agent.client import AttestorClient, DeviceSigner, MalformedAnswer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        signer = DeviceSigner("d1", lambda message: b"sig")
        with AttestorClient(f"http://127.0.0.1:{server.server_port}", signer=signer) as client:
            with pytest.raises(MalformedAnswer, match=says):
                client.challenge("d1")
    finally:
        server.shutdown()
        server.server_close()
