"""FastAPI dependencies as Annotated aliases: services, the caller, and what it may do."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from attestor.api.ratelimit import client_limit, device_limit
from attestor.api.refusals import throttle
from attestor.auth import Principal, apikeys, devices
from attestor.auth.devices import RequestProof
from attestor.services.context import Services
from identity.errors import AuthForbidden, AuthInvalid, AuthMissing, RateLimited
from identity.requestsig import parse_headers


async def _services(request: Request) -> Services:  # async: no thread hand-off
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(_services)]


async def _caller(request: Request, svc: ServicesDep) -> Principal | None:
    """The authenticated caller, or None when the request carries no credential; a
    source with too many refused requests is refused unchecked (429)."""
    throttle(request, svc)
    caller = await _authenticate(request, svc)
    request.state.caller = caller  # the problem handler names it in audit entries
    return caller


async def _authenticate(request: Request, svc: Services) -> Principal | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    presented = [bool(authorization), "x-api-key" in request.headers,
                 "x-edgeproof-device" in request.headers]
    if sum(presented) > 1:
        raise AuthInvalid("one credential per request: a token, an API key or a device "
                          "signature")
    if scheme.lower() == "bearer" and value:
        return await run_in_threadpool(svc.verify_token, value.strip())
    api_key = request.headers.get("x-api-key") or (value if scheme.lower() == "apikey" else "")
    if api_key:
        def check_key() -> Principal:
            with svc.session() as session:
                return apikeys.verify(session, api_key.strip())
        return await run_in_threadpool(check_key)
    signed = parse_headers(dict(request.headers))
    if signed is not None:
        body = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")

        def check_device() -> Principal:
            with svc.engine.begin() as conn:
                return devices.authenticate(
                    conn, signed, request.method, path, body, svc.clock(),
                    svc.settings.auth.request_window_seconds, svc.devid_keys)
        return await run_in_threadpool(check_device)
    if authorization:
        raise AuthInvalid("unsupported Authorization scheme (Bearer or ApiKey)")
    return None


OptionalCaller = Annotated[Principal | None, Depends(_caller)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting people, services and stations holding one of ``roles``
    (``admin`` always)."""
    allowed = {"admin", *roles}

    async def dependency(caller: OptionalCaller) -> Principal:
        if caller is None:
            raise AuthMissing("this endpoint needs a bearer token or an API key")
        if caller.kind == "device" or caller.role not in allowed:
            raise AuthForbidden(f"role {caller.role or 'device'} may not do this")
        return caller

    return dependency


async def _this_device(request: Request, caller: OptionalCaller) -> Principal:
    """Only the device named in the path, authenticated by its DevID key."""
    if caller is None:
        raise AuthMissing("this endpoint needs a request signed by the device's DevID key")
    if caller.kind != "device" or caller.device_id != request.path_params.get("device_id"):
        raise AuthForbidden("only the device itself may do this")
    return caller


def require_device_or_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """The device named in the path itself, or an operator with one of ``roles``."""
    allowed = {"admin", *roles}

    async def dependency(request: Request, caller: OptionalCaller) -> Principal:
        if caller is None:
            raise AuthMissing("this endpoint needs a device signature or a bearer token")
        if caller.kind == "device":
            if caller.device_id != request.path_params.get("device_id"):
                raise AuthForbidden("a device may only act on its own record")
            return caller
        if caller.role not in allowed:
            raise AuthForbidden(f"role {caller.role} may not do this")
        return caller

    return dependency


Admin = Annotated[Principal, Depends(require_roles())]
Enroller = Annotated[Principal, Depends(require_roles("enroller"))]
Reader = Annotated[Principal, Depends(require_roles("auditor"))]
ThisDevice = Annotated[Principal, Depends(_this_device)]
DeviceOrReader = Annotated[Principal, Depends(require_device_or_roles("auditor", "gatekeeper"))]


def limited_device(kind: str) -> Callable[..., Awaitable[Principal]]:
    """The device named in the path, within its client's and its own rate limits."""

    # A default, not an annotation: postponed annotations cannot see ``kind``.
    async def dependency(request: Request, _: None = Depends(client_limit(kind)), *,
                         caller: ThisDevice) -> Principal:
        device_limit(request, kind, caller.device_id or "")
        return caller

    return dependency


def signed_device(kind: str) -> Callable[..., Awaitable[RequestProof]]:
    """The device named in the path's signed request, parsed, within its client's rate
    limit; the challenge and attestation services check it (signature, request nonce,
    the device's own rate limit) in the transaction that reads the device anyway. Any
    other caller goes the general way, which says why it may not (401 or 403)."""

    async def dependency(request: Request, svc: ServicesDep,
                         _: None = Depends(client_limit(kind))) -> RequestProof:
        return await device_proof(request, svc, kind)

    return dependency


def first_values(request: Request) -> dict[str, str]:
    """The request's headers, the first value of each name: ``dict(request.headers)``
    in one pass (that walks the headers once per name)."""
    found: dict[str, str] = {}
    for key, value in request.headers.raw:
        found.setdefault(key.decode("latin-1"), value.decode("latin-1"))
    return found


# A device route's path as Starlette's URL gives it back unchanged: nothing it escapes,
# splits off or normalises
_PLAIN_DEVICE_PATH = re.compile(r"/v1/devices/[A-Za-z0-9._-]{1,64}/(?:challenge|attestations)")


def signed_path(request: Request) -> str:
    """The path and query the device signed, as ``request.url`` gives them (without
    building the URL when the path is plain and there is no query)."""
    if not request.scope.get("query_string") and _PLAIN_DEVICE_PATH.fullmatch(
            request.scope["path"]):
        path: str = request.scope["path"]
        return path
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def device_proof(request: Request, svc: Services, kind: str) -> RequestProof:
    """:func:`signed_device`'s work, once the client's rate limit is applied (the plain
    device routes of attestor/api/routes/attestations.py call it directly)."""
    throttle(request, svc)
    headers = first_values(request)
    other = "authorization" in headers or "x-api-key" in headers
    signed = None if other else parse_headers(headers)
    if signed is None or signed.device_id != request.path_params.get("device_id"):
        caller = await _authenticate(request, svc)
        request.state.caller = caller
        await _this_device(request, caller)  # raises: not this device's request
        raise AuthForbidden("only the device itself may do this")
    body = await request.body()
    path = signed_path(request)

    def admit(caller: Principal) -> Exception | None:
        request.state.caller = caller  # the problem handler names it in audit entries
        try:
            device_limit(request, kind, caller.device_id or "")
        except RateLimited as exc:
            return exc
        return None

    return RequestProof(signed, request.method, path, body,
                        svc.settings.auth.request_window_seconds, admit)


ChallengeProof = Annotated[RequestProof, Depends(signed_device("challenge"))]
AttestationProof = Annotated[RequestProof, Depends(signed_device("attestation"))]
AttestingDevice = Annotated[Principal, Depends(limited_device("attestation"))]
EnrollmentLimit = Annotated[None, Depends(client_limit("enrollment"))]
FleetReader = Annotated[Principal, Depends(require_roles("auditor", "gatekeeper"))]
MetricsReader = FleetReader
