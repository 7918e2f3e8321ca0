"""A rendered pod's files and environment laid out under a local directory, as the kubelet
would lay them out in the container, so the real attestor and agent can be started on
exactly what the chart mounts: each volumeMount becomes a directory under ``root`` holding
the Secret/ConfigMap keys it selects (a missing key fails, as the pod would), env values
that are absolute paths point under ``root``, and secretKeyRefs resolve."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.chart import Doc

SERVICE_ACCOUNT_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZXAifQ.c2ln"


@dataclass
class Cluster:
    """The namespace's Secrets and ConfigMaps, as the operator created them."""

    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def add_config_maps(self, docs: list[Doc]) -> None:
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                self.config_maps[doc["metadata"]["name"]] = {
                    k: v.encode() for k, v in doc["data"].items()}


def _selected(data: dict[str, bytes], items: list[Doc] | None, what: str) -> dict[str, bytes]:
    if items is None:
        return dict(data)
    missing = [i["key"] for i in items if i["key"] not in data]
    if missing:
        raise KeyError(f"{what} has no key {missing}: the pod would not start")
    return {i["path"]: data[i["key"]] for i in items}


def _files(volume: Doc, cluster: Cluster) -> dict[str, bytes] | None:
    """The files a volume shows, or None for a writable directory (PVC, emptyDir)."""
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        return _selected(cluster.secrets[name], volume["secret"].get("items"), f"Secret {name}")
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        return _selected(cluster.config_maps[name], volume["configMap"].get("items"),
                         f"ConfigMap {name}")
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"]["sources"]:
            token = source["serviceAccountToken"]
            files[token["path"]] = SERVICE_ACCOUNT_JWT.encode()
        return files
    if "persistentVolumeClaim" in volume or "emptyDir" in volume:
        return None
    raise ValueError(f"volume {volume['name']}: no local stand-in for {sorted(volume)}")


def under(root: Path, value: str) -> str:
    return f"{root}{value}" if value.startswith("/") else value


def rebase_paths(text: str, root: Path) -> str:
    """Every quoted absolute path in a settings file, moved under ``root``."""
    return re.sub(r'"(/[^"]*)"', lambda m: f'"{root}{m.group(1)}"', text)


def lay_out(pod: Doc, container: Doc, root: Path, cluster: Cluster) -> dict[str, str]:
    """Create the container's mounts under ``root``; return its environment."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        files = _files(volumes[mount["name"]], cluster)
        target.mkdir(parents=True, exist_ok=True)
        for name, data in (files or {}).items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(data)
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = under(root, var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = cluster.secrets[ref["name"]][ref["key"]].decode()
    return env


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}
