"""The console's pages (thin: parse, gather through :mod:`attestor.console.views`,
render). Every page needs a session; lifecycle actions need the admin role, a
confirmation page and the session's CSRF token, and are audited by the device service
like their API counterparts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from attestor import audit
from attestor.api import refusals
from attestor.console import views, web
from attestor.console.session import ConsoleSession, check_csrf
from attestor.db.queries import DeviceFilter
from attestor.models.common import FILTER_TEXT
from attestor.services import devices
from attestor.services.devices import MAX_POSITION
from identity.errors import Conflict, DeviceUnknown, MalformedInput, NotFound

router = APIRouter(prefix="/ui", include_in_schema=False)
# No control characters (as the API's filters): a NUL is an error on PostgreSQL and
# ends a LIKE pattern on SQLite.
Text = Annotated[str | None, Query(max_length=128, pattern=FILTER_TEXT)]
DeviceId = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
Action = Literal["quarantine", "release", "revoke"]
ACTION_WORDS = {"quarantine": "Quarantine", "release": "Release", "revoke": "Revoke"}


def _page(request: Request, user: ConsoleSession, template: str,
          gather: Callable[[], dict[str, Any]]) -> Response:
    try:
        context = gather()
    except (DeviceUnknown, NotFound) as exc:
        return web.render(request, user, "error.html", http_status=404, title="Not found",
                          message=exc.detail)
    return web.render(request, user, template, **context)


@router.get("")
def overview(request: Request, user: web.User) -> Response:
    return _page(request, user, "overview.html", lambda: views.overview(web.services(request)))


@router.get("/devices")
def device_list(request: Request, user: web.User, q: Text = None,
                state: Annotated[str | None, Query(pattern=r"^[a-z]*$", max_length=16)] = None,
                device_class: Annotated[str | None, Query(alias="class", max_length=64,
                                                          pattern=FILTER_TEXT)] = None,
                verdict: Annotated[str | None, Query(pattern=r"^[a-z]*$", max_length=8)] = None,
                reason: Text = None,
                after: Annotated[str | None, Query(max_length=64,
                                                   pattern=FILTER_TEXT)] = None) -> Response:
    search = DeviceFilter(text=q or None, state=state or None,
                          device_class=device_class or None, verdict=verdict or None,
                          reason=reason or None)
    return _page(request, user, "devices.html",
                 lambda: views.device_list(web.services(request), search, after or None))


@router.get("/devices/{device_id}")
def device(request: Request, user: web.User, device_id: str = DeviceId) -> Response:
    return _page(request, user, "device.html",
                 lambda: views.device_page(web.services(request), device_id))


@router.get("/devices/{device_id}/attestations/{attestation_id}")
def attestation(request: Request, user: web.User, device_id: str = DeviceId,
                attestation_id: int = Path(ge=1, le=2**62)) -> Response:
    return _page(request, user, "attestation.html", lambda: views.attestation_page(
        web.services(request), device_id, attestation_id))


def _forbidden(request: Request, user: ConsoleSession, what: str) -> Response:
    """An auditor reaching for an admin action: refused, and the refusal audited."""
    svc = web.services(request)
    with svc.session() as session, session.begin():
        audit.append(session, at=svc.clock(), actor=user.principal.actor,
                     action="console.action", outcome="refused", subject=what,
                     reasons=["auth.forbidden"], details=refusals.facts(request))
    return web.render(request, user, "error.html", http_status=403, title="Not allowed",
                      message=f"role {user.role} may not {what}: admins only")


@router.get("/devices/{device_id}/{action}")
def confirm(request: Request, user: web.User, action: Action,
            device_id: str = DeviceId) -> Response:
    if not user.admin:
        return _forbidden(request, user, f"{action} device {device_id}")
    return _page(request, user, "confirm.html", lambda: {
        **views.device_page(web.services(request), device_id), "action": action,
        "word": ACTION_WORDS[action]})


@router.post("/devices/{device_id}/{action}")
def act(request: Request, user: web.User, action: Action, device_id: str = DeviceId,
        csrf: Annotated[str, Form(max_length=128)] = "",
        reason: Annotated[str, Form(min_length=1, max_length=256)] = "console") -> Response:
    if not user.admin:
        return _forbidden(request, user, f"{action} device {device_id}")
    if not check_csrf(user, csrf):
        return web.render(request, user, "error.html", http_status=403, title="Refused",
                          message="the form is stale or was not sent by this console "
                                  "(CSRF token mismatch): reload the page and try again")
    try:
        devices.change_state(web.services(request), device_id, action, reason,
                             user.principal)
    except (DeviceUnknown, Conflict) as exc:
        return web.render(request, user, "error.html", http_status=409, title="Not done",
                          message=exc.detail)
    response = RedirectResponse(f"/ui/devices/{device_id}", status_code=303)
    web.set_session(request, response, user)
    return response


def _audit_values(device_id: str | None, actor: str | None, action: str | None,
                  outcome: str | None, reason: str | None, since: dt.datetime | None,
                  until: dt.datetime | None) -> dict[str, Any]:
    return {"device_id": device_id, "actor": actor, "action": action, "outcome": outcome,
            "reason": reason, "since": since, "until": until}


Since = Annotated[str | None, Query(max_length=40)]


def _time(value: str | None) -> dt.datetime | None:
    """A time from a filter form (``datetime-local`` sends no zone: UTC is meant)."""
    if not value:
        return None
    try:
        found = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedInput(f"{value!r} is not a date and time (YYYY-MM-DDTHH:MM)") from exc
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


@router.get("/audit")
def audit_log(request: Request, user: web.User, device_id: Text = None, actor: Text = None,
              action: Text = None, outcome: Text = None, reason: Text = None,
              since: Since = None, until: Since = None,
              after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0) -> Response:
    try:
        values = _audit_values(device_id, actor, action, outcome, reason, _time(since),
                               _time(until))
    except MalformedInput as exc:
        return web.render(request, user, "error.html", http_status=400, title="Bad filter",
                          message=exc.detail)
    return _page(request, user, "audit.html",
                 lambda: views.audit_page(web.services(request), values, after))


GATE_OUTCOMES = {"allow": "success", "deny": "refused"}  # the audit log's words


@router.get("/gate")
def gate(request: Request, user: web.User, device_id: Text = None,
         outcome: Annotated[str | None, Query(pattern=r"^(allow|deny)?$")] = None,
         after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0) -> Response:
    values = _audit_values(device_id, None, "gate.decision",
                           GATE_OUTCOMES.get(outcome or ""), None, None, None)

    def gather() -> dict[str, Any]:
        found = views.audit_page(web.services(request), values, after, verify=False)
        return {**found, "values": {**values, "outcome": outcome or None}}
    return _page(request, user, "gate.html", gather)


@router.get("/certificates")
def certificate_list(request: Request, user: web.User,
                     status: Annotated[str | None, Query(
                         pattern=r"^(issued|pending|void|revoked)?$")] = None,
                     device_id: Text = None,
                     after: Annotated[str | None, Query(max_length=64,
                                                        pattern=FILTER_TEXT)] = None) -> Response:
    return _page(request, user, "certificates.html", lambda: views.certificates_page(
        web.services(request), status or None, device_id or None, after or None))
