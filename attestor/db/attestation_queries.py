"""The attestation cycle's statements, run on the caller's connection inside its
transaction; rows come back as plain frozen records, never ORM objects (the unit of work
and model construction cost more CPU per cycle than the database did).

On PostgreSQL the statements every cycle runs go to psycopg directly (the connection
under SQLAlchemy's, in the same transaction; psycopg prepares each after its fifth use),
which costs a fifth of the CPU of the same statement through SQLAlchemy Core's execution
context and result machinery. Elsewhere (SQLite) they run as Core statements built
once. Both forms are exercised by the same tests (tests/attestor, on both databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from attestor.db.models import Attestation, Certificate, Device, Nonce, Policy
from identity.errors import DeviceUnknown


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """The device columns an attestation reads (the rest of the row is not loaded)."""

    id: str
    device_class: str
    model: str | None
    state: str
    ek_public: bytes
    ak_public: bytes
    ak_name: str
    ak_qualified_name: str | None
    devid_public: bytes
    last_verdict: str | None
    clock_reset_count: int | None
    clock_restart_count: int | None
    clock_value: int | None
    ima_state: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    id: int
    version: int
    document: dict[str, Any]


_DEVICE_COLUMNS = tuple(col(getattr(Device, name)) for name in DeviceRecord.__slots__)
_LATEST_VERSION = (sa.select(sa.func.max(col(Policy.version)))
                   .where(col(Policy.device_class) == col(Device.device_class))
                   .correlate(Device).scalar_subquery())
_DEVICE_AND_POLICY = (
    sa.select(*_DEVICE_COLUMNS, col(Policy.id), col(Policy.version), col(Policy.document))
    .select_from(Device)
    .outerjoin(Policy, sa.and_(col(Policy.device_class) == col(Device.device_class),
                               col(Policy.version) == _LATEST_VERSION))
    .where(col(Device.id) == sa.bindparam("d")))
_WIDTH = len(_DEVICE_COLUMNS)


def driver(conn: sa.Connection) -> Any | None:
    """The psycopg connection under ``conn`` on PostgreSQL; None on other databases."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.connection.driver_connection


@contextmanager
def each_statement_atomic(conn: sa.Connection) -> Iterator[None]:
    """A block whose writes need no transaction around them: on PostgreSQL every
    statement in it runs in autocommit (atomic on its own, as the merged statements are
    built to be), which saves the BEGIN and COMMIT round trips; elsewhere the block is
    one transaction. The block's callers write at most one statement after any check
    that can fail, so the two forms leave the same rows behind (tests/attestor/
    test_autocommit_open.py)."""
    pg = driver(conn)
    if pg is None:
        with conn.begin():
            yield
        return
    try:
        pg.autocommit = True
        yield
    except psycopg.Error as exc:
        _leave_autocommit(conn, pg, failing=True)
        if not (pg.closed or pg.broken):  # what the dialect calls a disconnect
            raise
        # As SQLAlchemy treats a lost connection on its own statements: the whole pool
        # is discarded (a restart dropped them all) and the request fails once, with
        # the error the API answers 503 for.
        conn.engine.dispose()
        raise sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error,
                                         connection_invalidated=True) from exc
    except BaseException:
        _leave_autocommit(conn, pg, failing=True)
        raise
    _leave_autocommit(conn, pg, failing=False)


def _leave_autocommit(conn: sa.Connection, pg: Any, *, failing: bool) -> None:
    try:
        if conn.in_transaction():  # a Core statement began one: its work is committed
            conn.commit()
        pg.autocommit = False
    except (psycopg.Error, sa.exc.SQLAlchemyError):
        if not failing:
            raise
        conn.invalidate()  # the connection is gone: the block's own error says why


_PG_DEVICE_AND_POLICY = (
    "SELECT d.id, d.device_class, d.model, d.state, d.ek_public, d.ak_public, d.ak_name,"
    " d.ak_qualified_name, d.devid_public, d.last_verdict, d.clock_reset_count,"
    " d.clock_restart_count, d.clock_value, d.ima_state, p.id, p.version, p.document"
    " FROM devices d LEFT JOIN policies p ON p.device_class = d.device_class"
    " AND p.version = (SELECT max(version) FROM policies WHERE device_class = d.device_class)"
    " WHERE d.id = %s")  # the columns of DeviceRecord, in its order (a test compares)


