"""Rendering the Helm chart with the project's pinned helm, and reading what it rendered.

Nothing here talks to a Kubernetes API server (there is none on this machine or in CI):
the manifests are checked offline (Kubernetes JSON schemas, the prometheus-operator
models, assertions over the parsed YAML) and the conftest says so in the summary.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "edgeproof"
EXAMPLES = CHART / "examples"
REFUSALS = CHART / "ci"
TOOLS = ROOT / "scripts" / "tools.sh"

Doc = dict[str, Any]


@cache
def _installed_helm() -> str | None:
    """The pinned helm's path from scripts/tools.sh (which installs it if it is missing)."""
    done = subprocess.run([str(TOOLS), "helm"], capture_output=True, text=True, timeout=600,
                          check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def helm() -> str:
    return require_tool("helm", "make setup (scripts/tools.sh installs the pinned helm)",
                        _installed_helm())


class Refused(Exception):
    """helm refused to render (schema or a template's `fail`); the message is helm's."""


def helm_run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([helm(), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if "symbolic link" not in ln]
        raise Refused("\n".join(lines))
    return done.stdout


def render(*files: Path, values: dict[str, Any] | None = None, chart: Path = CHART,
           namespace: str = "edgeproof") -> list[Doc]:
    """`helm template rel CHART -f FILE... [-f - (values)]`, parsed."""
    args = ["template", "rel", str(chart), "--namespace", namespace]
    for f in files:
        args += ["-f", str(f)]
    if values is not None:
        args += ["-f", "-"]
    out = helm_run(*args, stdin=json.dumps(values) if values is not None else None)
    return [d for d in yaml.safe_load_all(out) if d]


def refusal(*files: Path, values: dict[str, Any] | None = None) -> str:
    try:
        render(*files, values=values)
    except Refused as exc:
        return str(exc)
    raise AssertionError(f"helm rendered {[f.name for f in files]} {values} without refusing")


def one(docs: list[Doc], kind: str, name_suffix: str = "") -> Doc:
    found = [d for d in docs if d["kind"] == kind
             and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{len(found)} {kind} named *{name_suffix}"
    return found[0]


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@dataclass(frozen=True)
class Container:
    owner: str          # "Deployment/rel-edgeproof"
    pod: Doc            # the pod spec
    spec: Doc           # the container
    init: bool


def pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(docs: list[Doc]) -> Iterator[Container]:
    for doc in docs:
        pod = pod_spec(doc)
        if pod is None:
            continue
        owner = f"{doc['kind']}/{doc['metadata']['name']}"
        for c in pod.get("initContainers", []):
            yield Container(owner, pod, c, True)
        for c in pod["containers"]:
            yield Container(owner, pod, c, False)


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.yaml"
