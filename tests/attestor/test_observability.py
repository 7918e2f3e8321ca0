"""Request ids, structured JSON logs, Prometheus metrics and readiness."""

from __future__ import annotations

import json
from importlib import metadata

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.attest import attest_once
from agent.client import AttestorError
from tests.harness import Device, LiveAttestor, enroll_and_learn, now
from tests.leaks import LOGS

BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL


def test_request_ids_are_echoed_logged_and_audited(attestor: LiveAttestor,
                                                   device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    response = httpx.post(f"{attestor.url}/v1/devices/{config.device_id}/quarantine",
                          json={"reason": "drill"},
                          headers={"X-Request-Id": "ops-ticket-42", **attestor.headers("admin")})
    assert response.headers["x-request-id"] == "ops-ticket-42"
    entries = httpx.get(f"{attestor.url}/v1/audit", params={"action": "device.quarantine"},
                        headers=attestor.headers("auditor")).json()["items"]
    assert [e["request_id"] for e in entries] == ["ops-ticket-42"]

    made_up = httpx.get(f"{attestor.url}/healthz",
                        headers={"X-Request-Id": "bad id <script>" + "x" * 80})
    assert made_up.status_code == 200
    assert len(made_up.headers["x-request-id"]) == 32  # replaced by one of ours
    # bytes HTTP forbids in a header never reach the app: the HTTP parser refuses them
    refused = httpx.get(f"{attestor.url}/healthz", headers={"X-Request-Id": "bad id\x7f!"})
    assert refused.status_code == 400

    lines = [json.loads(line) for line in LOGS.lines[attestor.watch.log_start:]]
    access = [line for line in lines if line.get("logger") == "attestor.access"
              and line.get("request_id") == "ops-ticket-42"]
    assert len(access) == 1
    assert access[0]["status"] == 200 and access[0]["method"] == "POST"
    assert {"timestamp", "level", "duration_ms", "path"} <= set(access[0])


def test_metrics_count_verdicts_reasons_issuance_and_renewals(attestor: LiveAttestor,
                                                             device: Device) -> None:
    config = enroll_and_learn(attestor, device)  # one refusal: policy.no_reference
    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
        attest_once(config, device.tpm, client, now())
        device.reboot(tamper="bootloader")
        with pytest.raises(AttestorError):
            attest_once(config, device.tpm, client, now())
    text = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("gatekeeper")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("edgeproof_attestations_total", (("reason", "none"),
                                                     ("verdict", "pass")))] == 2
    assert samples[("edgeproof_attestations_total", (("reason", "policy.no_reference"),
                                                     ("verdict", "fail")))] == 1
    assert samples[("edgeproof_attestations_total", (("reason", "policy.pcr_mismatch"),
                                                     ("verdict", "fail")))] == 1
    assert samples[("edgeproof_renewals_total", ())] == 1
    assert samples[("edgeproof_issuance_duration_seconds_count", (("kind", "workload"),))] == 2
    assert samples[("edgeproof_issuance_duration_seconds_count", (("kind", "identity"),))] == 1
    anonymous = httpx.get(f"{attestor.url}/metrics")
    assert anonymous.status_code == 401


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_requests_are_counted_and_timed_by_route_template_never_by_raw_path(
        attestor: LiveAttestor, device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    device_id = str(config.device_id)
    for _ in range(2):
        httpx.get(f"{attestor.url}/v1/devices/{device_id}", headers=attestor.headers("auditor"))
    httpx.get(f"{attestor.url}/v1/devices/no-such-device", headers=attestor.headers("auditor"))
    httpx.get(f"{attestor.url}/no/such/route/{device_id}")
    httpx.request("PROPFIND", f"{attestor.url}/healthz")
    text = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("auditor")).text
    assert device_id not in text and "no-such-device" not in text
    samples = _samples(text)
    route = "/v1/devices/{device_id}"
    assert samples[("edgeproof_http_requests_total",
                    (("method", "GET"), ("route", route), ("status", "200")))] == 2
    assert samples[("edgeproof_http_requests_total",
                    (("method", "GET"), ("route", route), ("status", "404")))] == 1
    assert samples[("edgeproof_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", route), ("status", "200")))] == 2
    assert samples[("edgeproof_http_requests_total",
                    (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("edgeproof_http_requests_total",
                    (("method", "other"), ("route", "/healthz"), ("status", "405")))] == 1
    # the device's own challenge went through the same template, signed requests too
    assert samples[("edgeproof_http_requests_total", (
        ("method", "POST"), ("route", "/v1/devices/{device_id}/challenge"), ("status", "200")))]
    build = [labels for (name, labels) in samples if name == "edgeproof_build_info"]
    assert len(build) == 1 and dict(build[0])["version"] == metadata.version("edgeproof")
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_readiness_names_the_failing_backend(attestor: LiveAttestor) -> None:
    ready = httpx.get(f"{attestor.url}/readyz").json()
    assert ready == {"ready": True, "database": "ok", "issuer": "ok", "secrets": "ok",
                     "signing_key": "ok"}
    import sqlalchemy as sa

    from attestor.db.models import SigningKeyRow

    with attestor.services.session() as session, session.begin():  # no active key left
        session.execute(sa.update(SigningKeyRow).values(retired_at=attestor.clock()))
    attestor.services.keys.refresh(force=True)
    down = httpx.get(f"{attestor.url}/readyz")
    assert down.status_code == 503
    assert down.json()["signing_key"] == "unavailable: signing.key"
    with attestor.services.session() as session, session.begin():
        session.execute(sa.update(SigningKeyRow).values(retired_at=None))
    attestor.services.keys.refresh(force=True)
    assert httpx.get(f"{attestor.url}/readyz").status_code == 200


def test_audit_checkpoints_are_witnessed_in_the_log(attestor: LiveAttestor,
                                                    device: Device) -> None:
    from attestor.services import background

    enroll_and_learn(attestor, device)
    background.checkpoint(attestor.services)
    background.checkpoint(attestor.services)  # unchanged head: nothing new to witness
    report = httpx.get(f"{attestor.url}/v1/audit/verify",
                       headers=attestor.headers("auditor")).json()
    lines = [json.loads(line) for line in LOGS.lines[attestor.watch.log_start:]]
    witnessed = [line for line in lines if line.get("event") == "audit checkpoint"]
    assert len(witnessed) == 1
    assert witnessed[0]["seq"] == report["anchored_seq"]
    assert len(witnessed[0]["hash"]) == 64 and witnessed[0]["kid"]
