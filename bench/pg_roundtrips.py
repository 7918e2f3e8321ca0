"""The attestation's statements on PostgreSQL in five forms: client CPU and wall time.

The same rows as a passing attestation writes (device read, request nonce, challenge
nonce, serial reservation; device update, attestation record with a 24 KB event log,
certificate confirmation, audit entry), on the real schema, in:

- ``separate``: one statement per row, psycopg (the cycle before the merged statements);
- ``pipeline``: the same statements in psycopg 3's pipeline mode (one round trip for
  the statements that do not wait on each other);
- ``merged``: the data-modifying CTEs the attestor sends (attestor/db/attestation_queries.py,
  attestor/audit.py), psycopg;
- ``merged+pipeline``: those, with the commit pipelined behind the last statement;
- ``merged, autocommit open`` (what the attestor sends now): the read and the opening
  statement each in autocommit (no BEGIN or COMMIT round trips), the pass in a transaction;
- ``asyncpg``: the merged statements on asyncpg (prepared), one event loop;
- ``... from an event loop``: the kept form as the server runs it, each of the cycle's two
  requests handed to a worker thread (``anyio.to_thread``, what Starlette's
  ``run_in_threadpool`` does), against the same statements on psycopg's
  ``AsyncConnection`` with no hand-off: what an async database path would save or cost.

Only the database side of the cycle: what the attestor's CPU per cycle would gain or
lose with each. Usage: python -m bench.pg_roundtrips [--cycles N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg
import uvloop
from psycopg.types.json import Json

from attestor import audit
from attestor.db import attestation_queries as aq
from attestor.db.engine import make_engine, upgrade
from bench.fleet_load import _fresh_pg_database

DEVICE = "bench-device"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHECKS = [{"name": f"check.{i}", "passed": True} for i in range(16)]
PCRS = {"sha256": {str(i): "ab" * 32 for i in range(10)}}
EVENT_LOG = bytes(range(256)) * 96  # 24 KB, about a real measured-boot log
HOLDS_SEPARATE = aq._PG_HOLDS
READ_SEPARATE = aq._PG_DEVICE_AND_POLICY


def _setup(url: str) -> None:
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"), create=True)
    upgrade(engine)
    engine.dispose()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO devices (id, device_class, state, ek_public, ak_public, ak_name,"
            " devid_public, enrolled_at, last_reasons) VALUES (%s, 'default', 'active',"
            " %s, %s, %s, %s, %s, '')",
            (DEVICE, b"e" * 300, b"a" * 90, "00" * 34, b"d" * 90, NOW))
        conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s)"
                     " ON CONFLICT DO NOTHING", ("0" * 64,))


def _ids() -> tuple[str, str, str]:
    return secrets.token_hex(16), secrets.token_hex(32), f"{secrets.randbits(120):x}"


def _attestation(serial: str) -> dict[str, Any]:
    return {"device_id": DEVICE, "at": NOW, "verdict": "pass", "reasons": [],
            "checks": CHECKS, "warnings": [], "policy_id": None, "policy_version": None,
            "quote_verified": True, "pcr_values": PCRS, "evidence_sha256": "cd" * 32,
            "certificate_serial": serial, "event_log": EVENT_LOG}


def _attestation_params(serial: str) -> tuple[Any, ...]:
    row = _attestation(serial)
    return tuple(Json(row[n]) if n in aq._JSON_COLUMNS else row[n]
                 for n in aq._ATTESTATION_COLUMNS)


def _entry(serial: str) -> audit.Entry:
    return audit.prepare(at=NOW, actor=f"device:{DEVICE}", action="attestation",
                         outcome="success", device_id=DEVICE, request_id="r" * 16,
                         client_address="127.0.0.1", user_agent="bench",
                         details={"certificate_serial": serial, "secrets": []})


def _chain_params(entry: audit.Entry, seq: int, prev: str) -> tuple[Any, ...]:
    fields: dict[str, Any] = dict(seq=seq, at=entry.at, **entry.stored)
    digest = audit.entry_hash_v2(**fields, prev_hash=prev)
    row = {**fields, "version": audit.CURRENT, "prev_hash": prev, "hash": digest}
    return tuple(Json(row[c]) if c in audit._PG_JSON else row[c]
                 for c in audit._PG_COLUMNS) + (digest,)


_PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 700 + "\n-----END CERTIFICATE-----\n"
_EXPIRY = NOW + dt.timedelta(hours=24)


def separate(conn: psycopg.Connection[Any], pipelined: bool = False) -> None:
    request, nonce, serial = _ids()
    conn.execute(READ_SEPARATE, (DEVICE,)).fetchone()
    with conn.pipeline() if pipelined else _Nothing():
        conn.execute(aq._PG_SPEND_REQUEST_NONCE, (DEVICE, request, _EXPIRY))
        conn.execute(aq._PG_SPEND_NONCE, (nonce, DEVICE, _EXPIRY, NOW))
        conn.execute(aq._PG_RESERVE, (serial, DEVICE, "workload", NOW, _EXPIRY))
        conn.commit()
    entry = _entry(serial)
    with conn.pipeline() if pipelined else _Nothing():
        conn.execute(HOLDS_SEPARATE, (DEVICE,))
        conn.execute(aq._PG_PASSED[False], (NOW, 1, 2, 3, DEVICE))
        conn.execute(aq._PG_ATTESTATION, _attestation_params(serial))
        conn.execute(aq._PG_CONFIRM, (_PEM, NOW, _EXPIRY, serial))
        head = conn.execute(audit.PG_ADVANCE).fetchone()
    assert head is not None
    params = _chain_params(entry, int(head[0]), str(head[1]))
    with conn.pipeline() if pipelined else _Nothing():
        conn.execute("INSERT INTO audit_events (" + ", ".join(audit._PG_COLUMNS)  # noqa: S608
                     + ") VALUES (" + ", ".join(["%s"] * len(audit._PG_COLUMNS)) + ")",
                     params[:-1])
        conn.execute("UPDATE audit_head SET hash = %s WHERE id = 1", (params[-1],))
        conn.commit()


def merged(conn: psycopg.Connection[Any], pipelined: bool = False) -> None:
    request, nonce, serial = _ids()
    aq.read_for_attestation_pg(conn, DEVICE)
    with conn.pipeline() if pipelined else _Nothing():
        cur = conn.execute(aq._PG_OPEN_SIGNED, (DEVICE, request, _EXPIRY, nonce, DEVICE,
                                                _EXPIRY, NOW, serial, DEVICE, "workload",
                                                NOW, _EXPIRY))
        conn.commit()
    assert cur.fetchone() == (1, 1, 1)
    entry = _entry(serial)
    confirmed, head = aq.record_pass_pg(conn, DEVICE, NOW, (1, 2, 3), None,
                                        _attestation(serial), (serial, _PEM, NOW, _EXPIRY))
    assert confirmed == 1 and head is not None
    with conn.pipeline() if pipelined else _Nothing():
        conn.execute(audit._PG_CHAIN, _chain_params(entry, *head))
        conn.commit()


def merged_autocommit(conn: psycopg.Connection[Any]) -> None:
    _record(conn, _open(conn))


def _open(conn: psycopg.Connection[Any]) -> str:
    """The read and the opening statement, each in autocommit; returns the serial."""
    request, nonce, serial = _ids()
    conn.autocommit = True
    aq.read_for_attestation_pg(conn, DEVICE)
    fresh = aq.open_attestation_pg(conn, (DEVICE, request, _EXPIRY), (nonce, DEVICE, _EXPIRY,
                                   NOW), (serial, DEVICE, "workload", NOW, _EXPIRY))
    assert fresh == (True, True)
    conn.autocommit = False
    return serial


def _record(conn: psycopg.Connection[Any], serial: str) -> None:
    """The pass: one statement and the audit entry, in a transaction."""
    entry = _entry(serial)
    confirmed, head = aq.record_pass_pg(conn, DEVICE, NOW, (1, 2, 3), None,
                                        _attestation(serial), (serial, _PEM, NOW, _EXPIRY))
    assert confirmed == 1 and head is not None
    conn.execute(audit._PG_CHAIN, _chain_params(entry, *head))
    conn.commit()


async def _threaded_cycles(url: str, cycles: int) -> tuple[float, float]:
    """The kept form with each request in a worker thread, as the server runs it (the
    first request's read stands for the challenge; the second opens and records)."""
    import anyio.to_thread

    conn = psycopg.connect(url)

    def first() -> None:
        conn.autocommit = True
        aq.read_for_attestation_pg(conn, DEVICE)
        conn.autocommit = False

    def second() -> None:
        _record(conn, _open(conn))

    async def one() -> None:
        await anyio.to_thread.run_sync(first)
        await anyio.to_thread.run_sync(second)

    try:
        return await _timed(one, cycles)
    finally:
        conn.close()


async def _async_cycles(url: str, cycles: int) -> tuple[float, float]:
    """The same statements on psycopg's AsyncConnection, on the event loop."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def one() -> None:
        request, nonce, serial = _ids()
        await (await conn.execute(aq._PG_READ, (DEVICE,))).fetchone()
        await (await conn.execute(aq._PG_READ, (DEVICE,))).fetchone()
        cur = await conn.execute(aq._PG_OPEN_SIGNED, (DEVICE, request, _EXPIRY, nonce, DEVICE,
                                                      _EXPIRY, NOW, serial, DEVICE, "workload",
                                                      NOW, _EXPIRY))
        assert await cur.fetchone() == (1, 1, 1)
        entry = _entry(serial)
        async with conn.transaction():
            found = await (await conn.execute(aq._PG_PASS[False], (
                NOW, 1, 2, 3, DEVICE, *_attestation_params(serial), _PEM, NOW, _EXPIRY,
                serial))).fetchone()
            assert found is not None
            await conn.execute(audit._PG_CHAIN, _chain_params(entry, int(found[1]),
                                                              str(found[2])))

    try:
        return await _timed(one, cycles)
    finally:
        await conn.close()


async def _timed(one: Callable[[], Any], cycles: int) -> tuple[float, float]:
    for _ in range(20):
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        await one()
    return time.process_time() - cpu, time.perf_counter() - wall


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _dollars(sql: str) -> str:
    counter = iter(range(1, 1000))
    return re.sub("%s", lambda _: f"${next(counter)}", sql)


def _plain(value: Any) -> Any:
    return json.dumps(value.obj) if isinstance(value, Json) else value


async def _asyncpg_cycles(url: str, cycles: int) -> tuple[float, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    read = await conn.prepare(_dollars(aq._PG_READ))
    opened = await conn.prepare(_dollars(aq._PG_OPEN_SIGNED))
    passed = await conn.prepare(_dollars(aq._PG_PASS[False]))
    chain = await conn.prepare(_dollars(audit._PG_CHAIN))

    async def one() -> None:
        request, nonce, serial = _ids()
        async with conn.transaction():
            await read.fetchrow(DEVICE)
            await opened.fetchrow(DEVICE, request, _EXPIRY, nonce, DEVICE, _EXPIRY, NOW,
                                  serial, DEVICE, "workload", NOW, _EXPIRY)
        entry = _entry(serial)
        async with conn.transaction():
            row = await passed.fetchrow(NOW, 1, 2, 3, DEVICE,
                                        *map(_plain, _attestation_params(serial)),
                                        _PEM, NOW, _EXPIRY, serial)
            await chain.fetch(*map(_plain, _chain_params(entry, row[1], row[2])))

    for _ in range(20):
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        await one()
    result = time.process_time() - cpu, time.perf_counter() - wall
    await conn.close()
    return result


def _measure(url: str, fn: Callable[[psycopg.Connection[Any]], None],
             cycles: int) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        for _ in range(20):  # warm up: statements prepared after their fifth use
            fn(conn)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(cycles):
            fn(conn)
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    url = _fresh_pg_database("edgeproof_bench_rt")  # dropped at exit
    if url is None:
        raise SystemExit("no PostgreSQL at 127.0.0.1:5432")
    _setup(url)
    _report(url, args.cycles)


def _report(url: str, cycles: int) -> None:
    forms: dict[str, Callable[[], tuple[float, float]]] = {
        "separate": lambda: _measure(url, separate, cycles),
        "pipeline": lambda: _measure(url, lambda c: separate(c, True), cycles),
        "merged": lambda: _measure(url, merged, cycles),
        "merged+pipeline": lambda: _measure(url, lambda c: merged(c, True), cycles),
        "merged, autocommit open (kept)": lambda: _measure(url, merged_autocommit, cycles),
        "kept, two worker-thread hand-offs, from an event loop":
            lambda: uvloop.run(_threaded_cycles(url, cycles)),
        "kept, psycopg AsyncConnection, no hand-off, same event loop":
            lambda: uvloop.run(_async_cycles(url, cycles)),
    }
    try:
        import asyncpg  # noqa: F401

        forms["asyncpg"] = lambda: asyncio.run(_asyncpg_cycles(url, cycles))
    except ImportError:
        print("asyncpg not installed (pip install -e '.[bench]'): its row left out")
    print(f"`python -m bench.pg_roundtrips --cycles {cycles}`: one attestation's "
          "statements (2 transactions), client side\n")
    print("| form | client CPU ms / cycle | wall ms / cycle |\n|---|---:|---:|")
    for name, run in forms.items():
        cpu, wall = run()
        print(f"| {name} | {1000 * cpu / cycles:.3f} | {1000 * wall / cycles:.3f} |")


if __name__ == "__main__":
    main()
