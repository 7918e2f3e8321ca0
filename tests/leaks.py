"""The leak watch: every log line, response body and audit entry of a live attestor is
scanned for key, token, nonce and secret material seen on the wire.

`Recorder` (an ASGI middleware around the app under test) learns the sensitive values
from the traffic itself: bearer tokens and API keys from request headers, nonces from
challenges and signed-request headers, activation secrets from activation bodies, the
values of released secrets; the attestor's own private keys and passphrase come from
its data directory. `LeakWatch.findings` then looks for each value (raw, hex, base64,
base64url) where it must never appear. A nonce may appear in the challenge that hands
it out, a released secret in the attestation response that releases it; nothing else.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIN_LENGTH = 12


class LogTap(io.TextIOBase):
    """A stream collecting every rendered log line (JSON) of the test session."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.lines.extend(line for line in text.splitlines() if line.strip())
        return len(text)


LOGS = LogTap()


def _forms(value: bytes | str) -> set[str]:
    if isinstance(value, str):
        return {value} if len(value) >= MIN_LENGTH else set()
    if len(value) < MIN_LENGTH // 2 or len(set(value)) < 8:
        return set()  # too short or too regular to be key material (a test's b"\0" * 32)
    return {value.hex(), value.hex().upper(), base64.b64encode(value).decode().rstrip("="),
            base64.urlsafe_b64encode(value).decode().rstrip("=")}


@dataclass
class LeakWatch:
    never: dict[str, str] = field(default_factory=dict)  # form -> what it is
    nonces: dict[str, str] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)
    responses: list[tuple[str, str]] = field(default_factory=list)  # (path, body)
    log_start: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def secret(self, what: str, value: bytes | str) -> None:
        with self._lock:
            for form in _forms(value):
                self.never[form] = what

    def nonce(self, value: bytes | str) -> None:
        with self._lock:
            for form in _forms(value):
                self.nonces[form] = "nonce"

    def release(self, value: bytes | str) -> None:
        with self._lock:
            for form in _forms(value):
                self.released[form] = "released secret value"

    def findings(self, audit_entries: list[dict[str, Any]]) -> list[str]:
        found: list[str] = []
        logs = LOGS.lines[self.log_start:]
        audit_text = [json.dumps(e, default=str) for e in audit_entries]
        everywhere = {**self.never}
        quiet = {**self.nonces, **self.released}
        for form, what in {**everywhere, **quiet}.items():
            for line in logs:
                if form in line:
                    found.append(f"{what} in a log line: {line[:200]}")
            for entry in audit_text:
                if form in entry:
                    found.append(f"{what} in an audit entry: {entry[:200]}")
        for path, body in self.responses:
            for form, what in everywhere.items():
                if form in body:
                    found.append(f"{what} in the response to {path}")
            if not path.endswith("/challenge"):
                for form, what in self.nonces.items():
                    if form in body:
                        found.append(f"{what} in the response to {path}")
            if not path.endswith("/attestations"):
                for form, what in self.released.items():
                    if form in body:
                        found.append(f"{what} in the response to {path}")
        return found


class Recorder:
    """Learns sensitive values from requests and keeps every response body."""

    def __init__(self, app: ASGIApp, watch: LeakWatch) -> None:
        self.app = app
        self.watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if token:
            self.watch.secret("a bearer token", token)
        if "x-api-key" in headers:
            key = headers["x-api-key"]
            self.watch.secret("an API key", key)
            self.watch.secret("an API key's secret", key.rsplit("_", 1)[-1])
        if "x-edgeproof-nonce" in headers:
            self.watch.nonce(headers["x-edgeproof-nonce"])
        path = scope["path"]
        request_body = bytearray()
        response_body = bytearray()

        async def tapped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
                if not message.get("more_body") and path.endswith("/activation"):
                    self._activation(bytes(request_body))
            return message

        async def tapped_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self._response(path, bytes(response_body))
            await send(message)

        await self.app(scope, tapped_receive, tapped_send)

    def _activation(self, body: bytes) -> None:
        try:
            secret = json.loads(body).get("secret")
            self.watch.secret("an activation secret", base64.b64decode(secret, validate=True))
        except (ValueError, TypeError, AttributeError):
            pass

    def _response(self, path: str, body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        if path.endswith("/challenge"):
            try:
                self.watch.nonce(base64.b64decode(json.loads(text)["nonce"]))
            except (ValueError, KeyError, TypeError):
                pass
        if path.endswith("/attestations"):
            try:
                for granted in json.loads(text).get("secrets") or []:
                    if granted.get("value"):
                        self.watch.release(base64.b64decode(granted["value"]))
                    if granted.get("vault_wrap"):  # a wrapping token is as good as the value
                        self.watch.release(str(granted["vault_wrap"]["token"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        with self.watch._lock:
            self.watch.responses.append((path, text))
