"""Migration 0008 on SQLite and PostgreSQL: ownership records written before root
binding are bound to the manufacturer root when only one was ever imported, and left
unbound (refused at onboarding until imported again) when it would be a guess."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from attestor.db import ownership_queries as q
from attestor.db.engine import make_engine, upgrade

T0 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
ROOT_A, ROOT_B, ISSUER = "a" * 64, "b" * 64, "c" * 64


def _before_0008(db_url: str, roots: list[tuple[str, bool, dt.datetime | None]]
                 ) -> sa.Engine:
    """A database at 0007 with two ownership records and the given manufacturer
    certificates (sha256, is_root, removed_at), as 0007's code wrote them."""
    engine = make_engine(db_url, create=True)
    upgrade(engine, "0007")
    certs = sa.table("manufacturer_roots", *(sa.column(c) for c in (
        "sha256", "subject", "certificate", "is_root", "imported_by", "imported_at",
        "removed_at")))
    owned = sa.table("ownership", *(sa.column(c) for c in (
        "serial", "device_class", "idevid_sha256", "state", "imported_by", "imported_at")))
    with engine.begin() as conn:
        for sha, is_root, removed in roots:
            conn.execute(sa.insert(certs).values(
                sha256=sha, subject=f"CN={sha[0]}", certificate=b"\x30", is_root=is_root,
                imported_by="cli", imported_at=T0, removed_at=removed))
        conn.execute(sa.insert(owned), [
            dict(serial="SN-CSV", device_class="default", idevid_sha256=None,
                 state="owned", imported_by="cli", imported_at=T0),
            dict(serial="SN-MAN", device_class="default", idevid_sha256="d" * 64,
                 state="onboarded", imported_by="cli", imported_at=T0)])
    upgrade(engine)
    return engine


def _bound(engine: sa.Engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return {r.serial: r.root_sha256 for r in q.page(session, None, None, 10)}


def test_records_are_bound_to_the_only_root_ever_imported(db_url: str) -> None:
    # an intermediate does not make it ambiguous: records bind to roots only
    engine = _before_0008(db_url, [(ROOT_A, True, None), (ISSUER, False, None)])
    try:
        assert _bound(engine) == {"SN-CSV": ROOT_A, "SN-MAN": ROOT_A}
    finally:
        engine.dispose()


@pytest.mark.parametrize("removed", [None, T0], ids=["both-active", "one-removed"])
def test_records_stay_unbound_when_two_roots_were_imported(
        db_url: str, removed: dt.datetime | None) -> None:
    """A removed root counts: the records may have been imported under it."""
    engine = _before_0008(db_url, [(ROOT_A, True, None), (ROOT_B, True, removed)])
    try:
        assert _bound(engine) == {"SN-CSV": None, "SN-MAN": None}
    finally:
        engine.dispose()
