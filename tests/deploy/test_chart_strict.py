"""What the chart refuses to render: values the schema rejects (wrong types, unknown keys,
closed everywhere), settings that could never run, and, under strict mode (the default),
development settings. Each refusal says what to change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy.helm.values_schema import CONFIG_FIELDS, SCHEMA_FILE
from deploy.helm.values_schema import render as schema_text
from tests.deploy.chart import CHART, REFUSALS, example, refusal, render

pytestmark = pytest.mark.deploy

STRICT_REFUSALS = {
    "dev": "strict mode: attestor.dev=true runs `attestor serve --dev` (the built-in CA "
           "passphrase",
    "sqlite-replicas": "strict mode: SQLite with 3 replicas",
    "plain-http": "strict mode: tls.insecureHttp=true serves plain HTTP, allowed only behind "
                  "an Ingress that terminates TLS",
    "single-postgresql-replica": "strict mode: PostgreSQL with 1 replica",
    "agent-plain-http": "strict mode: the agent would reach the attestor at "
                        "http://attestor.example.com, plain HTTP",
}


def test_every_refusal_file_has_a_test() -> None:
    files = {p.stem.removeprefix("strict-refuses-") for p in REFUSALS.glob("*.yaml")}
    assert files == set(STRICT_REFUSALS)


@pytest.mark.parametrize("case", sorted(STRICT_REFUSALS))
def test_strict_mode_refuses(case: str) -> None:
    values = REFUSALS / f"strict-refuses-{case}.yaml"
    message = refusal(values)
    assert STRICT_REFUSALS[case] in message
    assert "Set " in message or "set " in message  # says what to change
    # The same values render without strict mode: the refusal is strict's alone.
    assert render(values, values={"strict": False})


def test_strict_mode_is_on_by_default_and_refuses_the_dev_example() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["properties"]["strict"]["type"] == "boolean"
    assert "strict: true" in (CHART / "values.yaml").read_text()
    message = refusal(example("dev"), values={"strict": True})
    assert STRICT_REFUSALS["dev"] in message


@pytest.mark.parametrize(("values", "expected"), [
    ({}, "database.type=postgresql needs database.existingSecret"),
    ({"database": {"existingSecret": "db"}}, "set ca.passphrase.existingSecret"),
    ({"database": {"existingSecret": "db"}, "ca": {"passphrase": {"existingSecret": "p"}}},
     "every replica must load the same CA, so set ca.existingSecret"),
    ({"database": {"existingSecret": "db"}, "ca": {"existingSecret": "ca", "passphrase": {
        "existingSecret": "p"}}}, "set secretStore.existingSecret"),
    ({"database": {"type": "sqlite"}, "ca": {"passphrase": {"existingSecret": "p"}}},
     "the attestor serves HTTPS only: set tls.existingSecret"),
    ({"database": {"type": "sqlite"}, "ca": {"passphrase": {"existingSecret": "p"}},
      "tls": {"existingSecret": "t", "insecureHttp": True}}, "not both"),
    ({"database": {"type": "sqlite"}, "ca": {"passphrase": {"existingSecret": "p"}},
      "tls": {"existingSecret": "t"}, "issuer": "vault"}, "set vault.address"),
    ({"database": {"type": "sqlite"}, "ca": {"passphrase": {"existingSecret": "p"}},
      "tls": {"existingSecret": "t"}, "issuer": "vault",
      "vault": {"address": "https://v:8200"}}, "vault.auth=kubernetes needs "
                                               "vault.kubernetes.role"),
    ({"attestor": {"enabled": False}, "agent": {"enabled": True}},
     "agent.enabled without the attestor in this release: set agent.attestorUrls"),
    ({"attestor": {"enabled": False}, "agent": {"enabled": True, "attestorUrls": [
        "https://a.example"]}}, "agent.enabled needs agent.caBundle"),
])
def test_settings_that_could_never_run_are_refused_in_any_mode(values: dict[str, Any],
                                                               expected: str) -> None:
    assert expected in refusal(values={**values, "strict": False})


@pytest.mark.parametrize(("values", "expected"), [
    ({"attestor": {"replicas": "two"}}, "at '/attestor/replicas': got string"),
    ({"attestor": {"replicas": 0}}, "at '/attestor/replicas'"),
    ({"strict": "yes"}, "at '/strict': got string, want boolean"),
    ({"database": {"type": "mysql"}}, "at '/database/type'"),
    ({"agent": {"tpm": {"access": "root"}}}, "at '/agent/tpm/access'"),
    ({"agent": {"attestorUrls": ["ftp://x"]}}, "at '/agent/attestorUrls/0'"),
    ({"metrics": {"port": 70000}}, "at '/metrics/port'"),
    ({"attestor": {"config": {"nonce_ttl_seconds": 5}}},
     "at '/attestor/config/nonce_ttl_seconds'"),
])
def test_schema_refuses_wrong_values(values: dict[str, Any], expected: str) -> None:
    message = refusal(values=values)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


@pytest.mark.parametrize(("values", "where", "key"), [
    ({"replica": 2}, "at ''", "replica"),
    ({"attestor": {"replica": 2}}, "at '/attestor'", "replica"),
    ({"vault": {"kubernetes": {"rol": "x"}}}, "at '/vault/kubernetes'", "rol"),
    ({"attestor": {"config": {"rate_limits": {"max_in_flight": 9}}}},
     "at '/attestor/config/rate_limits'", "max_in_flight"),
    ({"attestor": {"config": {"database_url": "sqlite://"}}}, "at '/attestor/config'",
     "database_url"),
    ({"agent": {"tolerations": [{"key": "k", "efect": "NoSchedule"}]}},
     "at '/agent/tolerations/0'", "efect"),
    ({"networkPolicy": {"apiFrom": [{"namespaceSelectr": {}}]}},
     "at '/networkPolicy/apiFrom/0'", "namespaceSelectr"),
])
def test_schema_refuses_unknown_keys(values: dict[str, Any], where: str, key: str) -> None:
    message = refusal(values=values)
    assert where in message and f"'{key}' not allowed" in message


def _objects(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            found.append((path, node))
        for key, child in node.items():
            found += _objects(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _objects(child, f"{path}/{i}")
    return found


def test_every_object_in_the_schema_is_closed() -> None:
    """additionalProperties false throughout; maps (labels, annotations, resource
    quantities) say what their values are, and Kubernetes' affinity terms are marked."""
    schema = json.loads(SCHEMA_FILE.read_text())
    for path, node in _objects(schema):
        extra = node.get("additionalProperties")
        assert extra is False or isinstance(extra, dict) or "$comment" in node, path


def test_schema_file_is_generated_from_values_schema_py() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "values.schema.json is stale: python -m deploy.helm.values_schema")


def test_attestor_config_offers_real_settings_with_the_attestors_bounds() -> None:
    """attestor.config takes only settings attestor.settings knows, with its types and
    bounds (the schema is built from the model); the chart owns the others."""
    from attestor.settings import Settings

    config = json.loads(SCHEMA_FILE.read_text())["properties"]["attestor"]["properties"][
        "config"]
    for section, names in CONFIG_FIELDS.items():
        model = Settings.model_fields[section].annotation if section else Settings
        assert set(names) <= set(model.model_fields), section  # type: ignore[union-attr]
        props = config["properties"][section]["properties"] if section else config[
            "properties"]
        assert set(names) <= set(props)
    owned = {"host", "port", "data_dir", "database_url", "dev", "trust_domain", "issuer",
             "vault", "secrets", "webhooks"}
    assert not owned & set(config["properties"])
    assert set(config["properties"]["ca"]["properties"]) == {"root_days", "issuing_days",
                                                             "device_identity_days"}
