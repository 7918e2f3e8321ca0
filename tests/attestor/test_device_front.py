"""The device front (attestor/api/front.py) answers a device's two per-cycle requests
exactly as the whole stack does: one sequence of requests, to an app with the front and
to one without (each on services of its own), gives the same status, body and headers
(the request id's and the shed Retry-After's made-up values aside), the same metrics,
the same log lines and the same audit entries, for every refusal and error: no or a
wrong credential, rate limits, load shedding, body limits, a malformed body, the
service's refusals and failures, an unexpected error; and trusted-proxy addresses."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.requests import Request

from attestor.api.deps import first_values, signed_path
from attestor.api.limits import Overload
from attestor.api.ratelimit import RateLimiter
from attestor.app import create_app
from attestor.auth.tokens import local_issuer, mint
from attestor.db.models import AuditEvent
from attestor.observability import RequestContext
from attestor.services import attestation
from attestor.services.context import Services, build_services
from attestor.settings import load_settings
from attestor.setup import initialise
from identity.errors import (
    AuditUnavailable,
    Conflict,
    DeviceUnknown,
    MalformedInput,
    RateLimited,
    VerificationFailed,
)
from identity.messages import Challenge
from tests.leaks import LOGS

NOW = dt.datetime.now(dt.UTC)
DEVICE = "dev-1"
SIGNED = {"X-Edgeproof-Device": DEVICE, "X-Edgeproof-Timestamp": "1700000000",
          "X-Edgeproof-Nonce": "ab" * 16, "X-Edgeproof-Signature": "30" * 8}
CHALLENGE = Challenge(nonce=b"n" * 32, expires_at=NOW, pcr_selection={"sha256": [0, 7]})
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def _services(data_dir: Path) -> Services:
    """Services on a clock that stands still: both see the same refusal windows."""
    settings = load_settings(data_dir, dev=True)
    initialise(settings, NOW)
    return build_services(settings, clock=lambda: NOW)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Services]]:
    ours, theirs = (_services(tmp_path_factory.mktemp(name)) for name in ("front", "stack"))
    try:
        yield ours, theirs
    finally:
        ours.engine.dispose()
        theirs.engine.dispose()


def _layer(app: FastAPI, kind: type) -> Any:
    node: Any = app.middleware_stack
    while not isinstance(node, kind):
        node = node.app
    return node


def _metrics(svc: Services) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every count (counters, histograms' counts); not timings, gauges, process figures."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in svc.metrics.registry.collect() for s in family.samples
            if s.name.startswith("edgeproof_") and s.name.endswith(("_total", "_count"))}


def _audit(svc: Services) -> list[dict[str, Any]]:
    with svc.session() as session:
        rows = session.execute(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars()
        return [{"actor": r.actor, "action": r.action, "outcome": r.outcome,
                 "device_id": r.device_id, "subject": r.subject, "reasons": r.reasons,
                 "request_id": r.request_id if r.request_id and not HEX_ID.match(r.request_id)
                 else "<made up>" if r.request_id else None,
                 "client_address": r.client_address, "user_agent": r.user_agent,
                 "details": r.details} for r in rows]


def _normal_id(value: str | None) -> str | None:
    return "<made up>" if value is not None and HEX_ID.match(value) else value


async def _exchange(client: httpx.AsyncClient, method: str, path: str,
                    **kw: Any) -> dict[str, Any]:
    """One request's answer and log lines, made-up values replaced."""
    start = len(LOGS.lines)
    response = await client.request(method, path, **kw)
    body = response.content
    shed = response.status_code == 429 and response.json()["code"] == "request.overloaded"
    if shed:  # the jittered wait, in the header and the detail
        wait = response.headers["retry-after"]
        assert f"retry in {wait} s".encode() in body
        body = body.replace(f"retry in {wait} s".encode(), b"retry in <jittered> s")
    headers = []
    for name, value in response.headers.multi_items():
        if name == "x-request-id":
            value = _normal_id(value) or ""
        if name == "retry-after" and shed:
            value = "<jittered>"
        if name == "content-length" and shed:  # the wait's digits vary ("9", "10")
            assert int(value) == len(response.content)
            value = "<the body's>"
        headers.append((name, value))
    lines = []
    for line in LOGS.lines[start:]:
        entry = json.loads(line)
        entry.pop("timestamp", None)
        entry.pop("duration_ms", None)
        entry["request_id"] = _normal_id(entry.get("request_id"))
        if "exception" in entry:  # the traceback's frames are the layers': its error
            entry["exception"] = entry["exception"].rstrip().splitlines()[-1]
        lines.append(entry)
    return {"status": response.status_code, "body": body, "headers": headers,
            "logs": lines}


