"""Queries of the refused-request counts (``auth_refusals``). Callers own the transaction.

Every replica adds to the same rows with one upsert, so the failed-authentication
limit counts a source's refusals wherever they landed; a window is claimed for its
summary with one ``DELETE … RETURNING``, so two replicas never summarise it twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from attestor.db.models import AuthRefusalCount as Row


def count_refusals(conn: sa.Connection, source: str, window_start: dt.datetime, code: str,
                   n: int = 1) -> int:
    """Add ``n`` refusals with ``code`` from ``source`` in the window; returns the
    source's total in that window, every code and every replica included."""
    insert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(Row)
    statement = insert.values(source=source, window_start=window_start, code=code, count=n)
    conn.execute(statement.on_conflict_do_update(
        index_elements=[col(Row.source), col(Row.window_start), col(Row.code)],
        set_={"count": col(Row.count) + statement.excluded.count}))
    total = conn.execute(sa.select(sa.func.sum(col(Row.count))).where(
        col(Row.source) == source, col(Row.window_start) == window_start)).scalar()
    return int(total or 0)


@dataclass
class Window:
    """One source's refusals in one window, by code."""

    source: str
    window_start: dt.datetime
    codes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.codes.values())


def claim_windows(conn: sa.Connection, started_before: dt.datetime) -> list[Window]:
    """Remove and return every window that started before ``started_before`` (closed
    windows: the caller summarises them in the same transaction)."""
    rows = conn.execute(sa.delete(Row).where(col(Row.window_start) < started_before)
                        .returning(col(Row.source), col(Row.window_start), col(Row.code),
                                   col(Row.count))).all()
    windows: dict[tuple[str, dt.datetime], Window] = {}
    for source, start, code, count in rows:
        window = windows.setdefault((source, start), Window(source, start))
        window.codes[code] = window.codes.get(code, 0) + int(count)
    return sorted(windows.values(), key=lambda w: (w.window_start, w.source))
