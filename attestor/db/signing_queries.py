"""Queries of the signing keyring (kept apart from queries.py, which is large)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlmodel import Session, col, select

from attestor.db.models import SigningKeyRow


def signing_keys(session: Session) -> Sequence[SigningKeyRow]:
    """Every key, newest first."""
    return session.exec(select(SigningKeyRow).order_by(col(SigningKeyRow.created_at).desc(),
                                                       col(SigningKeyRow.kid))).all()


def add_signing_key(session: Session, row: SigningKeyRow) -> None:
    session.add(row)
    session.flush()


def retire_active_keys(session: Session, now: dt.datetime, keep: str) -> list[str]:
    """Retire every active key but ``keep``; the kids retired."""
    rows = session.exec(select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None),
                                                    SigningKeyRow.kid != keep)).all()
    for row in rows:
        row.retired_at = now
        session.add(row)
    return [row.kid for row in rows]
