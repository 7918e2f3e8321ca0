"""Two attestor processes (`attestor serve`) on one PostgreSQL database, as behind a load
balancer: whatever one replica issues (nonces, activation challenges) the other accepts,
exactly once, even when the same request reaches both at the same moment."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.attest import collect_evidence, device_signer
from agent.sim.swtpm import Manufacturer, free_port_pair
from identity.messages import Challenge, decode
from tests.harness import Device, LiveAttestor, enroll_and_learn, enrollment_body

pytestmark = [pytest.mark.pg, pytest.mark.e2e, pytest.mark.tpm]
ROUNDS = 5


class Replica:
    def __init__(self, data_dir: Path, database_url: str, log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.log_path = data_dir, log
        self.env = {**os.environ, "EDGEPROOF_DATABASE_URL": database_url, **(env or {})}
        self.starts = 0
        self._start()

    def _start(self) -> None:
        self.starts += 1
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attestor.cli", "serve", "--data-dir", str(self.data_dir),
             "--dev", "--port", str(self.port)], env=self.env, stdout=self.log,
            stderr=self.log)

    def wait_ready(self) -> None:
        """Ready when this process bound its port and answers /readyz (the port was free
        when chosen; another process on the machine may take it first: start again)."""
        deadline = time.monotonic() + 90  # a patience, not a timing check: loaded CI machines
        while True:
            if self.process.poll() is not None:
                self.log.close()
                taken = b"address already in use" in self.log_path.read_bytes()
                assert taken and self.starts < 3, "the replica exited"
                self._start()
            bound = f"running on {self.url}".encode() in self.log_path.read_bytes()
            try:
                if bound and httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the replica did not become ready"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


REPLICA_ENV = {
    # a limit a test can reach in a few requests (test_failed_authentication_...)
    "EDGEPROOF_RATE_LIMITS__AUTH_FAILURES_PER_SOURCE": "4",
    "EDGEPROOF_RATE_LIMITS__AUTH_FAILURE_WINDOW_SECONDS": "3600",
}


# Interrupted issuances voided 5 s after their reservation, looked for twice a second.
RECONCILING_ENV = {"EDGEPROOF_ISSUANCE__PENDING_GRACE_SECONDS": "5",
                   "EDGEPROOF_ISSUANCE__RECONCILE_SECONDS": "0.5"}


@pytest.fixture
def replicas(tmp_path: Path, manufacturer: Manufacturer,
             pg_url: str) -> Iterator[tuple[LiveAttestor, Replica, Replica]]:
    """The shared data directory and database (prepared in-process), and two servers."""
    yield from _pair(tmp_path, manufacturer, pg_url, REPLICA_ENV)


@pytest.fixture
def reconciling(tmp_path: Path, manufacturer: Manufacturer,
                pg_url: str) -> Iterator[tuple[LiveAttestor, Replica, Replica]]:
    yield from _pair(tmp_path, manufacturer, pg_url, RECONCILING_ENV)


def _pair(tmp_path: Path, manufacturer: Manufacturer, pg_url: str,
          env: dict[str, str]) -> Iterator[tuple[LiveAttestor, Replica, Replica]]:
    setup = LiveAttestor(tmp_path / "attestor", [manufacturer], database_url=pg_url)
    pair = [Replica(tmp_path / "attestor", pg_url, tmp_path / f"replica-{n}.log", env)
            for n in "ab"]
    try:
        for replica in pair:
            replica.wait_ready()
        yield setup, pair[0], pair[1]
    finally:
        for replica in pair:
            replica.stop()
        setup.services.engine.dispose()


def _at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released together."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _code(response: httpx.Response) -> str:
    return str(response.json().get("code")) if response.status_code >= 400 else "ok"


def test_nonces_and_activations_are_consumed_once_across_replicas(
    replicas: tuple[LiveAttestor, Replica, Replica], device: Device, other_device: Device
) -> None:
    setup, a, b = replicas
    setup.url = a.url  # enrollment through replica A
    config = enroll_and_learn(setup, device)
    device_id = config.device_id
    assert device_id
    signer = device_signer(config, device.tpm)

    def encode(body: dict[str, object] | None) -> bytes:
        return json.dumps(body or {}, separators=(",", ":")).encode()

    def sign(path: str, body: dict[str, object] | None = None) -> dict[str, str]:
        return signer.headers("POST", path, encode(body), time.time())

    def post(replica: Replica, path: str, body: dict[str, object] | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(replica.url + path, content=encode(body), timeout=60,
                          headers={"Content-Type": "application/json",
                                   **(headers or sign(path, body))})

    challenge_path = f"/v1/devices/{device_id}/challenge"
    attest_path = f"/v1/devices/{device_id}/attestations"

    # A nonce issued by A is accepted by B, once.
    challenge = decode(Challenge, post(a, challenge_path).content)
    evidence = collect_evidence(config, device.tpm, device_id, challenge).body
    assert post(b, attest_path, evidence).status_code == 201
    assert _code(post(a, attest_path, evidence)) == "nonce.used"
    assert _code(post(b, attest_path, evidence)) == "nonce.used"

    # The same evidence at both replicas at the same moment: exactly one succeeds.
    for _ in range(ROUNDS):
        challenge = decode(Challenge, post(a if _ % 2 else b, challenge_path).content)
        evidence = collect_evidence(config, device.tpm, device_id, challenge).body
        # Signed before the race: one TPM, one thread at a time (no resource manager).
        first, second = (sign(attest_path, evidence) for _ in range(2))
        outcomes = sorted(_code(r) for r in _at_once(
            lambda body=evidence, h=first: post(a, attest_path, body, h),  # type: ignore[misc]
            lambda body=evidence, h=second: post(b, attest_path, body, h)))  # type: ignore[misc]
        assert outcomes == ["nonce.used", "ok"]

    # One signed request replayed to both replicas at once: one passes, one is a replay.
    headers = sign(challenge_path)
    outcomes = sorted(_code(r) for r in _at_once(
        lambda: post(a, challenge_path, headers=headers),
        lambda: post(b, challenge_path, headers=headers)))
    assert outcomes == ["auth.replay", "ok"]

    # An activation challenge from A answered at B and A at the same moment: once.
    body = enrollment_body(other_device.tpm)
    started = httpx.post(f"{a.url}/v1/enrollments", json=body,
                         headers=setup.enroller_headers).json()
    secret = other_device.tpm.activate_credential(
        base64.b64decode(started["credential_blob"]),
        base64.b64decode(started["encrypted_secret"]))
    answer = {"secret": base64.b64encode(secret).decode()}
    activation = f"/v1/enrollments/{started['enrollment_id']}/activation"
    outcomes = sorted(_code(r) for r in _at_once(
        lambda: httpx.post(a.url + activation, json=answer, timeout=60),
        lambda: httpx.post(b.url + activation, json=answer, timeout=60)))
    assert outcomes == ["activation.used", "ok"]

    # Both replicas wrote to one audit chain, and it verifies.
    report = httpx.get(f"{a.url}/v1/audit/verify", headers=setup.headers("auditor")).json()
    assert report["ok"] and report["entries"] > 10


def test_failed_authentication_is_limited_across_replicas(
        replicas: tuple[LiveAttestor, Replica, Replica]) -> None:
    """The limit (4 here) counts refusals at every replica: alternating between the two,
    a source gets at most limit + replicas - 1 failed checks, then 429 at both."""
    _, a, b = replicas
    left = 3600 - time.time() % 3600
    if left < 60:  # all eight requests in one window
        time.sleep(left + 1)
    forged = {"X-Api-Key": "ep_0123456789abcdef_guessed"}
    responses = [httpx.get(f"{r.url}/v1/audit", headers=forged)
                 for r in (a, b, a, b, a, b, a, b)]
    statuses = [r.status_code for r in responses]
    assert statuses == [401, 401, 401, 401, 401, 429, 429, 429], [r.text for r in responses]


def _gauge(replica: Replica, headers: dict[str, str], name: str) -> float:
    text = httpx.get(f"{replica.url}/metrics", headers=headers, timeout=10).text
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith(f"{name} "))


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out: {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def test_an_issuance_interrupted_by_a_dying_replica_is_reconciled_by_the_other(
    reconciling: tuple[LiveAttestor, Replica, Replica], device: Device
) -> None:
    """Replica A reserves a serial and signs, then dies (kill -9) before recording the
    certificate; replica B, still running, voids the reservation on its own schedule
    within seconds, not at somebody's next start, and reports the pending age."""
    import sqlalchemy as sa
    from sqlmodel import select

    from attestor import audit
    from attestor.db.models import AuditEvent, Certificate

    setup, a, b = reconciling
    setup.url = a.url
    config = enroll_and_learn(setup, device)
    device_id = config.device_id
    assert device_id
    auditor = setup.headers("auditor")
    signer = device_signer(config, device.tpm)
    challenge_path = f"/v1/devices/{device_id}/challenge"
    attest_path = f"/v1/devices/{device_id}/attestations"
    answer = httpx.post(a.url + challenge_path, content=b"{}", timeout=60, headers={
        "Content-Type": "application/json",
        **signer.headers("POST", challenge_path, b"{}", time.time())}).content
    challenge = decode(Challenge, answer)
    body = json.dumps(collect_evidence(config, device.tpm, device_id, challenge).body,
                      separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               **signer.headers("POST", attest_path, body, time.time())}

    def pending() -> list[Certificate]:
        with setup.services.session() as session:
            return list(session.exec(select(Certificate).where(
                Certificate.device_id == device_id, Certificate.status == "pending")))

    def in_flight() -> None:
        try:
            httpx.post(a.url + attest_path, content=body, headers=headers, timeout=60)
        except httpx.TransportError:
            pass  # A dies under it

    # Hold the audit chain's head: A reserves and signs, then waits to record.
    with setup.services.engine.connect() as holder:
        held = holder.begin()
        holder.execute(sa.text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
        attempt = threading.Thread(target=in_flight)
        attempt.start()
        _wait(lambda: bool(pending()), 20, "A reserved a serial")
        a.process.kill()  # SIGKILL: no handler, no clean-up
        a.process.wait(timeout=10)
        # B reports the reservation's age on its own schedule.
        _wait(lambda: _gauge(b, auditor, "edgeproof_issuance_pending_oldest_age_seconds") > 0,
              4, "B reports a pending reservation")
        held.rollback()
    attempt.join(timeout=60)
    (row,) = pending()
    took = _wait(lambda: not pending(), 30, "B voided the interrupted issuance")
    assert took < 30  # the grace (5 s) and a few ticks: no restart needed

    with setup.services.session() as session:
        voided = session.get(Certificate, row.serial)
        assert voided is not None and voided.status == "void"
        assert voided.revoked_reason == "issuance_interrupted"
        entries = session.exec(select(AuditEvent).where(
            AuditEvent.action == "certificate.reconcile")).all()
        assert [e.subject for e in entries] == [f"certificate:{row.serial}"]
        assert audit.verify(session, setup.services.keys.all_public()).ok
    _wait(lambda: _gauge(b, auditor, "edgeproof_issuance_pending_oldest_age_seconds") == 0,
          5, "B's gauge back to 0")
