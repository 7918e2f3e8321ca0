"""Which secrets a passing device receives: its class's policy and its result's status."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from attestor.backends.secrets.embedded import EmbeddedSecretStore
from attestor.db.engine import make_engine, upgrade
from attestor.db.models import Device
from attestor.services.release import release
from identity.errors import BackendUnavailable
from identity.policy import PolicyDocument

NOW = dt.datetime.now(dt.UTC)
DEVICE = Device(id="d-1", device_class="default", ek_public=b"", ak_public=b"", ak_name="",
                devid_public=b"")


@pytest.fixture
def svc(tmp_path: Path) -> SimpleNamespace:
    engine = make_engine(f"sqlite:///{tmp_path / 'db'}", create=True)
    upgrade(engine)
    EmbeddedSecretStore.create_key(tmp_path / "k")
    store = EmbeddedSecretStore.from_key_file(engine, tmp_path / "k")
    store.put("wifi/psk", b"wifi value 123", NOW)
    store.put("disk/key", b"disk value 456", NOW)
    return SimpleNamespace(secrets=store)


def test_affirming_tier_is_withheld_on_a_pass_with_warnings(svc: SimpleNamespace) -> None:
    document = PolicyDocument(secrets=("wifi/psk", "disk/key"),
                              secret_tiers={"disk/key": "affirming"})
    warned = release(svc, document, DEVICE, "warning")  # type: ignore[arg-type]
    assert [g.name for g in warned.granted] == ["wifi/psk"]
    assert warned.withheld == ["disk/key"]
    assert warned.audit == [{"name": "wifi/psk", "version": 1, "delivery": "value"}]
    clean = release(svc, document, DEVICE, "affirming")  # type: ignore[arg-type]
    assert [g.name for g in clean.granted] == ["wifi/psk", "disk/key"] and not clean.withheld
    assert b"disk value 456" not in repr(clean.audit).encode()


def test_a_granted_secret_the_store_lacks_fails_closed(svc: SimpleNamespace) -> None:
    document = PolicyDocument(secrets=("wifi/psk", "not/stored"))
    with pytest.raises(BackendUnavailable, match="not/stored"):
        release(svc, document, DEVICE, "affirming")  # type: ignore[arg-type]


def test_tiers_only_for_granted_secrets() -> None:
    with pytest.raises(ValueError, match="secret_tiers"):
        PolicyDocument(secrets=("a",), secret_tiers={"b": "affirming"})
