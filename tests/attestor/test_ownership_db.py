"""Onboarding challenges and ownership records in the database (SQLite and PostgreSQL):
single use across sessions, expiry, purge; imports keep onboarded records."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from attestor.db import ownership_queries as q
from attestor.db.ownership_models import OnboardingChallenge
from identity.devid.manifest import ManifestEntry
from identity.errors import (
    OnboardingChallengeExpired,
    OnboardingChallengeReplayed,
    OnboardingChallengeUnknown,
)

NOW = dt.datetime(2026, 12, 2, 4, 0, tzinfo=dt.UTC)
ROOT, OTHER_ROOT = "1" * 64, "2" * 64


def _challenge(engine: sa.Engine, cid: str = "c1", expires: dt.datetime | None = None) -> None:
    with Session(engine) as session, session.begin():
        q.add_challenge(session, OnboardingChallenge(
            id=cid, nonce=b"n" * 32, serial="SN-1", idevid_sha256="a" * 64, created_at=NOW,
            expires_at=expires or NOW + dt.timedelta(minutes=5)))


def test_a_challenge_is_spent_once(engine: sa.Engine) -> None:
    _challenge(engine)
    with Session(engine) as session, session.begin():
        assert q.spend_challenge(session, "c1", NOW).nonce == b"n" * 32
    with Session(engine) as session, session.begin(), pytest.raises(
            OnboardingChallengeReplayed):
        q.spend_challenge(session, "c1", NOW + dt.timedelta(seconds=1))
    with Session(engine) as session, session.begin(), pytest.raises(
            OnboardingChallengeUnknown):
        q.spend_challenge(session, "nope", NOW)


def test_an_expired_challenge_is_refused_and_purged(engine: sa.Engine) -> None:
    _challenge(engine, "old", NOW - dt.timedelta(seconds=1))
    _challenge(engine, "live")
    with Session(engine) as session, session.begin(), pytest.raises(
            OnboardingChallengeExpired):
        q.spend_challenge(session, "old", NOW)
    with Session(engine) as session:
        assert q.purge_challenges(session, NOW) == 1
    with Session(engine) as session:
        assert session.get(OnboardingChallenge, "live") is not None


def test_import_keeps_onboarded_and_revoked_records(engine: sa.Engine) -> None:
    entries = [ManifestEntry("SN-1", "a" * 64), ManifestEntry("SN-2", None),
               ManifestEntry("SN-3", "b" * 64)]
    with Session(engine) as session, session.begin():
        assert q.import_entries(session, entries, device_class="c", root_sha256=ROOT,
                                oem="o", batch="b", actor="t", now=NOW) == (3, 0, [], [], [])
        q.set_state(session, "SN-1", q.ONBOARDED, NOW, device_id="d1")
        q.set_state(session, "SN-3", q.REVOKED, NOW)
    with Session(engine) as session, session.begin():
        assert q.import_entries(session, entries, device_class="c2", root_sha256=ROOT,
                                oem=None, batch=None, actor="t", now=NOW
                                ) == (0, 1, ["SN-1"], ["SN-3"], [])
    with Session(engine) as session:
        one, two, three = (q.find(session, s) for s in ("SN-1", "SN-2", "SN-3"))
        assert one is not None and (one.state, one.device_class) == ("onboarded", "c")
        assert two is not None and (two.state, two.device_class) == ("owned", "c2")
        assert three is not None and (three.state, three.device_class) == ("revoked", "c")


def test_import_never_replaces_or_drops_an_idevid_fingerprint(engine: sa.Engine) -> None:
    """A serial owned with its IDevID's fingerprint keeps it: another OEM's manifest (or
    a CSV) naming that serial must not hand it to another IDevID (or to any)."""
    with Session(engine) as session, session.begin():
        q.import_entries(session, [ManifestEntry("SN-1", "a" * 64),
                                   ManifestEntry("SN-2", None)],
                         device_class="c", root_sha256=ROOT, oem="A", batch="1", actor="t", now=NOW)
    with Session(engine) as session, session.begin():
        done = q.import_entries(session, [ManifestEntry("SN-1", "e" * 64),
                                          ManifestEntry("SN-2", "f" * 64)],
                                device_class="c", root_sha256=ROOT, oem="B", batch="9",
                                actor="t", now=NOW)
        assert done == (0, 1, [], [], ["SN-1"])  # SN-2 gains a fingerprint: allowed
    with Session(engine) as session, session.begin():
        assert q.import_entries(session, [ManifestEntry("SN-1", None)], device_class="c",
                                root_sha256=ROOT, oem=None, batch=None, actor="t", now=NOW
                                ) == (0, 0, [], [], ["SN-1"])
        assert q.import_entries(session, [ManifestEntry("SN-1", "a" * 64)],
                                device_class="c2", root_sha256=ROOT, oem="A", batch="1",
                                actor="t", now=NOW
                                ) == (0, 1, [], [], [])  # the same one: re-import is fine
    with Session(engine) as session:
        one, two = q.find(session, "SN-1"), q.find(session, "SN-2")
        assert one is not None and (one.idevid_sha256, one.oem) == ("a" * 64, "A")
        assert two is not None and two.idevid_sha256 == "f" * 64


def test_import_never_rebinds_a_record_to_another_root(engine: sa.Engine) -> None:
    """A serial owned for one manufacturer root stays bound to it: an import for another
    root (another OEM's manifest, a CSV naming another root) keeps it as it was; a record
    from before root binding (NULL) is bound by the next import."""
    with Session(engine) as session, session.begin():
        q.import_entries(session, [ManifestEntry("SN-1", None), ManifestEntry("SN-2", None)],
                         device_class="c", root_sha256=ROOT, oem=None, batch=None,
                         actor="t", now=NOW)
        legacy = q.find(session, "SN-2")
        assert legacy is not None
        legacy.root_sha256 = None
        session.add(legacy)
    with Session(engine) as session, session.begin():
        assert q.import_entries(session, [ManifestEntry("SN-1", None),
                                          ManifestEntry("SN-2", None)],
                                device_class="c", root_sha256=OTHER_ROOT, oem=None,
                                batch=None, actor="t", now=NOW) == (0, 1, [], [], ["SN-1"])
    with Session(engine) as session:
        assert {s: r.root_sha256 for s in ("SN-1", "SN-2")
                if (r := q.find(session, s)) is not None} == {"SN-1": ROOT,
                                                              "SN-2": OTHER_ROOT}
        assert q.count_bound(session, ROOT, q.OWNED) == 1
