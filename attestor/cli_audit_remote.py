"""`attestor audit query` against a server, `audit export|key` against a server or on the
host, and `audit verify --server`: the auditor's view of the hash-chained audit log from
their own machine (role auditor).

The filters are passed to ``GET /v1/audit`` and ``/v1/audit/export`` as the API names
them; ``--where NAME=VALUE`` passes any other filter the server supports."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_remote import (
    Output,
    client,
    emit,
    out,
    print_json,
    remote,
    rows,
    when,
    writable,
)
from attestor.client import ClientError, OperatorClient
from attestor.models.operator import AuditVerification


def _filters(device: str | None, actor: str | None, action: str | None,
             outcome: str | None, reason: str | None, since: str | None,
             until: str | None, where: list[str] | None) -> dict[str, str | None]:
    filters: dict[str, str | None] = {
        "device_id": device, "actor": actor, "action": action, "outcome": outcome,
        "reason": reason, "since": since, "until": until}
    for item in where or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--where")
        filters[name] = value
    return filters


DeviceF = Annotated[str | None, typer.Option("--device", help="entries about this device",
                                             show_default=False)]
ActorF = Annotated[str | None, typer.Option(help="who acted (a token subject, API key, "
                                            "device or cli)", show_default=False)]
ActionF = Annotated[str | None, typer.Option(help="the action, e.g. device.revoke",
                                             show_default=False)]
OutcomeF = Annotated[str | None, typer.Option(help="the outcome, e.g. refused",
                                              show_default=False)]
ReasonF = Annotated[str | None, typer.Option(help="a reason code, e.g. policy.pcr_mismatch",
                                             show_default=False)]
SinceF = Annotated[str | None, typer.Option(help="from this time (ISO 8601)",
                                            show_default=False)]
UntilF = Annotated[str | None, typer.Option(help="up to this time (ISO 8601)",
                                            show_default=False)]
WhereF = Annotated[list[str] | None, typer.Option(
    metavar="NAME=VALUE", help="any other filter of GET /v1/audit (repeatable)",
    show_default=False)]


def audit_query(device: DeviceF = None, actor: ActorF = None, action: ActionF = None,
                outcome: OutcomeF = None, reason: ReasonF = None, since: SinceF = None,
                until: UntilF = None, where: WhereF = None,
                limit: Annotated[int, typer.Option(help="at most this many")] = 1000,
                output: Output = None) -> None:
    """Audit entries in order, filtered (server only; auditor)."""
    filters = _filters(device, actor, action, outcome, reason, since, until, where)
    with remote("audit query") as api:
        entries = list(api.iter_audit(max_items=limit, **filters))
    emit(output, entries, lambda: rows(
        ("seq", "at", "actor", "action", "outcome", "device", "reasons"),
        ((e.seq, when(e.at), e.actor, e.action, e.outcome, e.device_id,
          ", ".join(e.reasons)) for e in entries)))


def _local_filter(filters: dict[str, str | None]) -> object:
    """The filters as the host's query takes them (``--where`` names only the API's)."""
    import datetime as dt

    from attestor.db.queries import AuditFilter

    known = {"device_id", "actor", "action", "outcome", "reason", "since", "until"}
    if unknown := sorted(set(filters) - known):
        raise typer.BadParameter(f"{unknown} are filters of a server's API only",
                                 param_hint="--where")
    try:
        times = {name: dt.datetime.fromisoformat(filters[name] or "") if filters[name]
                 else None for name in ("since", "until")}
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {exc}") from exc
    return AuditFilter(device_id=filters["device_id"], actor=filters["actor"],
                       action=filters["action"], outcome=filters["outcome"],
                       reason=filters["reason"], **times)


def audit_export(device: DeviceF = None, actor: ActorF = None, action: ActionF = None,
                 outcome: OutcomeF = None, reason: ReasonF = None, since: SinceF = None,
                 until: UntilF = None, where: WhereF = None,
                 out_file: Annotated[Path | None, typer.Option(
                     "--out", help="write here (default: stdout)", show_default=False)]
                 = None, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Every matching entry as JSON Lines with the signed checkpoints and a signed last
    line, as the server (--server; auditor) or the host's database (-d) wrote them;
    `attestor audit verify --file … --key …` checks it anywhere (docs/audit.md)."""
    filters = _filters(device, actor, action, outcome, reason, since, until, where)
    api = client()
    if api is None:
        from attestor.cli_admin import export_locally

        count = export_locally(out_file, data_dir, dev, _local_filter(filters))
    else:
        count = 0
        with api:
            lines = api.audit_export(**filters)
            first = next(lines, None)  # the server's refusal leaves no empty file behind
            sink = writable(out_file) if out_file is not None else sys.stdout.buffer
            try:
                for line in itertools.chain([first] if first is not None else [], lines):
                    sink.write(line)
                    count += 1
            except ClientError:
                if out_file is not None:  # no half export that looks like one
                    sink.close()
                    out_file.unlink(missing_ok=True)
                raise
            finally:
                if out_file is not None:
                    sink.close()
    if out_file is not None:
        out.print(f"{count} lines written to {out_file}")


def audit_key(
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="write the PEM here (default: stdout)", show_default=False)] = None,
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """The public keys (PEM) that check the audit log's signed checkpoints and exports,
    what `attestor audit verify --file … --key` needs: from GET /v1/audit/checkpoint-key
    with --server (auditor), else from the host's key ring (-d)."""
    api = client()
    if api is None:
        from attestor.cli_admin import checkpoint_key

        pem = checkpoint_key(data_dir, dev)
    else:
        with api:
            pem = api.audit_checkpoint_key()
    if out_file is not None:
        with writable(out_file) as sink:
            sink.write(pem.encode())
    else:
        sys.stdout.write(pem)


def verify_remotely(api: OperatorClient, as_json: bool) -> None:
    """`audit verify` with a server: the server walks its chain; exit 1 if tampered."""
    with api:
        report = api.audit_verify()
    if as_json:
        print_json(report)
    else:
        _print_report(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: AuditVerification) -> None:
    out.print(f"entries {report.entries}, last {report.last_seq}, checkpoints "
              f"{report.checkpoints}, anchored to {report.anchored_seq}"
              + (f", pruned up to {report.base_seq}" if report.base_seq else ""))
    for problem in report.problems:
        out.print(f"[red]{escape(str(problem.get('code')))}[/] at {problem.get('seq')}: "
                  f"{escape(str(problem.get('detail')))}")
    if not report.ok:
        out.print("[bold red]TAMPERED[/]")
    elif report.unanchored_entries:
        out.print(f"[green]intact[/] up to {report.anchored_seq}; [yellow]"
                  f"{report.unanchored_entries} unanchored[/] entries since "
                  f"{when(report.unanchored_since)} (not yet covered by a signed "
                  "checkpoint: not verified)")
    else:
        out.print("[green]intact[/]")


def register(audit_app: typer.Typer) -> None:
    audit_app.command("query")(audit_query)
    audit_app.command("export")(audit_export)
    audit_app.command("key")(audit_key)
