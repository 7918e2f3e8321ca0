"""Data access for zero-touch onboarding: manufacturer roots, ownership, challenges."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from attestor.db.ownership_models import ManufacturerRoot, OnboardingChallenge, Ownership
from identity.devid.manifest import ManifestEntry
from identity.errors import (
    NotFound,
    OnboardingChallengeExpired,
    OnboardingChallengeReplayed,
    OnboardingChallengeUnknown,
)

OWNED, ONBOARDED, REVOKED = "owned", "onboarded", "revoked"


def put_root(session: Session, row: ManufacturerRoot) -> bool:
    """Add (or bring back) a manufacturer certificate; False if it was already active."""
    existing = session.get(ManufacturerRoot, row.sha256)
    if existing is not None and existing.removed_at is None:
        return False
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(row)
    return True


def remove_root(session: Session, sha256: str, now: dt.datetime) -> ManufacturerRoot:
    row = session.get(ManufacturerRoot, sha256)
    if row is None or row.removed_at is not None:
        raise NotFound(f"no active manufacturer certificate {sha256}")
    row.removed_at = now
    session.add(row)
    return row


def active_root(session: Session, sha256: str) -> ManufacturerRoot | None:
    """The imported, not removed, self-signed root with this SHA-256."""
    row = session.get(ManufacturerRoot, sha256)
    return row if row is not None and row.is_root and row.removed_at is None else None


def count_bound(session: Session, root_sha256: str, state: str) -> int:
    """How many ownership records in ``state`` are bound to this manufacturer root."""
    return session.exec(select(sa.func.count()).select_from(Ownership).where(
        Ownership.root_sha256 == root_sha256, Ownership.state == state)).one()


def roots(session: Session, *, include_removed: bool = False) -> Sequence[ManufacturerRoot]:
    query = select(ManufacturerRoot).order_by(col(ManufacturerRoot.imported_at))
    if not include_removed:
        query = query.where(col(ManufacturerRoot.removed_at).is_(None))
    return session.exec(query).all()


class Imported(NamedTuple):
    created: int
    updated: int
    onboarded: list[str]  # left as they were: onboarded already
    revoked: list[str]  # left revoked
    conflicting: list[str]  # left as they were: owned with another IDevID or root


def import_entries(session: Session, entries: Sequence[ManifestEntry], *, device_class: str,
                   root_sha256: str, oem: str | None, batch: str | None, actor: str,
                   now: dt.datetime) -> Imported:
    """Owned records for ``entries``. An import never undoes the owner's revocation,
    never touches an onboarded record (releasing either is a separate, audited step), and
    never replaces or drops the IDevID fingerprint a record was owned with, and never
    rebinds it to another manufacturer root: another OEM's manifest or a CSV naming that
    serial would otherwise hand it to another device. A record bound to no root (from
    before root binding) is bound to ``root_sha256``."""
    created = updated = 0
    kept: dict[str, list[str]] = {ONBOARDED: [], REVOKED: [], "conflict": []}
    existing = {row.serial: row for row in session.exec(
        select(Ownership).where(col(Ownership.serial).in_([e.serial for e in entries])))}
    for entry in entries:
        row = existing.get(entry.serial)
        if row is not None and row.state in (ONBOARDED, REVOKED):
            kept[row.state].append(entry.serial)
            continue
        if row is not None and row.idevid_sha256 is not None \
                and row.idevid_sha256 != entry.idevid_sha256 \
                or row is not None and row.root_sha256 not in (None, root_sha256):
            kept["conflict"].append(entry.serial)
            continue
        if row is None:
            row = Ownership(serial=entry.serial, imported_by=actor, imported_at=now)
            created += 1
        else:
            updated += 1
            row.changed_at = now
        row.device_class, row.idevid_sha256 = device_class, entry.idevid_sha256
        row.root_sha256 = root_sha256
        row.oem, row.batch, row.state = oem, batch, OWNED
        session.add(row)
    return Imported(created, updated, kept[ONBOARDED], kept[REVOKED], kept["conflict"])


def find(session: Session, serial: str, *, for_update: bool = False) -> Ownership | None:
    """The record; ``for_update`` locks its row (PostgreSQL) until the transaction ends,
    so two onboardings of one serial are serialised."""
    return session.get(Ownership, serial, populate_existing=True, with_for_update=for_update)


def page(session: Session, state: str | None, after: str | None,
         limit: int) -> Sequence[Ownership]:
    query = select(Ownership).order_by(col(Ownership.serial)).limit(limit)
    if state:
        query = query.where(Ownership.state == state)
    if after:
        query = query.where(col(Ownership.serial) > after)
    return session.exec(query).all()


def set_state(session: Session, serial: str, state: str, now: dt.datetime,
              device_id: str | None = None) -> Ownership:
    row = find(session, serial)
    if row is None:
        raise NotFound(f"no ownership record for serial {serial!r}")
    row.state, row.changed_at = state, now
    if device_id is not None:
        row.device_id = device_id
    session.add(row)
    return row


def add_challenge(session: Session, row: OnboardingChallenge) -> None:
    session.add(row)


def spend_challenge(session: Session, challenge_id: str, now: dt.datetime
                    ) -> OnboardingChallenge:
    """Mark the challenge used, atomically across replicas; typed errors say why not."""
    table = OnboardingChallenge.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        sa.update(table).where(table.c.id == challenge_id, table.c.used_at.is_(None),
                               table.c.expires_at > now).values(used_at=now))
    row = session.get(OnboardingChallenge, challenge_id, populate_existing=True)
    if row is None:
        raise OnboardingChallengeUnknown("no such onboarding challenge")
    if result.rowcount == 1:
        return row
    if row.used_at is not None:
        raise OnboardingChallengeReplayed("this onboarding challenge was answered already")
    raise OnboardingChallengeExpired("the onboarding challenge expired")


def purge_challenges(session: Session, expired_before: dt.datetime) -> int:
    """Onboarding challenges that expired before ``expired_before`` (answered or not)."""
    from attestor.db.housekeeping_queries import _batched

    return _batched(session, OnboardingChallenge, [col(OnboardingChallenge.id)],
                    col(OnboardingChallenge.expires_at) < expired_before)
