"""The authorization matrix: every endpoint x every role, no credential, the device itself
and another device. Only the intended cells get past authentication and authorization.

The endpoint list comes from the running app's OpenAPI schema, so a new endpoint without
a row here fails the test. Mutating endpoints get bodies that fail validation: a cell
that passes authorization then answers 422 and changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.attest import device_signer
from agent.sim.swtpm import Manufacturer
from attestor.auth import apikeys
from tests.harness import Device, LiveAttestor, enroll_and_learn, enrollment_body

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
BOTH_DATABASES = True  # every test here runs on SQLite and on PostgreSQL
# The matrix makes hundreds of refused requests from one address in a minute: exactly
# what the failed-authentication limit stops (tests/attestor/test_auth_throttle.py).
# Here every refusal must be answered as itself and have an entry of its own.
ATTESTOR_SETTINGS = {"rate_limits": {"auth_failures_per_source": 100_000,
                                     "auth_failures_audited_individually": 100_000}}

PEOPLE = ("admin", "enroller", "auditor", "gatekeeper")
CREDENTIALS = ("none", *PEOPLE, "station", "auditor-key", "device", "other-device")
PUBLIC = frozenset(CREDENTIALS)
STATIONS = frozenset({"admin", "enroller", "station"})
ADMIN = frozenset({"admin"})
AUDIT = frozenset({"admin", "auditor", "auditor-key"})
FLEET = AUDIT | {"gatekeeper"}
DEVICE = frozenset({"device"})

# (method, path) -> the credentials that may use it. "device" is the device the path
# names; "other-device" is another enrolled device signing a request for that path.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/enrollments"): STATIONS,
    ("POST", "/v1/enrollments/{enrollment_id}/activation"): PUBLIC,  # the secret is the proof
    ("POST", "/v1/devices/{device_id}/challenge"): DEVICE,
    ("POST", "/v1/devices/{device_id}/attestations"): DEVICE,
    ("POST", "/v1/devices/{device_id}/secrets/wrap-reuse"): DEVICE,
    ("GET", "/v1/devices"): FLEET,
    ("GET", "/v1/devices/{device_id}"): FLEET | DEVICE,
    ("POST", "/v1/devices/{device_id}/quarantine"): ADMIN,
    ("POST", "/v1/devices/{device_id}/release"): ADMIN,
    ("POST", "/v1/devices/{device_id}/revoke"): ADMIN,
    ("POST", "/v1/devices/{device_id}/decommission"): ADMIN,
    ("PUT", "/v1/devices/{device_id}/class"): ADMIN,
    ("GET", "/v1/devices/{device_id}/attestations"): FLEET | DEVICE,
    ("GET", "/v1/policies"): AUDIT,
    ("GET", "/v1/policies/{device_class}"): AUDIT,
    ("POST", "/v1/policies/{device_class}"): ADMIN,
    ("POST", "/v1/policies/{device_class}/dry-run"): AUDIT,
    ("POST", "/v1/policies/{device_class}/learn"): ADMIN,
    ("GET", "/v1/trust"): AUDIT,
    ("POST", "/v1/trust"): ADMIN,
    ("GET", "/v1/certificates"): AUDIT,
    ("POST", "/v1/certificates/{serial}/revoke"): ADMIN,
    ("GET", "/v1/crl"): PUBLIC,
    ("POST", "/v1/preregistrations"): STATIONS,
    ("POST", "/v1/preregistrations/csv"): STATIONS,
    ("GET", "/v1/preregistrations"): STATIONS,
    ("GET", "/v1/audit"): AUDIT,
    ("GET", "/v1/audit/export"): AUDIT,
    ("GET", "/v1/audit/verify"): AUDIT,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): FLEET,
    ("GET", "/v1/ca"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("POST", "/v1/gate/decisions"): frozenset({"admin", "gatekeeper"}),
    # zero-touch onboarding: the device proves itself with its IAK/IDevID, no credential
    ("POST", "/v1/onboarding/challenges"): PUBLIC,
    ("POST", "/v1/onboarding"): PUBLIC,
    ("GET", "/v1/ownership"): AUDIT,
    ("GET", "/v1/ownership/roots"): AUDIT,
    ("POST", "/v1/ownership/roots"): ADMIN,
    ("DELETE", "/v1/ownership/roots/{sha256}"): ADMIN,
    ("POST", "/v1/ownership/manifests"): ADMIN,
    ("POST", "/v1/ownership/serials"): ADMIN,
    ("POST", "/v1/ownership/{serial}/revoke"): ADMIN,
    ("POST", "/v1/ownership/{serial}/release"): ADMIN,
}


@pytest.fixture
def fleet(attestor: LiveAttestor, device: Device, other_device: Device, tmp_path: Path,
          manufacturer: Manufacturer) -> Iterator[dict[str, object]]:
    """Two enrolled devices (the path names ``target``) and a third, unenrolled TPM."""
    target = enroll_and_learn(attestor, device)
    other = enroll_and_learn(attestor, other_device)
    newcomer = Device(manufacturer, tmp_path / "newcomer", serial="SN-3")
    with attestor.services.session() as session, session.begin():
        auditor_key = apikeys.create(session, "prometheus", "auditor", attestor.clock())
    try:
        yield {"target": (target, device), "other": (other, other_device),
               "enrollment": enrollment_body(newcomer.tpm), "auditor_key": auditor_key}
    finally:
        newcomer.close()


def _headers(attestor: LiveAttestor, fleet: dict[str, object], credential: str, method: str,
             path: str, body: bytes) -> dict[str, str]:
    if credential == "none":
        return {}
    if credential in PEOPLE:
        return {"Authorization": f"Bearer {attestor.token(credential)}"}
    if credential == "station":
        return {"X-Api-Key": attestor.enroller_key}
    if credential == "auditor-key":
        return {"X-Api-Key": str(fleet["auditor_key"])}
    config, dev = fleet["target" if credential == "device" else "other"]  # type: ignore[misc]
    return device_signer(config, dev.tpm).headers(method, path, body, time.time())


def _request(route: tuple[str, str], fleet: dict[str, object]) -> tuple[str, bytes, str]:
    """The concrete path, body and content type for one route."""
    method, template = route
    config, _ = fleet["target"]  # type: ignore[misc]
    path = (template.replace("{device_id}", config.device_id)
            .replace("{enrollment_id}", "no-such-enrollment")
            .replace("{device_class}", "default").replace("{serial}", "abc123")
            .replace("{sha256}", "ab" * 32))
    if route == ("POST", "/v1/enrollments"):
        return path, json.dumps(fleet["enrollment"]).encode(), "application/json"
    if route == ("POST", "/v1/enrollments/{enrollment_id}/activation"):
        return path, b'{"secret": "AAAA"}', "application/json"
    if route == ("POST", "/v1/preregistrations/csv"):
        return path, b"not,a,valid\nheader", "text/csv"
    if route == ("POST", "/v1/policies/{device_class}/dry-run"):
        return path + f"?device_id={config.device_id}", b"", "application/json"
    if method in ("POST", "PUT"):
        return path, b'{"unexpected": true}', "application/json"
    return path, b"", "application/json"


def test_every_route_has_a_row(attestor: LiveAttestor) -> None:
    spec = httpx.get(f"{attestor.url}/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == set(MATRIX)


def test_authorization_matrix(attestor: LiveAttestor, fleet: dict[str, object]) -> None:
    wrong: list[str] = []
    refused = 0
    for route, allowed in sorted(MATRIX.items()):
        for credential in CREDENTIALS:
            path, body, content_type = _request(route, fleet)
            headers = {"Content-Type": content_type,
                       **_headers(attestor, fleet, credential, route[0], path, body)}
            response = httpx.request(route[0], attestor.url + path, content=body,
                                     headers=headers, timeout=30)
            code = _code(response)
            denied = response.status_code in (401, 403) and code.startswith("auth.")
            cell = f"{route[0]} {route[1]} as {credential}: {response.status_code} {code}"
            if response.status_code >= 500:
                wrong.append(f"{cell} (server error)")
            elif denied == (credential in allowed):
                wrong.append(cell)
            elif denied:
                refused += 1
                expected = 401 if credential == "none" else 403
                if response.status_code != expected:
                    wrong.append(f"{cell} (expected {expected})")
    assert not wrong, "\n".join(wrong)
    with attestor.services.session() as session:
        from attestor.db import queries

        audited = [e for e in queries.audit_events(session)
                   if e.action == "auth" and e.outcome == "refused"]
    assert len(audited) == refused  # every refusal is in the audit log


def _code(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return ""
    return str(response.json().get("code", ""))


def test_a_device_cannot_act_for_another(attestor: LiveAttestor,
                                         fleet: dict[str, object]) -> None:
    """The other device's valid signature, but the header names the target device."""
    from agent.client import DeviceSigner

    target, _ = fleet["target"]  # type: ignore[misc]
    other, other_dev = fleet["other"]  # type: ignore[misc]
    path = f"/v1/devices/{target.device_id}/challenge"
    signer = DeviceSigner(target.device_id, device_signer(other, other_dev.tpm).sign)
    response = httpx.post(attestor.url + path, content=b"",
                          headers=signer.headers("POST", path, b"", time.time()))
    assert response.status_code == 401 and response.json()["code"] == "auth.invalid"


def test_two_credentials_in_one_request_are_refused(attestor: LiveAttestor) -> None:
    response = httpx.get(f"{attestor.url}/v1/audit", headers={
        "Authorization": f"Bearer {attestor.token('auditor')}",
        "X-Api-Key": attestor.enroller_key})
    assert response.status_code == 401 and response.json()["code"] == "auth.invalid"
