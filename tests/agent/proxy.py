"""A fault-injecting HTTP proxy in front of a live attestor: up, down (connection
refused), 500s, or bodies that are not what the API promises."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

MODES = ("up", "down", "500", "429", "garbage", "truncated", "incomplete", "unsafe")
_BODIES = {  # answers that are not what the API promises
    "garbage": b"\x00\xffnot json at all",
    "truncated": b'{"device_id": "d", "certificate": "-----BEGIN CERT',
    "incomplete": b'{"nonce": "AAAA", "verdict": "pass"}',
}


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "up"
        self.only: str | None = None  # apply the fault only to paths containing this
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                mode = proxy.mode if proxy.only is None or proxy.only in self.path else "up"
                if mode == "down":
                    self.connection.shutdown(socket.SHUT_RDWR)  # looks like a reset
                    return
                if mode == "500":
                    return self._send(500, b"upstream exploded", "text/plain")
                if mode == "429":
                    return self._send(429, b'{"code": "request.rate_limited"}',
                                      "application/problem+json", "7")
                if mode in _BODIES:
                    return self._send(200, _BODIES[mode], "application/json")
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                answer = httpx.request(self.command, proxy.upstream + self.path,
                                       content=body, headers=headers, timeout=30)
                content = answer.content
                if mode == "unsafe":  # a tampering middlebox: a genuine answer, one field
                    content = json.dumps({**answer.json(), "serial": "../../escape"}).encode()
                self._send(answer.status_code, content,
                           answer.headers.get("content-type", "application/json"),
                           answer.headers.get("retry-after"))

            def _send(self, status: int, body: bytes, kind: str,
                      retry_after: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward  # noqa: N815 (http.server API)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
