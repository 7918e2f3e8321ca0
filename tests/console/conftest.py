"""The console under a real browser: Debian's Chromium driven by Playwright (never a
browser download), a live attestor trusting the test OIDC issuer, and a small fleet
of swtpm devices shared by a module (one healthy, one that booted a tampered boot
loader, one for the admin to revoke).

Under CI=true a missing Chromium or Playwright fails the tests; elsewhere they skip.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.attest import attest_once
from agent.config import AgentConfig
from agent.sim.swtpm import Manufacturer
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.oidc_issuer import OidcIssuer

IN_CI = os.environ.get("CI") == "true"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "ui"
# What works headless here, as root, with no network (shared/TOOLS.md); Playwright
# gives every launch a fresh temporary profile (user data dir).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "Debian's chromium is not installed (scripts/sysdeps.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"playwright is not installed: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; CSP violations it reports are
    collected in ``page.csp_violations``."""
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    tab = context.new_page()
    tab.csp_violations = []
    tab.on("console", lambda m: tab.csp_violations.append(m.text)
           if "Content Security Policy" in m.text else None)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    found = OidcIssuer(roles=("admin",))
    try:
        yield found
    finally:
        found.stop()


@dataclass
class Fleet:
    attestor: LiveAttestor
    devices: dict[str, Device] = field(default_factory=dict)
    configs: dict[str, AgentConfig] = field(default_factory=dict)

    def id(self, name: str) -> str:
        device_id = self.configs[name].device_id
        assert device_id is not None
        return device_id

    def attest(self, name: str) -> None:
        with self.attestor.client(self.configs[name], self.devices[name].tpm) as client:
            attest_once(self.configs[name], self.devices[name].tpm, client, now())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, manufacturer: Manufacturer,
          issuer: OidcIssuer) -> Iterator[Fleet]:
    """healthy: passes; tampered: passed, then booted a modified GRUB (refused,
    policy.pcr_mismatch on PCR 4); spare: passes, for the admin to revoke."""
    from agent.client import AttestorError

    root = tmp_path_factory.mktemp("console")
    attestor = LiveAttestor(root / "attestor", [manufacturer], **issuer.settings()).start()
    found = Fleet(attestor)
    try:
        for name, serial in (("healthy", "SN-OK-1"), ("tampered", "SN-TAMPER-2"),
                             ("spare", "SN-SPARE-3")):
            device = found.devices[name] = Device(manufacturer, root / name, serial=serial)
            found.configs[name] = enroll_and_learn(attestor, device)
        for name in found.devices:
            found.attest(name)
        found.devices["tampered"].reboot(tamper="bootloader")
        with pytest.raises(AttestorError) as refused:
            found.attest("tampered")
        assert "policy.pcr_mismatch" in refused.value.codes
        yield found
    finally:
        for device in found.devices.values():
            device.close()
        attestor.stop()


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot of the page for docs/console.md."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Any, attestor: LiveAttestor, role: str,
            ttl: dt.timedelta = dt.timedelta(minutes=10)) -> None:
    """Sign in with a token of ``role`` (the session ends with the token at the latest)."""
    page.goto(attestor.url + "/ui")
    page.fill("#token", attestor.token(role, ttl))
    page.click("#token-login")
    page.wait_for_url(attestor.url + "/ui")


