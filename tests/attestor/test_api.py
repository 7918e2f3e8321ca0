"""API behaviour over real HTTP: typed problems, bounded bodies, no mass assignment."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.harness import LiveAttestor

pytestmark = pytest.mark.e2e


def test_health_readiness_and_ca(attestor: LiveAttestor) -> None:
    assert httpx.get(f"{attestor.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{attestor.url}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    assert httpx.get(f"{attestor.url}/v1/ca").text.startswith("-----BEGIN CERTIFICATE-----")


def test_unknown_fields_are_refused(attestor: LiveAttestor) -> None:
    response = httpx.post(f"{attestor.url}/v1/enrollments/x/activation",
                          json={"secret": "AAAA", "device_state": "active"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "request.invalid"


def test_invalid_base64_is_refused(attestor: LiveAttestor) -> None:
    response = httpx.post(f"{attestor.url}/v1/enrollments/x/activation",
                          json={"secret": "not base64!"})
    assert response.status_code == 422 and response.json()["code"] == "request.invalid"


def test_a_schema_violation_names_where_it_is(attestor: LiveAttestor) -> None:
    """The device routes decode with msgspec: its violations are the same 422 problem,
    with each error's location in the body (as FastAPI gave it) and its message."""
    certify = {"attest": "AAAA", "signature": 5}
    response = httpx.post(f"{attestor.url}/v1/enrollments", json={
        "ek_public": "AAAA", "ak_public": "AAAA", "devid_public": "AAAA",
        "devid_certify": certify})
    assert response.status_code == 422 and response.json()["code"] == "request.invalid"
    assert response.json()["errors"] == [{"loc": ["body", "devid_certify", "signature"],
                                          "msg": "Expected `bytes`, got `int`"}]
    not_json = httpx.post(f"{attestor.url}/v1/enrollments", content=b"<xml/>",
                          headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["loc"] == ["body"]


def test_oversized_body_is_refused(attestor: LiveAttestor) -> None:
    big = base64.b64encode(b"\x00" * (attestor.settings.max_body_bytes + 1)).decode()
    response = httpx.post(f"{attestor.url}/v1/enrollments", content=f'{{"x":"{big}"}}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "request.too_large"


def test_oversized_chunked_body_is_refused(attestor: LiveAttestor) -> None:
    chunk = b"A" * 65536
    count = attestor.settings.max_body_bytes // len(chunk) + 2

    def body():  # type: ignore[no-untyped-def]
        yield b'{"x":"'
        for _ in range(count):
            yield chunk
        yield b'"}'

    response = httpx.post(f"{attestor.url}/v1/enrollments", content=body(),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_garbage_tpm_structures_get_typed_refusals(attestor: LiveAttestor) -> None:
    junk = base64.b64encode(b"\x00\x20" + b"\x01" * 32).decode()
    body = {"ek_public": junk, "ak_public": junk, "devid_public": junk,
            "devid_certify": {"attest": junk, "signature": junk}}
    response = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                           headers=attestor.enroller_headers)
    assert response.status_code == 403
    assert response.json()["code"] == "ek.public_invalid"


def test_unknown_route_is_a_problem(attestor: LiveAttestor) -> None:
    response = httpx.get(f"{attestor.url}/v1/nothing")
    assert response.status_code == 404 and response.json()["code"] == "route.not_found"


def test_openapi_documents_problems(attestor: LiveAttestor) -> None:
    spec = httpx.get(f"{attestor.url}/openapi.json").json()
    attest = spec["paths"]["/v1/devices/{device_id}/attestations"]["post"]
    assert {"400", "403", "404"} <= set(attest["responses"])
    assert "Problem" in spec["components"]["schemas"]