def device_and_policy(conn: sa.Connection,
                      device_id: str) -> tuple[DeviceRecord, PolicyRecord | None]:
    """The device and its class's policy in force, in one query."""
    pg = driver(conn)
    if pg is not None:
        row = pg.execute(_PG_DEVICE_AND_POLICY, (device_id,)).fetchone()
    else:
        row = conn.execute(_DEVICE_AND_POLICY, {"d": device_id}).first()
    if row is None:
        raise DeviceUnknown(f"no enrolled device {device_id!r}")
    device = DeviceRecord(*row[:_WIDTH])
    policy_id, version, document = row[_WIDTH:]
    return device, (PolicyRecord(policy_id, version, document) if policy_id is not None
                    else None)


def spend_nonce(conn: sa.Connection, value: str, device_id: str, expires_at: dt.datetime,
                now: dt.datetime) -> bool:
    """Record a challenge nonce as spent; False if it was spent before (a replay). One
    insert-if-absent on the primary key, so of two replicas racing with one nonce,
    exactly one inserts."""
    pg = driver(conn)
    if pg is not None:
        return pg.execute(_PG_SPEND_NONCE, (value, device_id, expires_at, now)).fetchone() \
            is not None
    statement = (sqlite_insert(Nonce).values(value=value, device_id=device_id,
                                             expires_at=expires_at, used_at=now)
                 .on_conflict_do_nothing().returning(col(Nonce.value)))
    return conn.execute(statement).first() is not None


_PG_SPEND_NONCE = ("INSERT INTO nonces (value, device_id, expires_at, used_at)"
                   " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING value")
_PG_SPEND_REQUEST_NONCE = ("INSERT INTO request_nonces (device_id, nonce, expires_at)"
                           " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING nonce")


def spend_request_nonce_pg(pg: Any, device_id: str, nonce: str,
                           expires_at: dt.datetime) -> bool:
    """PostgreSQL's form of ``queries.spend_request_nonce``."""
    return pg.execute(_PG_SPEND_REQUEST_NONCE, (device_id, nonce, expires_at)).fetchone() \
        is not None


_RESERVE = sa.insert(Certificate)
_PG_RESERVE = ("INSERT INTO certificates (serial, device_id, kind, not_before, not_after, pem,"
               " status) VALUES (%s, %s, %s, %s, %s, '', 'pending')")


def reserve_certificate(conn: sa.Connection, serial: str, device_id: str, kind: str,
                        not_before: dt.datetime, not_after: dt.datetime) -> None:
    """A pending certificate row holding ``serial`` (crash-safe issuance)."""
    pg = driver(conn)
    if pg is not None:
        pg.execute(_PG_RESERVE, (serial, device_id, kind, not_before, not_after))
        return
    conn.execute(_RESERVE, [{"serial": serial, "device_id": device_id, "kind": kind,
                             "not_before": not_before, "not_after": not_after, "pem": "",
                             "status": "pending"}])


_PG_CONFIRM = ("UPDATE certificates SET status = 'issued', pem = %s, not_before = %s,"
               " not_after = %s WHERE serial = %s AND status = 'pending'")


def confirm_certificate_pg(pg: Any, serial: str, pem: str, not_before: dt.datetime,
                           not_after: dt.datetime) -> int:
    """PostgreSQL's form of ``issuance.confirm``'s UPDATE; rows changed."""
    return int(pg.execute(_PG_CONFIRM, (pem, not_before, not_after, serial)).rowcount)


_HOLDS = (sa.select(sa.literal(1)).select_from(Certificate)
          .where(col(Certificate.device_id) == sa.bindparam("d"),
                 col(Certificate.kind) == "workload", col(Certificate.status) == "issued",
                 col(Certificate.revoked_at).is_(None)).limit(1))
_PG_HOLDS = ("SELECT 1 FROM certificates WHERE device_id = %s AND kind = 'workload'"
             " AND status = 'issued' AND revoked_at IS NULL LIMIT 1")


def holds_certificate(conn: sa.Connection, device_id: str) -> bool:
    """Whether the device holds an issued, unrevoked workload certificate."""
    pg = driver(conn)
    if pg is not None:
        return pg.execute(_PG_HOLDS, (device_id,)).fetchone() is not None
    return conn.execute(_HOLDS, {"d": device_id}).first() is not None


_PASSED_FIELDS = ("last_attested_at", "clock_reset_count", "clock_restart_count",
                  "clock_value")
_PASSED = {with_ima: sa.update(Device).where(col(Device.id) == sa.bindparam("device_id_"))
           .values(last_verdict="pass", last_reasons="",
                   **{name: sa.bindparam(name) for name in
                      _PASSED_FIELDS + (("ima_state",) if with_ima else ())})
           for with_ima in (False, True)}