def _cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for tail in ("challenge", "attestations"):
        path = f"/v1/devices/{DEVICE}/{tail}"
        cases += [
            ("POST", path, {}),  # no credential: 401 with WWW-Authenticate, audited
            ("POST", path, {"headers": {"Authorization": "Bearer TOKEN"}}),  # 403
            ("POST", path, {"headers": {"X-Edgeproof-Device": DEVICE}}),  # half a proof
            ("POST", path, {"headers": {**SIGNED, "X-Edgeproof-Nonce": "short"}}),
            ("POST", path, {"headers": {**SIGNED, "X-Edgeproof-Device": "dev-2"}}),  # 403
            ("POST", path, {"headers": {**SIGNED, "X-Api-Key": "ep_x_y"}}),  # two: 401
            ("POST", path, {"headers": {**SIGNED, "X-Request-Id": "ticket-7"}}),
            ("POST", path, {"headers": {**SIGNED, "X-Request-Id": "bad id!"}}),
            ("POST", path + "?x=1", {"headers": SIGNED}),
            ("POST", path, {"headers": {**SIGNED, "Content-Length": str(10**9)},
                            "content": b"{}"}),  # declared too large: 413
            ("POST", path, {"headers": {**SIGNED, "User-Agent": "agent/\xe9".encode("latin-1")},
                            "content": b"{not json"}),  # 422 on attestations
            ("POST", path, {"headers": SIGNED, "json": {"nonce": 5}}),
            ("POST", path, {"headers": SIGNED, "content": "oversized"}),  # 413 while read
            ("PUT", path, {"headers": SIGNED}),  # the stack's (405)
            ("POST", f"/v1/devices/{'a' * 65}/{tail}", {"headers": SIGNED}),  # the stack's
            ("POST", f"/v1/devices/a%20b/{tail}", {"headers": SIGNED}),
        ]
    return cases


async def _oversized() -> AsyncIterator[bytes]:
    for _ in range(5):
        yield b"x" * (1024 * 1024)


async def _compare(apps: tuple[FastAPI, FastAPI], services: tuple[Services, Services],
                   cases: list[tuple[str, str, dict[str, Any]]]) -> set[int]:
    """Each case to both apps; answers, logs, metrics and audit entries compared. A
    bearer token ``TOKEN`` is each app's own admin token."""
    tokens = [mint(svc.signer, local_issuer(svc.settings.trust_domain), role="admin",
                   subject="front", ttl=dt.timedelta(hours=1), now=NOW) for svc in services]
    seen: set[int] = set()
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app,
                                                               raise_app_exceptions=False),
                                 base_url="http://testserver") for app in apps]
    try:
        for method, path, kw in cases:
            answers = []
            for client, token, svc in zip(clients, tokens, services, strict=True):
                sent = dict(kw)
                if sent.get("content") == "oversized":  # chunked: no Content-Length
                    sent["content"] = _oversized()
                if sent.get("headers", {}).get("Authorization") == "Bearer TOKEN":
                    sent["headers"] = {**sent["headers"], "Authorization": f"Bearer {token}"}
                answer = await _exchange(client, method, path, **sent)
                logs = json.dumps(answer["logs"]).replace(str(svc.settings.data_dir), "<dir>")
                answers.append(answer | {"logs": json.loads(logs)})
            assert answers[0] == answers[1], (method, path, kw)
            assert _metrics(services[0]) == _metrics(services[1]), (method, path, kw)
            seen.add(answers[0]["status"])
    finally:
        for client in clients:
            await client.aclose()
    for ours, theirs in zip(*(_audit(svc) for svc in services), strict=True):
        assert ours == theirs
    return seen


