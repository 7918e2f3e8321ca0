"""A running attestor under load, for the benchmarks: start ``attestor serve``
processes on a fresh data directory (SQLite or a fresh PostgreSQL database), enroll a
fleet of simulated devices through the normal API, and run closed- or open-loop levels
of full cycles, with the attestor's CPU from /proc and the load generator's from
getrusage."""

from __future__ import annotations

import atexit
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


def postgres_cpu_seconds() -> float:
    """utime + stime of every live ``postgres`` process, plus the postmaster's reaped
    children's (/proc): the server's CPU so far, exited backends included."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, _, rest = (entry / "stat").read_text().rpartition(")")
            except OSError:
                continue
            if head.endswith("(postgres"):
                stats[int(entry.name)] = rest.split()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for fields in stats.values():
        total += int(fields[11]) + int(fields[12])
        if int(fields[1]) not in stats:  # the postmaster: its parent is not postgres
            total += int(fields[13]) + int(fields[14])
    return total / tick


def _drop_pg_database(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:  # the server went away: nothing left to drop
        return


def _fresh_pg_database(name: str) -> str | None:
    """A new database for this run: ``name`` and this process's id (two benchmarks at
    once must not drop each other's), dropped again when the process exits."""
    try:
        import psycopg
    except ImportError:
        return None
    name = f"{name}_{os.getpid()}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        return None
    atexit.register(_drop_pg_database, name)
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

    def database_cpu(self) -> float | None:
        """CPU seconds so far of the local PostgreSQL server, every process of it (the
        backends, the WAL writer and checkpointer, and through the postmaster's
        children's time those that exited); None on SQLite, whose work is in the
        attestor's own CPU. Other databases' work on the same server counts too."""
        if not self.env.get("EDGEPROOF_DATABASE_URL"):
            return None
        return postgres_cpu_seconds()


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
    database_cpu: float | None = None  # PostgreSQL's backends (cores); None on SQLite

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
        signers = [d.signer() for d in mine]
        # one kept-alive connection per worker: each request is still signed by its device
        client = AttestorClient(url)
        n = 0
        while not stop.is_set():
            device, client.signer = mine[n % len(mine)], signers[n % len(mine)]
            n += 1
            started = next_start()
            if stop.is_set():
                break
            try:
                cycle(client, device)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
        client.close()

    cpu0, gen0 = attestor.cpu(), resource.getrusage(resource.RUSAGE_SELF)
    db0 = attestor.database_cpu()
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
    db1 = attestor.database_cpu()
    database = (db1 - db0) / elapsed if db0 is not None and db1 is not None else None
    return Level(concurrency, len(latencies), errors[0], elapsed, latencies,
                 (attestor.cpu() - cpu0) / elapsed,
                 (gen1.ru_utime + gen1.ru_stime - gen0.ru_utime - gen0.ru_stime) / elapsed,
                 database)
