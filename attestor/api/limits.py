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

    def declared_too_large(self, scope: Scope) -> bool:
        """The request's Content-Length (the last one) is over the limit."""
        declared = None
        for key, value in scope.get("headers") or ():
            if key == b"content-length":
                declared = value
        return declared is not None and declared.isdigit() and int(declared) > self.max_bytes

    def limited(self, receive: Receive) -> Receive:
        """``receive``, raising BodyTooLarge once the body read passes the limit."""
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return limited_receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.declared_too_large(scope):
            await self.refuse(send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self.limited(receive), tracking_send)
        except BodyTooLarge:
            if not started:
                await self.refuse(send)

    async def refuse(self, send: Send) -> None:
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
    def heavy(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return scope.get("method") == "POST" and (
            path.startswith("/v1/enrollments")
            or (path.startswith("/v1/devices/") and path.endswith(("/challenge",
                                                                   "/attestations"))))

    def enter(self) -> bool:
        """One more device request in flight; False (counted) when at capacity: the
        caller sheds it (:meth:`shed`), else calls :meth:`leave` when it is answered."""
        if self.inflight >= self.max_inflight:
            if self.on_shed is not None:
                self.on_shed()
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.heavy(scope):
            await self.app(scope, receive, send)
            return
        if not self.enter():
            await self.shed(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.leave()

    async def shed(self, send: Send) -> None:
        wait = self.retry_after + secrets.randbelow(self.retry_after + 1)
        await send_problem(send, 429, "request.overloaded", "too many requests",
                           f"the attestor is at capacity; retry in {wait} s",
                           [(b"retry-after", str(wait).encode())])