def _raising(exc: Exception) -> Any:
    def service(*args: Any) -> Any:
        raise exc
    return service


@pytest.fixture(scope="module")
def apps(pair: tuple[Services, Services]) -> tuple[FastAPI, FastAPI]:
    return (create_app(pair[0], background=False),
            create_app(pair[1], background=False, front=False))


def test_refusals_and_errors_are_the_stacks(apps: tuple[FastAPI, FastAPI],
                                            pair: tuple[Services, Services]) -> None:
    seen = asyncio.run(_compare(apps, pair, _cases()))
    assert apps[0].front is not None and apps[1].front is None  # type: ignore[attr-defined]
    assert {401, 403, 405, 413, 422} <= seen, seen


ATTESTATION = (b'{"nonce":"bm9uY2U=","quote":{"attest":"AA==","signature":"AA=="},'
               b'"pcrs":{},"csr":"AA==","key_public":"AA==",'
               b'"key_certify":{"attest":"AA==","signature":"AA=="}}')
BOTH = [("POST", f"/v1/devices/{DEVICE}/challenge", {"headers": SIGNED}),
        ("POST", f"/v1/devices/{DEVICE}/attestations", {"headers": SIGNED,
                                                         "content": ATTESTATION})]


@pytest.mark.parametrize(("exc", "status"), [
    (DeviceUnknown("no such device"), 404),
    (Conflict("a renewal is under way"), 409),
    (MalformedInput("the quote is truncated"), 400),
    (VerificationFailed("refused", [], ["quote.nonce_mismatch", "pcr.mismatch"]), 403),
    (RateLimited("rate limit challenge (4/min) reached", retry_after=12.5), 429),
    (AuditUnavailable("the audit log cannot be written"), 503),
    (sa.exc.OperationalError("SELECT 1", {}, Exception("gone")), 503),
    (RuntimeError("a bug"), 500),
])
def test_the_services_refusals_and_failures_are_the_stacks(
        apps: tuple[FastAPI, FastAPI], pair: tuple[Services, Services],
        monkeypatch: pytest.MonkeyPatch, exc: Exception, status: int) -> None:
    monkeypatch.setattr(attestation, "challenge", _raising(exc))
    monkeypatch.setattr(attestation, "attest", _raising(exc))
    assert asyncio.run(_compare(apps, pair, BOTH)) == {status}


def test_answers_are_the_stacks(apps: tuple[FastAPI, FastAPI], pair: tuple[Services, Services],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attestation, "challenge", lambda *args: CHALLENGE)
    monkeypatch.setattr(attestation, "attest", lambda *args: CHALLENGE)
    assert asyncio.run(_compare(apps, pair, BOTH)) == {200, 201}


def test_load_shedding_is_the_stacks_one_count(apps: tuple[FastAPI, FastAPI],
                                               pair: tuple[Services, Services]) -> None:
    asyncio.run(_compare(apps, pair, BOTH[:1]))  # (builds the stacks)
    sheds = [_layer(app, Overload) for app in apps]
    assert apps[0].front.overload is sheds[0]  # type: ignore[attr-defined]
    for shed in sheds:  # enrollments (the stack) and device calls (the front) count once
        shed.inflight = shed.max_inflight
    try:
        assert asyncio.run(_compare(apps, pair, BOTH)) == {429}
    finally:
        for shed in sheds:
            shed.inflight = 0


