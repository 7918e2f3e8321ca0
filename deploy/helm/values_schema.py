"""Writes deploy/helm/edgeproof/values.schema.json: ``python -m deploy.helm.values_schema``.

The schema is code so that every object is closed (``additionalProperties: false``) without
repeating it by hand, and so that ``attestor.config`` offers exactly the attestor settings
listed in :data:`CONFIG_FIELDS` with the types and bounds of ``attestor.settings`` itself
(tests/deploy/test_chart_schema.py fails when the file and this module disagree).
Kubernetes' own types that the chart passes through (affinity terms) are closed at their
top level; below that the rendered manifests are checked against the Kubernetes schemas by
the chart tests and by the API server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMA_FILE = Path(__file__).parent / "edgeproof" / "values.schema.json"

Schema = dict[str, Any]

# attestor.toml settings an operator may set through attestor.config; the chart owns the
# rest (listen address, database, backends, every file path) and secrets never go there.
CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "": ("nonce_ttl_seconds", "activation_ttl_seconds", "max_body_bytes", "worker_threads",
         "ek_require_san", "webhook_poll_seconds", "audit_checkpoint_seconds",
         "audit_checkpoint_entries"),
    "ca": ("root_days", "issuing_days", "device_identity_days"),
    "auth": ("local_tokens", "oidc_issuer", "oidc_audience", "oidc_jwks_url",
             "oidc_algorithms", "oidc_role_claim", "request_window_seconds"),
    "rate_limits": ("enrollment_per_minute", "challenge_per_minute", "attestation_per_minute",
                    "max_inflight", "overload_retry_after_seconds", "client_per_minute",
                    "auth_failures_per_source", "auth_failure_window_seconds",
                    "auth_failures_audited_individually"),
    "issuance": ("cert_ttl_seconds", "max_cert_ttl_seconds", "pending_grace_seconds",
                 "reconcile_seconds"),
    "audit_checkpoint_sink": ("syslog",),
    "ear": ("ttl_seconds", "audience"),
}
KEEP = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
        "enum", "items", "description")


def closed(properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            **extra}


def string(description: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    out: Schema = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


BOOL: Schema = {"type": "boolean"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
NAME = string(pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", maxLength=253)
KEY = string(pattern=r"^[-._a-zA-Z0-9]+$")
PORT = integer(1, 65535)
NULLABLE_INT: Schema = {"type": ["integer", "null"], "minimum": 0}


def field_schema(model: type[BaseModel], name: str) -> Schema:
    """One settings field as JSON schema: the attestor's own type and bounds (an optional
    value is simply optional here: TOML has no null)."""
    raw = dict(model.model_json_schema()["properties"][name])
    for option in raw.pop("anyOf", []):
        if option.get("type") != "null":
            raw.update(option)
    return {k: raw[k] for k in KEEP if k in raw}


def config_schema() -> Schema:
    from attestor.settings import Settings

    sections: dict[str, Schema] = {}
    for section, names in CONFIG_FIELDS.items():
        model: type[BaseModel] = Settings
        if section:
            annotation = Settings.model_fields[section].annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise TypeError(f"Settings.{section} is not a settings section")
            model = annotation
        props = {name: field_schema(model, name) for name in names}
        if section:
            sections[section] = closed(props)
        else:
            sections.update(props)
    return closed(sections, description="more attestor.toml settings (docs/operations.md)")


def image() -> Schema:
    return closed({
        "repository": string(minLength=1),
        "tag": string(),
        "digest": string(pattern=r"^(sha256:[a-f0-9]{64})?$"),
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    })


def quantity_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": ["string", "number"]}}


RESOURCES = closed({"requests": quantity_map(), "limits": quantity_map()})
LABEL_SELECTOR = closed({
    "matchLabels": STRING_MAP,
    "matchExpressions": {"type": "array", "items": closed({
        "key": string(), "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": string()}}, required=["key", "operator"])},
})
TOLERATIONS: Schema = {"type": "array", "items": closed({
    "key": string(), "operator": {"enum": ["Exists", "Equal"]}, "value": string(),
    "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute", ""]},
    "tolerationSeconds": integer()})}
AFFINITY = closed({k: {"type": "object", "$comment": "Kubernetes' own type, passed through"}
                   for k in ("nodeAffinity", "podAffinity", "podAntiAffinity")})
SPREAD: Schema = {"type": ["array", "null"], "items": closed({
    "maxSkew": integer(1), "topologyKey": string(),
    "whenUnsatisfiable": {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
    "labelSelector": LABEL_SELECTOR, "minDomains": integer(1),
    "matchLabelKeys": {"type": "array", "items": string()},
    "nodeAffinityPolicy": {"enum": ["Honor", "Ignore"]},
    "nodeTaintsPolicy": {"enum": ["Honor", "Ignore"]},
}, required=["maxSkew", "topologyKey", "whenUnsatisfiable"])}
PEER = closed({"podSelector": LABEL_SELECTOR, "namespaceSelector": LABEL_SELECTOR,
               "ipBlock": closed({"cidr": string(), "except": {"type": "array",
                                                               "items": string()}},
                                 required=["cidr"])})
PEERS: Schema = {"type": "array", "items": PEER}
NP_PORT = closed({"port": {"type": ["integer", "string"]}, "endPort": integer(),
                  "protocol": {"enum": ["TCP", "UDP", "SCTP"]}})
EGRESS_RULE = closed({"to": PEERS, "ports": {"type": "array", "items": NP_PORT}})


def workload() -> dict[str, Schema]:
    """What the attestor and the agent pods both take: user, resources, scheduling."""
    return {
        "runAsUser": integer(1),
        "runAsGroup": integer(1),
        "resources": RESOURCES,
        "nodeSelector": STRING_MAP,
        "tolerations": TOLERATIONS,
        "affinity": AFFINITY,
        "priorityClassName": string(),
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
    }


def attestor() -> Schema:
    return closed({
        "enabled": BOOL,
        "image": image(),
        "replicas": {"type": ["integer", "null"], "minimum": 1},
        "dev": BOOL,
        "trustDomain": string(pattern=r"^[a-z0-9.\-_]+$"),
        "logFormat": {"enum": ["json", "console"]},
        "config": config_schema(),
        "terminationGracePeriodSeconds": integer(1, 600),
        "topologySpreadConstraints": SPREAD,
        **workload(),
    })


def vault() -> Schema:
    return closed({
        "address": string(pattern=r"^(https?://.+)?$"),
        "namespace": string(),
        "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
        "caBundle": closed({"configMap": NAME, "secret": NAME, "key": KEY}),
        "auth": {"enum": ["kubernetes", "approle", "token"]},
        "kubernetes": closed({"role": string(), "mount": string(minLength=1),
                              "audience": string(minLength=1),
                              "tokenExpirationSeconds": integer(600, 86400)}),
        "approle": closed({"mount": string(minLength=1), "roleId": string(),
                           "secretIdSecret": NAME, "secretIdKey": KEY}),
        "token": closed({"existingSecret": NAME, "key": KEY}),
        "pki": closed({"mount": string(minLength=1), "role": string(minLength=1),
                       "dnsSuffix": string(pattern=r"^[a-z0-9.\-]*$")}),
        "kv": closed({"mount": string(minLength=1), "path": string(minLength=1),
                      "field": string(minLength=1), "wrapTtlSeconds": integer(0, 3600),
                      "deviceAddress": string(pattern=r"^(https?://.+)?$")}),
    })


def agent() -> Schema:
    return closed({
        "enabled": BOOL,
        "image": image(),
        "attestorUrls": {"type": "array", "items": string(pattern=r"^https?://[^\s,]+$")},
        "caBundle": closed({"configMap": NAME, "secret": NAME, "key": KEY}),
        "tpm": closed({
            "access": {"enum": ["devicePlugin", "privileged"]},
            "resourceName": string(pattern=r"^[a-z0-9.\-]+/[a-zA-Z0-9.\-_]+$"),
            "groupId": NULLABLE_INT,
        }),
        "stateDir": string(pattern=r"^/.+"),
        "eventLogs": closed({"enabled": BOOL}),
        "metricsTextfile": closed({"enabled": BOOL, "hostPath": string(pattern=r"^/.+"),
                                   "fileName": string(pattern=r"^[^/]+\.prom$")}),
        "livenessProbe": closed({"initialDelaySeconds": integer(0),
                                 "periodSeconds": integer(1), "timeoutSeconds": integer(1),
                                 "failureThreshold": integer(1)}),
        "updateStrategy": closed({"maxUnavailable": {
            "type": ["integer", "string"], "pattern": r"^[0-9]+%$", "minimum": 1}}),
        **workload(),
    })


def values_schema() -> Schema:
    ingress_path = closed({"path": string(pattern=r"^/"),
                           "pathType": {"enum": ["Prefix", "Exact",
                                                 "ImplementationSpecific"]}},
                          required=["path", "pathType"])
    return closed({
        "strict": {**BOOL, "description": "refuse development settings (README: strict)"},
        "nameOverride": string(),
        "fullnameOverride": string(),
        "commonLabels": STRING_MAP,
        "imagePullSecrets": {"type": "array", "items": closed({"name": NAME})},
        "attestor": attestor(),
        "ca": closed({"existingSecret": NAME, "passphrase": closed({
            "existingSecret": NAME, "key": KEY})}),
        "trustStore": closed({"configMap": NAME}),
        "database": closed({
            "type": {"enum": ["postgresql", "sqlite"]},
            "existingSecret": NAME,
            "key": KEY,
            "sqlite": closed({"persistence": closed({
                "existingClaim": NAME,
                "storageClass": {"type": ["string", "null"]},
                "size": string(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"),
                "accessModes": {"type": "array", "minItems": 1, "items": {"enum": [
                    "ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]}},
            })}),
        }),
        "issuer": {"enum": ["local", "vault"]},
        "secretStore": closed({"backend": {"enum": ["embedded", "vault"]},
                               "existingSecret": NAME, "key": KEY}),
        "vault": vault(),
        "tls": closed({"existingSecret": NAME,
                       "clientCa": closed({"configMap": NAME, "key": KEY}),
                       "insecureHttp": BOOL}),
        "service": closed({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                           "port": {"type": ["integer", "null"], "minimum": 1,
                                    "maximum": 65535},
                           "annotations": STRING_MAP}),
        "ingress": closed({
            "enabled": BOOL, "className": string(), "annotations": STRING_MAP,
            "hosts": {"type": "array", "items": closed({
                "host": string(), "paths": {"type": "array", "minItems": 1,
                                            "items": ingress_path}}, required=["paths"])},
            "tls": {"type": "array", "items": closed({
                "secretName": NAME, "hosts": {"type": "array", "items": string()}})},
        }),
        "metrics": closed({
            "enabled": BOOL, "port": PORT,
            "serviceMonitor": closed({"enabled": BOOL,
                                      "interval": string(pattern=r"^[0-9]+(ms|s|m|h)$"),
                                      "scrapeTimeout": string(pattern=r"^[0-9]+(ms|s|m|h)$"),
                                      "labels": STRING_MAP}),
            "prometheusRule": closed({"enabled": BOOL, "labels": STRING_MAP}),
            "grafanaDashboard": closed({"enabled": BOOL, "labels": STRING_MAP}),
        }),
        "serviceAccount": closed({"create": BOOL, "name": NAME, "annotations": STRING_MAP}),
        "podDisruptionBudget": closed({"enabled": BOOL, "maxUnavailable": integer(1)}),
        "networkPolicy": closed({
            "enabled": BOOL, "apiFrom": PEERS, "metricsFrom": PEERS,
            "egress": closed({
                "enabled": BOOL, "dns": BOOL,
                "database": closed({"port": PORT, "to": PEERS}),
                "vault": closed({"port": PORT, "to": PEERS}),
                "extra": {"type": "array", "items": EGRESS_RULE},
            }),
        }),
        "migrations": closed({"backoffLimit": integer(0, 10),
                              "activeDeadlineSeconds": integer(30),
                              "serviceAccountName": NAME, "resources": RESOURCES}),
        "agent": agent(),
    }, **{"$schema": "http://json-schema.org/draft-07/schema#",
          "title": "edgeproof chart values"})


def render() -> str:
    return json.dumps(values_schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render())
    sys.stdout.write(f"wrote {SCHEMA_FILE}\n")
