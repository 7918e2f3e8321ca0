"""The OpenAPI document, with every error response described as what it is: an RFC 9457
problem (``application/problem+json``), including FastAPI's validation errors (422) and
a ``default`` entry for the statuses an operation does not list (401, 413, 429, 5xx);
the device protocol's schemas come from its msgspec structs (attestor/api/protocol.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from attestor.api import protocol

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_CONTENT = {"application/problem+json": {"schema": PROBLEM_REF}}


SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "an operator token (`attestor token create`) or an OIDC access "
                                   "token carrying an edgeproof role"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
               "description": "a factory station's API key (`attestor apikey create`)"},
    "deviceSignature": {"type": "apiKey", "in": "header", "name": "X-Edgeproof-Device",
                        "description": "a device request signed by its TPM-resident DevID "
                        "key: X-Edgeproof-Device with the signature headers of "
                        "docs/protocol.md (made by the agent; cannot be tried here)"}}
AUTHENTICATED: list[dict[str, list[str]]] = [{"bearerToken": []}, {"apiKey": []},
                                             {"deviceSignature": []}]


def _rewrite(spec: dict[str, Any]) -> dict[str, Any]:
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "401" in responses:  # every operation that reads a credential says so
                operation["security"] = AUTHENTICATED
            for status, response in responses.items():
                if status != "default" and int(status) >= 400:
                    response["content"] = PROBLEM_CONTENT
                if status == "422":
                    response["description"] = "the request does not match the schema " \
                                               "(`request.invalid`, with `errors`)"
            responses.setdefault("default", {
                "description": "any other refusal or fault, as a problem with its reason "
                               "code (401, 413, 429 with Retry-After, 5xx)",
                "content": PROBLEM_CONTENT})
    spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(protocol.components())  # the device protocol's structs (msgspec)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return spec


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
