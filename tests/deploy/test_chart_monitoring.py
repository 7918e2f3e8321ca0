"""The chart's monitoring objects: ServiceMonitor and PrometheusRule checked against the
prometheus-operator CRD models (no Kubernetes schema covers them), the rules rendered from
deploy/monitoring/edgeproof-alerts.yml itself, the optional Grafana dashboard ConfigMap,
and the link into deploy/monitoring followed by `helm package`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, ROOT, Doc, Refused, example, helm_run, one, render
from tests.tools import require_tool

pytestmark = pytest.mark.deploy

ALERTS = ROOT / "deploy" / "monitoring" / "edgeproof-alerts.yml"
MONITORING = {"metrics": {"grafanaDashboard": {"enabled": True}}}


def _crd_model(kind: str) -> Any:
    # Imported here: the generated models take seconds to build.
    from cloudcoil.models.prometheus_operator import v1

    return getattr(v1, kind)


def _round_trip(doc: Doc) -> Doc:
    """The document as the CRD model reads it: wrong types raise, and a field the CRD
    does not define is dropped, so comparing with the input finds it."""
    model = _crd_model(doc["kind"]).model_validate(doc)
    out: Doc = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return out


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_monitoring_objects_match_the_prometheus_operator_crds(kind: str) -> None:
    doc = one(render(example("production")), kind)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert _round_trip(doc) == doc


def test_the_crd_check_finds_an_unknown_field() -> None:
    doc = one(render(example("production")), "ServiceMonitor")
    doc["spec"]["endpoints"][0]["targetport"] = 9090
    assert _round_trip(doc) != doc


def test_service_monitor_scrapes_the_metrics_port_as_the_rules_job() -> None:
    docs = render(example("production"))
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == one(
        docs, "Deployment")["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == ("metrics", "/metrics",
                                                                       "http")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"https": 443, "metrics": 9090}
    # Prometheus names the job after the Service label jobLabel points at.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "edgeproof-attestor"
    assert 'job="edgeproof-attestor"' in ALERTS.read_text()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_is_the_alert_file_itself() -> None:
    rule = one(render(example("production")), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    link = CHART / "files" / "monitoring"
    assert link.is_symlink() and link.resolve() == ALERTS.parent.resolve()


def test_alert_file_passes_promtool() -> None:
    promtool = require_tool("promtool", "make setup (Debian package prometheus)")
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_monitoring_objects_are_optional() -> None:
    kinds = {d["kind"] for d in render(example("ingress-tls"))}
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds


def _chart_copy(tmp_path: Path) -> Path:
    """The chart with its link resolved, as `helm package` ships it."""
    copy = tmp_path / "edgeproof"
    shutil.copytree(CHART, copy, symlinks=False)
    return copy


def test_grafana_dashboard_configmap_from_the_monitoring_file(tmp_path: Path) -> None:
    chart = _chart_copy(tmp_path)
    dashboard = {"title": "edgeproof", "panels": [{"type": "stat", "title": "attestors up"}]}
    (chart / "files" / "monitoring" / "edgeproof-dashboard.json").write_text(
        json.dumps(dashboard))
    docs = render(example("production"), values=MONITORING, chart=chart)
    config_map = one(docs, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["edgeproof-dashboard.json"]) == dashboard


def test_grafana_dashboard_without_the_file_is_refused(tmp_path: Path) -> None:
    chart = _chart_copy(tmp_path)
    (chart / "files" / "monitoring" / "edgeproof-dashboard.json").unlink(missing_ok=True)
    with pytest.raises(Refused, match="no files/monitoring/edgeproof-dashboard.json"):
        render(example("production"), values=MONITORING, chart=chart)


def test_prometheus_rule_without_groups_is_refused(tmp_path: Path) -> None:
    chart = _chart_copy(tmp_path)
    (chart / "files" / "monitoring" / "edgeproof-alerts.yml").write_text("rules: []\n")
    with pytest.raises(Refused, match="is not a Prometheus rule file with groups"):
        render(example("production"), chart=chart)


def test_package_follows_the_link_and_leaves_out_the_refusal_sets(tmp_path: Path) -> None:
    helm_run("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("edgeproof-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
        member = tar.extractfile("edgeproof/files/monitoring/edgeproof-alerts.yml")
        assert member is not None and member.read() == ALERTS.read_bytes()
    assert "edgeproof/values.schema.json" in names
    assert not any(n.startswith("edgeproof/ci/") for n in names)
    packaged = render(example("production"), chart=package)
    assert packaged == render(example("production"))
