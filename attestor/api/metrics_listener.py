"""The separate metrics listener: plain HTTP serving only ``GET /metrics``, no credential.

Why a listener rather than a scrape role: Prometheus then holds no credential at
all (a leaked scrape key would still open the API to whoever holds it, and every
role we have reads more than metrics), the API's authentication stays unchanged,
and the metrics port is reached only by what the network lets in (a Kubernetes
NetworkPolicy for the monitoring namespace, a firewall on a plain host). The
scrape carries no secret and no device id: counters, fleet totals, expiry times.
On the API port, ``/metrics`` keeps requiring an operator role.

It runs in the attestor's process, on a thread with its own event loop, so a slow
scrape never takes a worker from the API, and the API's load shedding never
refuses a scrape. The socket is bound before the API starts: a port in use stops
``attestor serve`` with one line instead of a half-started service.
"""

from __future__ import annotations

import socket
import threading

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router


def metrics_app(registry: CollectorRegistry) -> Router:
    """An app with one route, ``GET /metrics`` (HEAD too, as HTTP has it); anything else
    is 404 (405 for another method on ``/metrics``), ``/metrics/`` is not redirected."""

    async def metrics(_: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Router(routes=[Route("/metrics", metrics, methods=["GET"])], redirect_slashes=False)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket for ``host`` (a name, an IPv4 or an IPv6 address) and ``port``;
    OSError says why not."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family)


class MetricsListener:
    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.socket = bind(host, port)
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(metrics_app(registry), log_config=None, access_log=False,
                                lifespan="off", timeout_keep_alive=15)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="metrics-listener", daemon=True)

    def start(self) -> MetricsListener:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
