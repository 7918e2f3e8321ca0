"""schemathesis against the app's own OpenAPI schema: generated requests to every
operation, as an admin and anonymously; no 5xx, and every response matches the schema."""

from __future__ import annotations

import datetime as dt
import json
import re
import traceback

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from attestor.app import create_app
from attestor.auth.tokens import local_issuer, mint
from attestor.services.context import Services

EXAMPLES = int(__import__("os").environ.get("SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def api(services: Services) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(services,
                                                                       background=False))


@pytest.fixture(scope="module")
def admin(services: Services) -> dict[str, str]:
    token = mint(services.signer, local_issuer(services.settings.trust_domain), role="admin",
                 subject="schemathesis", ttl=dt.timedelta(hours=1),
                 now=dt.datetime.now(dt.UTC))
    return {"Authorization": f"Bearer {token}"}


def _run(api: schemathesis.schemas.BaseSchema, headers: dict[str, str], examples: int
         ) -> list[str]:
    """Every operation, ``examples`` generated cases each (derandomized: repeatable)."""
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            subs = getattr(exc, "exceptions", [exc])
            failures.append(f"{operation.label}:\n" + "\n".join(
                "".join(traceback.format_exception_only(sub))[:1500] for sub in subs))
    return failures


def test_as_admin(api: schemathesis.schemas.BaseSchema, admin: dict[str, str]) -> None:
    failures = _run(api, admin, EXAMPLES)
    assert not failures, "\n\n".join(failures)


def test_anonymously(api: schemathesis.schemas.BaseSchema) -> None:
    failures = _run(api, {}, 5)
    assert not failures, "\n\n".join(failures)


def test_device_routes_describe_their_bodies(services: Services) -> None:
    """The device protocol is msgspec, not pydantic: its routes read the raw body, so the
    OpenAPI document gets the structs' JSON Schema by reference (attestor/api/protocol.py),
    and every reference resolves."""
    spec = create_app(services, background=False).openapi()
    schemas = spec["components"]["schemas"]
    attest = spec["paths"]["/v1/devices/{device_id}/attestations"]["post"]
    body = attest["requestBody"]["content"]["application/json"]["schema"]
    answer = attest["responses"]["201"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AttestationRequest"}
    assert answer == {"$ref": "#/components/schemas/AttestationResult"}
    assert "nonce" in schemas["AttestationRequest"]["required"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= set(schemas)
