"""`GET /v1/audit` and `/v1/audit/export` with injection-like filters (review of issue
16): control characters are refused before the database sees them (a NUL is an error
on PostgreSQL), wildcards and SQL metacharacters match themselves, and a time that is
not one is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.adversarial]
BOTH_DATABASES = True
FILTERS = ("device_id", "actor", "action", "reason")


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/export"])
def test_control_characters_are_refused(attestor: LiveAttestor, path: str) -> None:
    headers = attestor.headers("auditor")
    for name in FILTERS:
        for value in ("\x00", "token:\x00", "a\x1b[2J", "x\r\ny"):
            answer = httpx.get(attestor.url + path, params={name: value}, headers=headers)
            assert answer.status_code == 422, (name, value, answer.status_code)
            assert answer.json()["code"] == "request.invalid"
    for value in ("refused' OR '1'='1", "%", "pass"):
        answer = httpx.get(attestor.url + path, params={"outcome": value}, headers=headers)
        assert answer.status_code == 422, value
    answer = httpx.get(attestor.url + path, params={"since": "yesterday'--"}, headers=headers)
    assert answer.status_code == 422


def test_metacharacters_match_themselves(attestor: LiveAttestor) -> None:
    headers = attestor.headers("auditor")
    # one entry to find: a refused request, by an anonymous caller claiming a device
    refused = httpx.post(attestor.url + "/v1/devices/dev-1/challenge", json={},
                         headers={"X-Edgeproof-Device": "dev-1"})
    assert refused.status_code == 401
    found = httpx.get(attestor.url + "/v1/audit", params={"device_id": "dev-1"},
                      headers=headers).json()["items"]
    assert [e["action"] for e in found] == ["auth"]
    for name, value in (("device_id", "dev-%"), ("device_id", "dev-_"),
                        ("device_id", "dev-1' OR '1'='1"), ("actor", "anon%"),
                        ("actor", "ANONYMOUS"), ("actor", "_nonymous"), ("action", "a%"),
                        ("reason", "auth.%"), ("reason", '"]')):
        items = httpx.get(attestor.url + "/v1/audit", params={name: value},
                          headers=headers).json()["items"]
        assert items == [], (name, value)
    assert httpx.get(attestor.url + "/v1/audit", params={"actor": "anonymous"},
                     headers=headers).json()["items"] != []


def test_a_cursor_past_a_bigint_is_refused_not_a_server_error(attestor: LiveAttestor) -> None:
    from attestor.services.devices import encode_cursor

    headers = attestor.headers("auditor")
    for path in ("/v1/audit", "/v1/devices/dev-1/attestations", "/v1/preregistrations"):
        role = "enroller" if "preregistrations" in path else "auditor"
        for value in (2**63, 9_999_999_999_999_999_999):
            answer = httpx.get(attestor.url + path, params={"cursor": encode_cursor(value)},
                               headers=attestor.headers(role))
            assert answer.status_code == 400, (path, value, answer.status_code)
            assert answer.json()["code"] == "input.malformed"
    last = httpx.get(attestor.url + "/v1/audit", params={"cursor": encode_cursor(2**63 - 1)},
                     headers=headers)
    assert last.status_code == 200 and last.json()["items"] == []
