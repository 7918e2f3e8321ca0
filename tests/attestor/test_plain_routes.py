"""The plain Starlette endpoints for challenge and attestation answer every refusal
exactly as the FastAPI routes they stand in front of: the same status, problem and
headers, for requests without or with the wrong credential, a malformed device id or
body, a wrong method; the OpenAPI document still describes both operations."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from fastapi import FastAPI

from attestor.api.routes import attestations
from attestor.app import create_app
from attestor.auth.tokens import local_issuer, mint
from attestor.services.context import Services


def _without_plain_routes(app: FastAPI) -> FastAPI:
    app.router.routes[:] = [r for r in app.router.routes
                            if r not in attestations.PLAIN_ROUTES]
    return app


async def _answer(client: httpx.AsyncClient, method: str, path: str,
                  **kw: Any) -> tuple[Any, ...]:
    response = await client.request(method, path, **kw)
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
        body.pop("instance", None)
    return response.status_code, body, response.headers.get("content-type")


async def _both(plain: FastAPI, general: FastAPI,
                cases: list[tuple[str, str, dict[str, Any]]]) -> tuple[set[int], Any]:
    """Every case against both apps in turn (in process: httpx's ASGI transport)."""
    seen: set[int] = set()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=plain),
                                 base_url="http://testserver") as a, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=general),
                              base_url="http://testserver") as b:
        for method, path, kw in cases:
            ours = await _answer(a, method, path, **kw)
            theirs = await _answer(b, method, path, **kw)
            assert ours == theirs, (method, path, kw)
            seen.add(ours[0])
        schema = (await a.get("/openapi.json")).json()
    return seen, schema


def test_refusals_are_the_fastapi_routes_own(services: Services) -> None:
    plain = create_app(services, background=False)
    assert plain.router.routes[:2] == list(attestations.PLAIN_ROUTES)
    general = _without_plain_routes(create_app(services, background=False))
    token = mint(services.signer, local_issuer(services.settings.trust_domain),
                 role="admin", subject="plain-routes", ttl=dt.timedelta(hours=1),
                 now=dt.datetime.now(dt.UTC))
    cases: list[tuple[str, str, dict[str, Any]]] = []
    # (the limits on refused requests answer 429 after a while: the same on both apps)
    for tail in ("challenge", "attestations"):
        for device_id in ("a" * 65, "x:y", "dev-1", "bad%20id", "a" * 64):
            path = f"/v1/devices/{device_id}/{tail}"
            cases += [
                ("POST", path, {}),  # no credential
                ("POST", path, {"headers": {"Authorization": f"Bearer {token}"}}),
                ("POST", path, {"headers": {"X-Edgeproof-Device": "dev-1"}}),  # half a proof
                ("POST", path, {"content": b"{}"}),
                ("GET", path, {}),
            ]
    seen, schema = asyncio.run(_both(plain, general, cases))
    assert {401, 403, 405, 429} <= seen
    for tail in ("challenge", "attestations"):
        assert "post" in schema["paths"][f"/v1/devices/{{device_id}}/{tail}"]
