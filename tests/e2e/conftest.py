"""Fixtures of the zero-touch onboarding tests (tests/e2e/onboarding.py has the steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.oem.ca import OemAuthority
from agent.sim.swtpm import Manufacturer
from tests.e2e.onboarding import factory, import_manifest, import_roots, oem
from tests.harness import Device, LiveAttestor


@pytest.fixture
def authority(tmp_path: Path) -> OemAuthority:
    """An OEM with its own CA."""
    return oem(tmp_path / "oem")


@pytest.fixture
def owned(attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
          authority: OemAuthority, tmp_path: Path) -> Device:
    """``device`` provisioned by the OEM, its batch imported by the owner."""
    factory(device, manufacturer, authority, tmp_path / "batch")
    import_roots(attestor, authority)
    assert import_manifest(attestor, authority, tmp_path / "batch").status_code == 201
    return device
