"""The console's queries (attestor/db/console_queries.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Session, select

from attestor.db import console_queries as cq
from attestor.db import queries
from attestor.db.models import Attestation, Certificate, Device

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _device(device_id: str, serial: str, *, verdict: str | None = None, reasons: str = "",
            state: str = "active") -> Device:
    return Device(id=device_id, serial=serial, model="edge-100", state=state,
                  ek_public=b"ek", ak_public=b"ak", ak_name="00", devid_public=b"devid",
                  enrolled_at=NOW, last_verdict=verdict, last_reasons=reasons)


def _attestation(device_id: str, verdict: str, at: dt.datetime, *, pcr4: str = "aa",
                 reasons: tuple[str, ...] = (), log: bytes | None = b"log") -> Attestation:
    return Attestation(device_id=device_id, at=at, verdict=verdict, reasons=list(reasons),
                       evidence_sha256="0" * 64, pcr_values={"sha256": {"4": pcr4}},
                       event_log=log)


def _fill(session: Session) -> None:
    session.add_all([
        _device("dev-a", "SN-1", verdict="pass"),
        _device("dev-b", "SN-2", verdict="fail", reasons=",policy.pcr_mismatch,"),
        _device("dev-c", "SN_3%", state="quarantined"),
        _attestation("dev-b", "pass", NOW - dt.timedelta(hours=30)),
        _attestation("dev-b", "pass", NOW - dt.timedelta(hours=2), pcr4="bb", log=None),
        _attestation("dev-b", "fail", NOW - dt.timedelta(hours=1), pcr4="cc",
                     reasons=("policy.pcr_mismatch", "eventlog.unknown_boot_application")),
        _attestation("dev-a", "fail", NOW - dt.timedelta(hours=40),
                     reasons=("nonce.expired",)),
    ])
    for serial, kind, days in (("01", "identity", 10), ("02", "identity", 90),
                               ("03", "workload", 1), ("04", "identity", -1)):
        session.add(Certificate(serial=serial, device_id="dev-a", kind=kind, pem="",
                                not_before=NOW - dt.timedelta(days=100),
                                not_after=NOW + dt.timedelta(days=days)))
    session.commit()


def test_console_queries(engine: sa.Engine) -> None:
    with Session(engine) as session:
        _fill(session)
        counts, refused = cq.refusals_by_reason(session, NOW - dt.timedelta(hours=24))
        assert refused == 1
        assert counts == {"policy.pcr_mismatch": 1, "eventlog.unknown_boot_application": 1}

        def ids(search: queries.DeviceFilter, after: str | None = None,
                limit: int = 10) -> list[str]:
            return [d.id for d in queries.find_devices(session, search, after, limit)]

        assert ids(queries.DeviceFilter()) == ["dev-a", "dev-b", "dev-c"]
        assert ids(queries.DeviceFilter(), after="dev-a", limit=1) == ["dev-b"]
        assert ids(queries.DeviceFilter(text="SN-2")) == ["dev-b"]
        assert ids(queries.DeviceFilter(text="_3%")) == ["dev-c"]  # wildcards are literal
        assert ids(queries.DeviceFilter(text="%")) == ["dev-c"]
        assert ids(queries.DeviceFilter(verdict="none")) == ["dev-c"]
        assert ids(queries.DeviceFilter(reason="policy.pcr_mismatch")) == ["dev-b"]
        assert ids(queries.DeviceFilter(state="quarantined")) == ["dev-c"]
        assert cq.device_classes(session) == ["default"]

        soon = cq.expiring_certificates(session, "identity", NOW, dt.timedelta(days=30))
        assert [c.serial for c in soon] == ["01"]

        refused_row = session.exec(select(Attestation).where(
            Attestation.verdict == "fail", Attestation.device_id == "dev-b")).one()
        assert refused_row.id is not None
        found = cq.attestation(session, "dev-b", refused_row.id)
        assert found is not None and cq.attestation(session, "dev-a", refused_row.id) is None
        # the newest passing boot with that value and a kept log, not a later one without
        reference = cq.reference_attestation(session, "dev-b", "sha256", {4: "aa"},
                                             refused_row.id)
        assert reference is not None and reference.at == NOW - dt.timedelta(hours=30)
        assert cq.reference_attestation(session, "dev-b", "sha256", {4: "bb"},
                                        refused_row.id) is None
        # another device of the class: none of dev-b's own boots would do for "dd"
        session.add(_attestation("dev-a", "pass", NOW - dt.timedelta(hours=3), pcr4="dd"))
        session.add(_attestation("dev-a", "pass", NOW - dt.timedelta(hours=4), pcr4="dd",
                                 log=None))
        session.commit()
        assert cq.reference_attestation(session, "dev-b", "sha256", {4: "dd"},
                                        refused_row.id) is None
        other = cq.reference_attestation(session, "dev-b", "sha256", {4: "dd"},
                                         refused_row.id + 10, "default")
        assert other is not None and other.device_id == "dev-a" and other.event_log
        assert cq.last_checkpoint(session) is None
