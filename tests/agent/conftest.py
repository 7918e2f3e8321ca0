"""Fixtures the agent tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.proxy import FlakyProxy
from tests.harness import LiveAttestor


@pytest.fixture
def proxy(attestor: LiveAttestor) -> Iterator[FlakyProxy]:
    """A fault-injecting proxy in front of the live attestor."""
    flaky = FlakyProxy(attestor.url)
    try:
        yield flaky
    finally:
        flaky.close()
