"""Request body size limit, enforced while reading (Content-Length may lie or be
absent), and load shedding of device requests beyond a number in flight."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def send_problem(send: Send, status: int, code: str, title: str, detail: str,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An RFC 9457 problem written straight from ASGI middleware (before any route)."""
    body = json.dumps({"type": f"https://edgeproof.dev/problems/{code}", "title": title,
                       "status": status, "code": code, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/problem+json"), *(headers or []),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised while the body is read; FastAPI passes HTTP exceptions to the problem handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"bodies are limited to {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_problem(send, 413, "request.too_large", "request body too large",
                           f"bodies are limited to {self.max_bytes} bytes")


class Overload:
    """Load shedding: at most ``max_inflight`` device requests (enrollment, challenge,
    attestation) in this process at once; beyond that, an immediate 429 with a
    jittered Retry-After, so a thundering herd (a fleet coming back after an
    outage) is spread out instead of queueing until it times out."""

    def __init__(self, app: ASGIApp, max_inflight: int, retry_after: int,
                 on_shed: Callable[[], None] | None = None) -> None:
        self.app, self.max_inflight, self.retry_after = app, max_inflight, retry_after
        self.inflight = 0
        self.on_shed = on_shed

    @staticmethod
    def _heavy(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return scope.get("method") == "POST" and (
            path.startswith("/v1/enrollments")
            or (path.startswith("/v1/devices/") and path.endswith(("/challenge",
                                                                   "/attestations"))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._heavy(scope):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            if self.on_shed is not None:
                self.on_shed()
            await self._shed(send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _shed(self, send: Send) -> None:
        wait = self.retry_after + secrets.randbelow(self.retry_after + 1)
        await send_problem(send, 429, "request.overloaded", "too many requests",
                           f"the attestor is at capacity; retry in {wait} s",
                           [(b"retry-after", str(wait).encode())])
