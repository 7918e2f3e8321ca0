"""`attestor device`, `attestor certificates`, `attestor gate`: the fleet, against a server
(--server) or, for what only reads, on the data directory.

Both ways: device list/show/history, gate rules. Server only: the lifecycle (quarantine,
release, revoke, decommission), certificates list/revoke: they act as an authenticated
operator, whom the audit log names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import typer
from rich.text import Text

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_remote import Output, client, emit, emit_result, fail, out, remote, rows, when
from attestor.models.operator import AttestationPublic
from identity.errors import IdentityError
from identity.messages import DevicePublic
from identity.policy import GateRule

device_app = typer.Typer(help="Enrolled devices.", no_args_is_help=True)
certificates_app = typer.Typer(help="Issued certificates (against a server).",
                               no_args_is_help=True)
gate_app = typer.Typer(help="Gate rules: which actions devices of a class may do.",
                       no_args_is_help=True)

State = Annotated[str | None, typer.Option(
    help="active, quarantined, revoked or decommissioned", show_default=False)]
ClassOpt = Annotated[str | None, typer.Option("--class", help="device class",
                                              show_default=False)]
Limit = Annotated[int, typer.Option(help="at most this many")]
Reason = Annotated[str, typer.Option(help="why (recorded in the audit log)")]


def _local_session(data_dir: Any, dev: bool | None) -> Any:
    from sqlmodel import Session

    from attestor.cli import engine_for

    return Session(engine_for(data_dir, dev))


def _local_devices(data_dir: Any, dev: bool | None, state: str | None,
                   device_class: str | None, reason: str | None,
                   limit: int) -> list[DevicePublic]:
    from attestor.db import queries
    from attestor.services.devices import view

    found: list[DevicePublic] = []
    after: str | None = None
    with _local_session(data_dir, dev) as session:
        while len(found) < limit:
            size = min(500, limit - len(found))
            batch = queries.find_devices(session, queries.DeviceFilter(
                state, device_class, None, None, reason), after, size)
            found += [view(session, d) for d in batch]
            if len(batch) < size:
                break
            after = batch[-1].id
    return found


@device_app.command("list")
def device_list(state: State = None, device_class: ClassOpt = None,
                reason: Annotated[str | None, typer.Option(
                    help="a reason code of the last attestation", show_default=False)] = None,
                limit: Limit = 1000, output: Output = None,
                data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Enrolled devices with their state and last verdict (by id)."""
    api = client()
    if api is not None:
        with api:
            devices = list(api.iter_devices(max_items=limit, state=state,
                                            device_class=device_class, reason=reason))
    else:
        devices = _local_devices(data_dir, dev, state, device_class, reason, limit)
    emit(output, devices, lambda: rows(
        ("device", "serial", "class", "state", "last verdict", "last attested"),
        ((d.id, d.serial, d.device_class, d.state, d.last_verdict,
          when(d.last_attested_at)) for d in devices)))


@device_app.command("show")
def device_show(device_id: str, output: Output = None, data_dir: DataDir = DEFAULT_DIR,
                dev: Dev = None) -> None:
    """One device: identity, state, current certificate, last verdict and failed checks."""
    api = client()
    if api is not None:
        with api:
            device = api.device(device_id)
    else:
        from attestor.db import queries
        from attestor.services.devices import view

        with _local_session(data_dir, dev) as session:
            try:
                device = view(session, queries.get_device(session, device_id))
            except IdentityError as exc:
                fail(f"{exc.code}: {exc.detail}")

    def table() -> None:
        cert = device.current_certificate
        rows(("field", "value"), (
            ("id", device.id), ("serial", device.serial), ("model", device.model),
            ("class", device.device_class), ("state", device.state),
            ("state reason", device.state_reason), ("enrolled", when(device.enrolled_at)),
            ("last attested", when(device.last_attested_at)),
            ("last verdict", device.last_verdict),
            ("last reasons", ", ".join(device.last_reasons)),
            ("certificate", f"{cert.serial} ({cert.kind}, until {when(cert.not_after)})"
             if cert else ""),
            ("AK name", device.ak_name), ("DevID name", device.devid_name)))
        if device.failed_checks:
            rows(("failed check", "code", "detail"),
                 ((c.get("name"), c.get("code"), c.get("detail"))
                  for c in device.failed_checks))
    emit(output, device, table)