_PG_PASSED = {
    False: "UPDATE devices SET last_verdict = 'pass', last_reasons = '', last_attested_at = %s,"
           " clock_reset_count = %s, clock_restart_count = %s, clock_value = %s WHERE id = %s",
    True: "UPDATE devices SET last_verdict = 'pass', last_reasons = '', last_attested_at = %s,"
          " clock_reset_count = %s, clock_restart_count = %s, clock_value = %s,"
          " ima_state = %s WHERE id = %s"}


def record_passed(conn: sa.Connection, device_id: str, at: dt.datetime, reset_count: int,
                  restart_count: int, clock: int,
                  ima_state: dict[str, object] | None) -> None:
    """The device's last verdict is a pass at ``at``, its quote's clock, and its IMA
    state when IMA was appraised (left as it is otherwise)."""
    with_ima = ima_state is not None
    pg = driver(conn)
    if pg is not None:
        values: tuple[Any, ...] = (at, reset_count, restart_count, clock)
        pg.execute(_PG_PASSED[with_ima],
                   values + ((Json(ima_state),) if with_ima else ()) + (device_id,))
        return
    params: dict[str, Any] = {"device_id_": device_id, "last_attested_at": at,
                              "clock_reset_count": reset_count,
                              "clock_restart_count": restart_count, "clock_value": clock}
    if with_ima:
        params["ima_state"] = ima_state
    conn.execute(_PASSED[with_ima], params)


_INSERT_ATTESTATION = sa.insert(Attestation)
_REFUSED = (sa.update(Device).where(col(Device.id) == sa.bindparam("device_id_"))
            .values(last_attested_at=sa.bindparam("at"), last_verdict="fail",
                    last_reasons=sa.bindparam("reasons")))


_ATTESTATION_COLUMNS = ("device_id", "at", "verdict", "reasons", "checks", "warnings",
                        "policy_id", "policy_version", "quote_verified", "pcr_values",
                        "evidence_sha256", "certificate_serial", "event_log")
