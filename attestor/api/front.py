"""The two requests every device makes each cycle (``POST .../challenge`` and
``POST .../attestations`` of a well-formed device id), answered through one flat
pipeline in front of the FastAPI app; every other request goes to the app unchanged.

The pipeline is the stack's own behaviour for these two routes, layer by layer, with
the same objects: :class:`~attestor.observability.RequestContext`'s ``open`` and
``close`` (request id in and out, origin, metrics by route template, access line),
the :class:`~attestor.api.limits.Overload` instance the stack sheds with (one count
of requests in flight), :class:`~attestor.api.limits.BodyLimit`'s checks, the
security headers of HTML responses (these routes make none), Starlette's
ExceptionMiddleware and ServerErrorMiddleware with the app's own handlers (the same
problem responses), and the plain route's endpoint (attestor/api/routes/attestations.py:
rate limits, request authentication, service call). What it leaves out adds nothing
to these routes: FastAPI's exception telemetry (its native telemetry is checked per
request, as FastAPI does: when on, the request takes the stack), its body limit
(``max_body_size`` unset), AsyncExitStackMiddleware (no dependencies, no uploads) and
the router's search.

It takes over only when the built stack is exactly the layers it stands for
(:func:`build`); anything else (another middleware, a FastAPI that builds otherwise)
keeps every request on the stack, with a warning.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attestor.api.limits import BodyLimit, BodyTooLarge, Overload
from attestor.api.routes.attestations import PLAIN_ROUTES
from attestor.console.web import HTML_HEADERS, SecurityHeaders, is_html
from attestor.observability import RequestContext

log = logging.getLogger("attestor.front")
PREFIX = "/v1/devices/"
# The stack the front stands for, outermost first, the router last (FastAPI's own two
# pass-through layers by name: they are not public).
STACK: tuple[type | str, ...] = (
    ServerErrorMiddleware, "ExceptionTelemetryMiddleware", "AppBodyLimitMiddleware",
    RequestContext, Overload, BodyLimit, SecurityHeaders, ExceptionMiddleware,
    AsyncExitStackMiddleware)


class DeviceFront:
    """The flat pipeline of ``routes`` (plain Starlette POST routes), built from the
    layers of the app's stack."""

    def __init__(self, app: FastAPI, routes: Sequence[Route], errors: ServerErrorMiddleware,
                 context: RequestContext, overload: Overload, body_limit: BodyLimit) -> None:
        self.context, self.overload, self.body_limit = context, overload, body_limit
        handlers = {k: v for k, v in app.exception_handlers.items() if k not in (500, Exception)}
        # per route: ServerErrorMiddleware > this pipeline > ExceptionMiddleware > endpoint
        self.routes = [
            (route, ServerErrorMiddleware(
                functools.partial(self._pipeline,
                                  ExceptionMiddleware(route.app, handlers=handlers,
                                                      debug=app.debug)),
                handler=errors.handler, debug=errors.debug))
            for route in routes]

    def match(self, scope: Scope) -> tuple[Route, dict[str, Any], ASGIApp] | None:
        """The route, path parameters and pipeline of an HTTP request the front answers,
        as the router would find them (the plain routes are the router's first)."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX):
            return None
        for route, serve in self.routes:
            found = route.path_regex.match(path)
            if found is not None:
                params = {k: route.param_convertors[k].convert(v)
                          for k, v in found.groupdict().items()}
                return route, params, serve
        return None

    async def _pipeline(self, inner: ASGIApp, scope: Scope, receive: Receive,
                        send: Send) -> None:
        """RequestContext, Overload, BodyLimit and SecurityHeaders, as one layer."""
        request_id, source = self.context.open(scope)
        status = 500
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", ()))
                if is_html(headers):
                    headers += HTML_HEADERS
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            await send(message)

        try:
            if not self.overload.enter():
                await self.overload.shed(send_with_id)
                return
            try:
                if self.body_limit.declared_too_large(scope):
                    await self.body_limit.refuse(send_with_id)
                    return
                try:
                    await inner(scope, self.body_limit.limited(receive), send_with_id)
                except BodyTooLarge:
                    if not response_started:
                        await self.body_limit.refuse(send_with_id)
            finally:
                self.overload.leave()
        finally:
            self.context.close(scope, status, started, source)


class FrontedApp(FastAPI):
    """The attestor's FastAPI app, with :class:`DeviceFront` before it (``lean=False``:
    without, every request through the stack)."""

    lean = True
    front: DeviceFront | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        self.front = build(self, stack) if self.lean else None
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.lean and not self.root_path:
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            front = self.front
            found = None if front is None else front.match(scope)
            if found is not None and not _observed(self, scope):
                route, params, serve = found
                scope["app"] = self  # what Starlette and the router set
                scope.setdefault("router", self.router)
                scope["route"], scope["endpoint"] = route, route.endpoint
                scope["path_params"] = {**scope.get("path_params", {}), **params}
                await serve(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _observed(app: FastAPI, scope: Scope) -> bool:
    """FastAPI's native (OpenTelemetry) telemetry would observe this request: a parent
    app's (in the scope), else this app's own when it is on (as FastAPI decides)."""
    if "fastapi.telemetry" in scope:
        return scope["fastapi.telemetry"] is not None
    telemetry = getattr(app, "_native_telemetry", None)
    return telemetry is not None and bool(telemetry.enabled())


def _layers(stack: ASGIApp, end: object) -> list[Any]:
    """The middleware of ``stack`` down to ``end`` (the router) included."""
    found: list[Any] = []
    node: Any = stack
    while node is not None and len(found) <= len(STACK):
        found.append(node)
        if node is end:
            break
        node = getattr(node, "app", None)
    return found


def build(app: FastAPI, stack: ASGIApp) -> DeviceFront | None:
    """The front of ``app`` whose built middleware is ``stack``; None (with a warning)
    unless the stack is exactly :data:`STACK` then the router, whose first routes are
    :data:`~attestor.api.routes.attestations.PLAIN_ROUTES`."""
    layers = _layers(stack, app.router)
    kinds = [type(layer) if isinstance(kind, type) else type(layer).__name__
             for layer, kind in zip(layers, STACK, strict=False)]
    routes = list(app.router.routes[:len(PLAIN_ROUTES)])
    problems = []
    if tuple(kinds) != STACK or layers[len(STACK):] != [app.router]:
        problems.append(f"the middleware is {[type(layer).__name__ for layer in layers]}")
    if getattr(app, "max_body_size", None) is not None:
        problems.append("FastAPI's max_body_size is set")
    if routes != list(PLAIN_ROUTES):
        problems.append("the plain device routes are not the first routes")
    if problems:
        log.warning("the device front is off, every request takes the whole stack: %s",
                    "; ".join(problems))
        return None
    return DeviceFront(app, PLAIN_ROUTES, layers[0], layers[3], layers[4], layers[5])
