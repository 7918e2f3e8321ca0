"""The deploy tests check manifests offline; the summary says what that leaves unchecked."""

from __future__ import annotations

import pytest

RAN: list[str] = []


@pytest.fixture(autouse=True)
def _note_chart_test(request: pytest.FixtureRequest) -> None:
    if "chart" in request.node.module.__name__:
        RAN.append(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RAN:
        terminalreporter.write_line(
            f"helm chart ({len(RAN)} tests): rendered with the pinned helm and validated "
            "offline (Kubernetes JSON schemas, strict; prometheus-operator models); "
            "server-side validation did NOT run: no Kubernetes API server here (no dry-run "
            "apply, admission, Pod Security or CRD webhooks)")