_JSON_COLUMNS = frozenset({"reasons", "checks", "warnings", "pcr_values"})
_PG_ATTESTATION = (
    "INSERT INTO attestations (device_id, at, verdict, reasons, checks, warnings, policy_id,"
    " policy_version, quote_verified, pcr_values, evidence_sha256, certificate_serial,"
    " event_log) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def add_attestation(conn: sa.Connection, **fields: Any) -> None:
    """One attestation record (every column of ``Attestation`` but its id)."""
    pg = driver(conn)
    if pg is not None:
        pg.execute(_PG_ATTESTATION, tuple(
            Json(fields[name]) if name in _JSON_COLUMNS else fields[name]
            for name in _ATTESTATION_COLUMNS))
        return
    conn.execute(_INSERT_ATTESTATION, [fields])


def record_refused(conn: sa.Connection, device_id: str, at: dt.datetime,
                   reasons: list[str]) -> None:
    """The device's last verdict is a failure for ``reasons``."""
    conn.execute(_REFUSED, {"device_id_": device_id, "at": at,
                            "reasons": ("," + ",".join(reasons) + ",")[:1024]})


# The hot path's merged statements (PostgreSQL): one round trip each where the cycle
# used to send three or four. Data-modifying CTEs run in the statement's one snapshot;
# each is the same insert or update as its single form above (all built from constants).
_PG_HOLDS_EXISTS = (" EXISTS (SELECT 1 FROM certificates c WHERE c.device_id = d.id"
                    " AND c.kind = 'workload' AND c.status = 'issued'"
                    " AND c.revoked_at IS NULL)")
_PG_READ = _PG_DEVICE_AND_POLICY.replace(" FROM devices d", "," + _PG_HOLDS_EXISTS
                                         + " FROM devices d", 1)


def read_for_attestation_pg(pg: Any, device_id: str,
                            ) -> tuple[DeviceRecord, PolicyRecord | None, bool]:
    """:func:`device_and_policy` and :func:`holds_certificate` in one query."""
    row = pg.execute(_PG_READ, (device_id,)).fetchone()
    if row is None:
        raise DeviceUnknown(f"no enrolled device {device_id!r}")
    policy_id, version, document = row[_WIDTH:_WIDTH + 3]
    return (DeviceRecord(*row[:_WIDTH]),
            PolicyRecord(policy_id, version, document) if policy_id is not None else None,
            bool(row[_WIDTH + 3]))


# In autocommit, one statement is the whole transaction, so each write is conditional
# on the earlier ones: a replayed signed request spends nothing, and a spent challenge
# nonce reserves no serial (what the rolled-back transaction used to leave behind).
_PG_SPEND_NONCE_IF = ("INSERT INTO nonces (value, device_id, expires_at, used_at)"
                      " SELECT %s, %s, %s, %s WHERE {condition}"
                      " ON CONFLICT DO NOTHING RETURNING value")
_PG_RESERVE_IF = ("INSERT INTO certificates (serial, device_id, kind, not_before, not_after,"
                  " pem, status) SELECT %s, %s, %s, %s, %s, '', 'pending'"
                  " WHERE EXISTS (SELECT 1 FROM n) RETURNING serial")
_PG_OPEN = (
    "WITH n AS (" + _PG_SPEND_NONCE_IF.format(condition="true") + "),"  # noqa: S608
    " c AS (" + _PG_RESERVE_IF + ") SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM c)")
_PG_OPEN_SIGNED = (
    "WITH r AS (" + _PG_SPEND_REQUEST_NONCE + "),"  # noqa: S608
    " n AS (" + _PG_SPEND_NONCE_IF.format(condition="EXISTS (SELECT 1 FROM r)") + "),"
    " c AS (" + _PG_RESERVE_IF + ")"
    " SELECT (SELECT count(*) FROM n), (SELECT count(*) FROM c),"
    " (SELECT count(*) FROM r)")


def open_attestation_pg(pg: Any, request_nonce: tuple[str, str, dt.datetime] | None,
                        nonce: tuple[str, str, dt.datetime, dt.datetime],
                        reserve: tuple[str, str, str, dt.datetime, dt.datetime],
                        ) -> tuple[bool, bool]:
    """Spend the signed request's nonce (if any: device id, nonce, expiry), spend the
    challenge nonce (:func:`spend_nonce`'s arguments) and reserve the certificate's serial
    (:func:`reserve_certificate`'s), in one statement that writes nothing more once one
    of them is found spent. Returns whether the request nonce and the challenge nonce
    were fresh; the caller raises if not."""
    if request_nonce is None:
        row = pg.execute(_PG_OPEN, nonce + reserve).fetchone()
        return True, bool(row[0])
    row = pg.execute(_PG_OPEN_SIGNED, request_nonce + nonce + reserve).fetchone()
    return bool(row[2]), bool(row[0])


_PG_PASS = {
    # Lock order as the separate statements had it, and as every other writer takes it
    # (the device's row, then the certificate's, then the audit head): h's condition
    # reads d and c, so both run (and lock) before the head row is updated. Always true.
    with_ima: "WITH d AS (" + _PG_PASSED[with_ima] + " RETURNING 1), a AS ("  # noqa: S608
    + _PG_ATTESTATION + "), c AS (" + _PG_CONFIRM + " RETURNING serial),"
    " h AS (UPDATE audit_head SET seq = seq + 1 WHERE id = 1"
    " AND (SELECT count(*) FROM d) + (SELECT count(*) FROM c) >= 0 RETURNING seq, hash)"
    " SELECT (SELECT count(*) FROM c), h.seq, h.hash FROM h RIGHT JOIN (SELECT 1) one ON true"
    for with_ima in (False, True)}


def record_pass_pg(pg: Any, device_id: str, at: dt.datetime, clock: tuple[int, int, int],
                   ima_state: dict[str, object] | None, attestation: dict[str, Any],
                   confirm: tuple[str, str, dt.datetime, dt.datetime],
                   ) -> tuple[int, tuple[int, str] | None]:
    """:func:`record_passed`, :func:`add_attestation` and :func:`confirm_certificate_pg`
    (serial, pem, not before, not after) in one statement, which also advances the audit
    chain's head (``attestor.audit.PG_ADVANCE``, taking its lock). Returns the
    certificates confirmed and the head (sequence number, previous hash), None if the
    head row is missing."""
    with_ima = ima_state is not None
    passed: tuple[Any, ...] = (at, *clock) + ((Json(ima_state),) if with_ima else ()) \
        + (device_id,)
    row = tuple(Json(attestation[name]) if name in _JSON_COLUMNS else attestation[name]
                for name in _ATTESTATION_COLUMNS)
    serial, pem, not_before, not_after = confirm
    found = pg.execute(_PG_PASS[with_ima],
                       passed + row + (pem, not_before, not_after, serial)).fetchone()
    head = None if found[1] is None else (int(found[1]), str(found[2]))
    return int(found[0]), head
