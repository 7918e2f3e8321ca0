"""deploy/monitoring: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every alert's tests can fail both ways, and every metric a rule
or the Grafana dashboard names is one a live attestor or an agent's textfile exposes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent import textfile
from agent.attest import attest_once
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.tools import require_tool

pytestmark = [pytest.mark.deploy]
MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "edgeproof-alerts.yml"
RULE_TESTS = MONITORING / "edgeproof-alerts.test.yml"
DASHBOARD = MONITORING / "edgeproof-dashboard.json"

# Metrics another part of the work will add, named by a rule before that work is merged
# (none now: the abuse-resistance metrics landed). The test below fails for a name that is
# both pending and exposed, so the list cannot go stale.
PENDING: frozenset[str] = frozenset()
SCRAPE_BUILTINS = frozenset({"up"})  # made by Prometheus itself for every target


def promtool() -> str:
    return require_tool("promtool", "apt-get install prometheus (make setup)")


def run_promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,  # noqa: S603
                          timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[str]:
    return [rule["alert"] for rule in rules() if "alert" in rule]


def test_rules_are_a_plain_prometheus_rule_file_that_promtool_accepts() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}  # what the Helm chart's PrometheusRule renders
    checked = run_promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_has_unit_tests_and_they_pass() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested: dict[str, list[bool]] = {}
    for case in cases:
        for check in case.get("alert_rule_test", []):
            tested.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
    assert set(tested) == set(alerts())
    assert all(any(fires) for fires in tested.values()), "an alert never expected to fire"
    result = run_promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", alerts())
def test_each_alerts_tests_fail_when_it_never_fires_or_always_fires(alert: str,
                                                                    tmp_path: Path) -> None:
    """Replace the alert's expression by one that never fires, then by one that always
    does: its unit tests must catch both (a positive case, and a case where it must stay
    quiet, or a label set that an always-firing alert cannot match). Only the test groups
    that name the alert run (the whole file takes seconds per run)."""
    cases = yaml.safe_load(RULE_TESTS.read_text())
    cases["tests"] = [case for case in cases["tests"]
                      if any(t["alertname"] == alert for t in case.get("alert_rule_test", []))]
    (tmp_path / RULE_TESTS.name).write_text(yaml.safe_dump(cases, sort_keys=False))
    (tmp_path / RULES.name).write_text(RULES.read_text())
    unchanged = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert unchanged.returncode == 0, unchanged.stdout  # the subset passes as it is
    for expression in ("vector(0) > 1", "vector(1)"):
        document = yaml.safe_load(RULES.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule["expr"] = expression
        (tmp_path / RULES.name).write_text(yaml.safe_dump(document, sort_keys=False))
        result = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
        assert result.returncode != 0, f"{alert} with `{expression}` still passes its tests"


def _selectors(expression: str) -> Iterator[tuple[str, list[str]]]:
    """(metric name, label names matched) of every series selector in a PromQL
    expression; Grafana's interval variables become a fixed range first."""
    text = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expression)
    found: list[tuple[str, list[str]]] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            labels = [m.name for m in node.matchers.matchers if m.name != "__name__"]
            assert node.name, f"a selector without a metric name in {expression!r}"
            found.append((node.name, labels))
        return True

    promql_parser.walk(promql_parser.parse(text), visit)
    yield from found


def _dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"]
            for target in panel.get("targets", [])]


def test_dashboard_is_grafana_json_covering_what_operators_watch() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and document["title"] and document["schemaVersion"] >= 36
    assert [v["name"] for v in document["templating"]["list"]] == ["datasource"]
    titles = [panel["title"] for panel in document["panels"]]
    assert len(titles) == len(set(titles))
    for wanted in ("Active devices", "Devices by state and last verdict", "Verdicts over time",
                   "Refusals by reason code", "Issuance latency", "Backend health",
                   "Unhealthy agents", "Failing health checks"):
        assert wanted in titles
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
    for expression in _dashboard_expressions():
        list(_selectors(expression))  # every query parses


def _exposed(text: str) -> dict[str, set[str]]:
    """Metric name -> label names, for every sample name a scrape can hold (a labelled
    counter or histogram with no child yet still declares its family)."""
    names: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                                  "_created"),
                "summary": ("_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",)}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


@pytest.fixture
def exposed(attestor: LiveAttestor, device: Device, tmp_path: Path) -> dict[str, set[str]]:
    """What a live attestor's scrape and an agent's textfile hold after a device
    enrolled, was refused once and attested."""
    config = enroll_and_learn(attestor, device)
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    scrape = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("auditor")).text
    prom = tmp_path / "edge_agent.prom"
    textfile.update(config, now(), prom)
    found = _exposed(scrape)
    for name, labels in _exposed(prom.read_text()).items():
        found.setdefault(name, set()).update(labels)
    return found


@pytest.mark.e2e
@pytest.mark.tpm
def test_rules_and_dashboard_name_only_metrics_that_exist(exposed: dict[str, set[str]]) -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    assert not PENDING & set(exposed), (
        f"now exposed, remove from PENDING: {sorted(PENDING & set(exposed))}")
    referenced = [(where, expression) for where, expression in
                  [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
                  + [("dashboard", e) for e in _dashboard_expressions()]]
    unknown = []
    for where, expression in referenced:
        for name, labels in _selectors(expression):
            if name in recorded or name in SCRAPE_BUILTINS or name in PENDING:
                continue
            if name not in exposed:
                unknown.append(f"{where}: {name}")
                continue
            target_labels = {"job", "instance"}  # added by Prometheus at scrape time
            missing = set(labels) - exposed[name] - target_labels
            if missing:
                unknown.append(f"{where}: {name} has no label {sorted(missing)}")
    assert not unknown, "rules or dashboard name what nothing exposes:\n" + "\n".join(unknown)
    assert {"edgeproof_backend_up", "edgeproof_devices", "edge_agent_healthy",
            "edgeproof_http_requests_total"} <= set(exposed)
