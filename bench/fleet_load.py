"""A running attestor under load, for the benchmarks: start ``attestor serve``
processes on a fresh data directory (SQLite or a fresh PostgreSQL database), enroll a
fleet of simulated devices through the normal API, and run closed- or open-loop levels
of full cycles, with the attestor's CPU from /proc and the load generator's from
getrusage."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.client import AttestorClient
from agent.sim.fleet import SimDevice
from agent.sim.swtpm import free_port_pair
from bench.serve import wait_healthy
from identity.messages import ActivationRequest

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
UNLIMITED = {f"EDGEPROOF_RATE_LIMITS__{k}_PER_MINUTE": "100000000"
             for k in ("ENROLLMENT", "CHALLENGE", "ATTESTATION", "CLIENT")}


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,  # noqa: S603
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed: {done.stdout}{done.stderr}")
    return done.stdout


def _cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _fresh_pg_database(name: str) -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        return None
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@dataclass
class Attestor:
    data: Path
    env: dict[str, str]
    servers: list[subprocess.Popen[bytes]]
    urls: list[str]

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.wait(timeout=20)

    def cpu(self) -> float:
        return sum(_cpu_seconds(s.pid) for s in self.servers)


def start_attestor(work: Path, database_url: str | None, processes: int) -> Attestor:
    data = work / "attestor"
    env = {**UNLIMITED, **({"EDGEPROOF_DATABASE_URL": database_url} if database_url else {})}
    _run("attestor", "init", "--dev", "-d", str(data), env=env)
    servers, urls = [], []
    for index in range(processes):
        port = free_port_pair()
        log = (work / f"attestor-{index}.log").open("wb")
        servers.append(subprocess.Popen(  # noqa: S603
            [str(BIN / "attestor"), "serve", "--dev", "-d", str(data), "--port", str(port)],
            env={**os.environ, **env}, stdout=log, stderr=log))
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_healthy(url, timeout=120.0)  # (a busy shared machine starts slowly)
    return Attestor(data, env, servers, urls)


def enroll_fleet(attestor: Attestor, count: int) -> list[SimDevice]:
    """Pre-register and enroll ``count`` simulated devices; learn the policy from one."""
    key = _run("attestor", "apikey", "create", "--name", "bench", "-d", str(attestor.data),
               "--dev", env=attestor.env).strip().splitlines()[-1]
    devices = [SimDevice(f"SIM-{i:06d}") for i in range(count)]
    url = attestor.urls[0]
    for start in range(0, count, 1000):
        batch = [d.preregistration() for d in devices[start:start + 1000]]
        httpx.post(f"{url}/v1/preregistrations", json={"devices": batch},
                   headers={"X-Api-Key": key}, timeout=120).raise_for_status()

    def enroll(device: SimDevice) -> None:
        with AttestorClient(url) as client:
            challenge = client.enroll(device.enrollment())
            secret = device.activate(challenge.credential_blob, challenge.encrypted_secret)
            device.device_id = client.activate(challenge.enrollment_id,
                                               ActivationRequest(secret=secret)).device_id

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(enroll, devices))
    first = devices[0]
    with AttestorClient(url, signer=first.signer()) as client:
        try:
            client.attest(str(first.device_id), first.evidence(client.challenge(
                str(first.device_id))))
        except Exception:  # noqa: BLE001, S110 - no reference yet: expected refusal
            pass
    _run("attestor", "policy", "learn", "--device", str(first.device_id), "-d",
         str(attestor.data), "--dev", env=attestor.env)
    return devices


def cycle(client: AttestorClient, device: SimDevice) -> None:
    challenge = client.challenge(str(device.device_id))
    result = client.attest(str(device.device_id), device.evidence(challenge))
    if result.verdict != "pass":
        raise RuntimeError(f"cycle failed: {result}")


@dataclass
class Level:
    concurrency: int
    cycles: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    attestor_cpu: float
    generator_cpu: float

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run_level(attestor: Attestor, devices: list[SimDevice], concurrency: int,
              seconds: float, rate: float | None = None) -> Level:
    """Closed loop (each of ``concurrency`` workers starts a cycle when its last one
    ends) or, with ``rate``, open loop: cycle k is due at k / rate and its latency
    counts from then, so a slow attestor's queueing shows in the percentiles."""
    stop = threading.Event()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    slots = [0]
    begin = time.perf_counter()

    def next_start() -> float:
        if rate is None:
            return time.perf_counter()
        with lock:
            slot = slots[0]
            slots[0] += 1
        due = begin + slot / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        return due

    def worker(index: int) -> None:
        url = attestor.urls[index % len(attestor.urls)]
        mine = devices[index::concurrency]
        clients = {d.device_id: AttestorClient(url, signer=d.signer()) for d in mine}
        n = 0
        while not stop.is_set():
            device = mine[n % len(mine)]
            n += 1
            started = next_start()
            if stop.is_set():
                break
            try:
                cycle(clients[device.device_id], device)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
        for client in clients.values():
            client.close()

    cpu0, gen0 = attestor.cpu(), resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = begin = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    gen1 = resource.getrusage(resource.RUSAGE_SELF)
    return Level(concurrency, len(latencies), errors[0], elapsed, latencies,
                 (attestor.cpu() - cpu0) / elapsed,
                 (gen1.ru_utime + gen1.ru_stime - gen0.ru_utime - gen0.ru_stime) / elapsed)
