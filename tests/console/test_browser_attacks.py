"""Browser checks from the review of issue 16 that need the attestor under a name other
than 127.0.0.1 (as in production): Swagger UI must not reach for another host there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.conftest import FLAGS, chromium_path
from tests.harness import LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
NAME = "attestor.example.test"  # resolved to 127.0.0.1 by the browser alone


@pytest.fixture
def named_page(attestor: LiveAttestor) -> Iterator[tuple[Any, str]]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed: {exc}")
    port = attestor.url.rsplit(":", 1)[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=[
            *FLAGS, f"--host-resolver-rules=MAP {NAME} 127.0.0.1"])
        try:
            tab = browser.new_page()
            tab.csp_violations = []
            tab.on("console", lambda m: tab.csp_violations.append(m.text)
                   if "Content Security Policy" in m.text else None)
            yield tab, f"http://{NAME}:{port}"
        finally:
            browser.close()


def test_docs_reach_no_other_host_under_a_real_name(named_page: tuple[Any, str]) -> None:
    """Swagger UI loads https://validator.swagger.io/… with the attestor's URL whenever
    that URL is not localhost, in its standalone layout: /docs uses BaseLayout, which
    has no badge; this holds it there (the other /docs tests run on 127.0.0.1)."""
    page, url = named_page
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_load_state("networkidle")
    outside = page.locator("[src*='//'], [href*='//']").evaluate_all(
        "els => els.map(e => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => !u.startsWith(location.origin))")
    assert outside == []
    assert requested and all(u.startswith(url) for u in requested), requested
    assert not page.csp_violations, page.csp_violations