def test_rate_limits_are_the_stacks(apps: tuple[FastAPI, FastAPI],
                                    pair: tuple[Services, Services]) -> None:
    per_minute = pair[0].settings.rate_limits.client_per_minute
    for app in apps:
        app.state.rate_limiter = RateLimiter(clock=lambda: 0.0)
        for _ in range(per_minute):
            app.state.rate_limiter.hit("client", "127.0.0.1", per_minute)
    try:
        assert asyncio.run(_compare(apps, pair, BOTH)) == {429}
    finally:
        for app in apps:
            app.state.rate_limiter = RateLimiter()


def test_addresses_through_trusted_proxies_are_the_stacks(
        apps: tuple[FastAPI, FastAPI], pair: tuple[Services, Services]) -> None:
    asyncio.run(_compare(apps, pair, BOTH[:1]))
    contexts = [_layer(app, RequestContext) for app in apps]
    assert apps[0].front.context is contexts[0]  # type: ignore[attr-defined]
    for context in contexts:
        context.proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    forwarded = {"X-Forwarded-For": "198.51.100.7, 127.0.0.2"}
    try:
        asyncio.run(_compare(apps, pair, [
            (method, path, {**kw, "headers": {**kw["headers"], **forwarded}})
            for method, path, kw in BOTH] + [
            ("POST", f"/v1/devices/{DEVICE}/challenge", {"headers": forwarded})]))
    finally:
        for context in contexts:
            context.proxies = ()
    line = [e for e in json.loads("[" + ",".join(LOGS.lines[-3:]) + "]")
            if e.get("logger") == "attestor.access"][-1]
    assert line["client"] == "198.51.100.7"


def test_the_front_stands_down_before_a_stack_it_does_not_know(
        pair: tuple[Services, Services]) -> None:
    app = create_app(pair[0], background=False)
    app.add_middleware(RequestContext)  # a layer the front would skip

    async def challenge() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            return await client.post(f"/v1/devices/{DEVICE}/challenge")

    start = len(LOGS.lines)
    response = asyncio.run(challenge())
    assert response.status_code == 401
    assert len(response.headers.get_list("x-request-id")) == 2  # both layers ran
    assert app.front is None  # type: ignore[attr-defined]
    assert any("the device front is off" in line for line in LOGS.lines[start:])


@pytest.mark.parametrize("path", [f"/v1/devices/{DEVICE}/challenge",
                                  "/v1/devices/a.b_c-9/attestations", "/v1/devices/../challenge",
                                  "//v1/devices/a/challenge",
                                  "/v1/devices/a?b/challenge", "/v1/devices/a#b/attestations",
                                  "/v1/devices/a\\b/challenge", "/v1/devices/a\tb/challenge"])
@pytest.mark.parametrize("query", [b"", b"x=1", b"a=%23&b=#c"])
@pytest.mark.parametrize("host", [b"attestor:8443", b"evil/x", None])
def test_the_signed_path_is_the_urls(path: str, query: bytes, host: bytes | None) -> None:
    headers = [(b"x-edgeproof-device", b"one"), (b"user-agent", b"a"),
               (b"x-edgeproof-device", b"two")] + ([(b"host", host)] if host else [])
    request = Request({"type": "http", "method": "POST", "path": path, "query_string": query,
                       "headers": headers, "server": None if host else ("::1", 80)})
    url = request.url
    assert signed_path(request) == url.path + (f"?{url.query}" if url.query else "")
    assert first_values(request) == dict(request.headers)


ABSENT = object()


@pytest.mark.parametrize(("telemetry", "fronted"), [(ABSENT, True), (None, True),
                                                    (object(), False)])
def test_a_request_fastapis_telemetry_observes_takes_the_stack(
        pair: tuple[Services, Services], telemetry: object, fronted: bool) -> None:
    """(A parent FastAPI app's telemetry in the scope; the stack's exit stack marks it.)"""
    app = create_app(pair[0], background=False)
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": f"/v1/devices/{DEVICE}/challenge", "root_path": "",
        "raw_path": b"", "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80)}
    if telemetry is not ABSENT:
        scope["fastapi.telemetry"] = telemetry
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert ("fastapi_middleware_astack" not in scope) is fronted