def _local_history(data_dir: Any, dev: bool | None, device_id: str,
                   limit: int) -> list[AttestationPublic]:
    from attestor.db import queries
    from attestor.services.devices import attestation_view

    with _local_session(data_dir, dev) as session:
        try:
            queries.get_device(session, device_id)
        except IdentityError as exc:
            fail(f"{exc.code}: {exc.detail}")
        return [attestation_view(a)
                for a in queries.attestation_page(session, device_id, None, limit)]


@device_app.command("history")
def device_history(device_id: str, limit: Limit = 20, output: Output = None,
                   data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """The device's attestations, newest first, with every failed check's reason code."""
    api = client()
    if api is not None:
        with api:
            history = list(api.iter_attestations(device_id, max_items=limit))
    else:
        history = _local_history(data_dir, dev, device_id, limit)
    emit(output, history, lambda: rows(
        ("id", "at", "verdict", "reasons", "policy", "certificate"),
        ((a.id, when(a.at), a.verdict, ", ".join(a.reasons), a.policy_version,
          a.certificate_serial) for a in history)))


def _lifecycle(action: Literal["quarantine", "release", "revoke", "decommission"],
               summary: str) -> None:
    def command(device_id: str, reason: Reason, output: Output = None) -> None:
        with remote(f"device {action}") as api:
            device = api.change_state(device_id, action, reason)
        emit_result(output, device, lambda: out.print(
            Text(f"{device.id}: {device.state} ({device.state_reason})")))

    command.__doc__ = summary
    device_app.command(action)(command)


_lifecycle("quarantine", "Quarantine: nothing is issued to the device until it is "
           "released (server only; admin).")
_lifecycle("release", "Release a quarantined device (server only; admin).")
_lifecycle("revoke", "Revoke: every certificate of the device is revoked and nothing is "
           "issued to it again (server only; admin).")
_lifecycle("decommission", "Decommission: certificates revoked; the record and its audit "
           "trail stay (server only; admin).")


@certificates_app.command("list")
def certificates_list(
    device: Annotated[str | None, typer.Option(help="only this device's",
                                               show_default=False)] = None,
    status: Annotated[str | None, typer.Option(
        help="issued, pending, void or revoked", show_default=False)] = None,
    limit: Limit = 1000, output: Output = None,
) -> None:
    """Issued certificates: serial, device, kind, status, validity (server only)."""
    with remote("certificates list") as api:
        certs = list(api.iter_certificates(max_items=limit, device_id=device, status=status))
    emit(output, certs, lambda: rows(
        ("serial", "device", "kind", "status", "not after", "revoked"),
        ((c.serial, c.device_id, c.kind, c.status, when(c.not_after),
          f"{when(c.revoked_at)} {c.revoked_reason or ''}".strip()) for c in certs)))


@certificates_app.command("revoke")
def certificates_revoke(
    serial: str,
    reason: Annotated[str, typer.Option(
        help="unspecified, key_compromise, superseded, cessation_of_operation, "
        "affiliation_changed or privilege_withdrawn")] = "unspecified",
    output: Output = None,
) -> None:
    """Revoke one certificate; it is on the next CRL (server only; admin)."""
    with remote("certificates revoke") as api:
        cert = api.revoke_certificate(serial, reason)
    emit_result(output, cert, lambda: out.print(
        Text(f"{cert.serial}: {cert.status} ({cert.revoked_reason})")))


def _local_rules(data_dir: Any, dev: bool | None, device_class: str) -> list[GateRule]:
    from attestor.db import queries
    from identity.policy import parse_policy

    with _local_session(data_dir, dev) as session:
        row = queries.current_policy(session, device_class)
    if row is None:
        fail(f"request.not_found: no policy for class {device_class!r}")
    return list(parse_policy(row.document).gates)


def _rule_rows(rules: list[GateRule]) -> Iterator[tuple[object, ...]]:
    for number, rule in enumerate(rules, 1):
        claims = ", ".join(f"{k}>={v}" for k, v in rule.claims.items())
        yield number, rule.action, rule.minimum_status, claims, rule.max_age_seconds


@gate_app.command("rules")
def gate_rules(
    device_class: Annotated[str, typer.Option("--class", help="device class")] = "default",
    output: Output = None, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """The gate rules of the class's policy in force, in order (the first that matches an
    action decides; actions no rule matches are denied). Change them with `policy set`."""
    api = client()
    if api is not None:
        with api:
            rules = api.gate_rules(device_class)
    else:
        rules = _local_rules(data_dir, dev, device_class)
    emit(output, rules, lambda: rows(
        ("#", "action", "minimum status", "claims", "max age (s)"), _rule_rows(rules)))
