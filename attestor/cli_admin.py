"""`attestor token`, `attestor apikey`, `attestor keys`, `attestor audit`: credentials and
the audit log from the attestor host."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from attestor.auth import ROLES
from attestor.cli_options import DEFAULT_DIR, DataDir, Dev, Json
from attestor.cli_remote import Output, emit, rows, writable
from attestor.origin import cli_principal

if TYPE_CHECKING:
    from attestor.audit_offline import ExportReport
    from attestor.audit_verify import AuditReport
    from attestor.audit_verify import Mark as AuditMark

token_app = typer.Typer(help="Bearer tokens minted by this attestor.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for factory stations.", no_args_is_help=True)
keys_app = typer.Typer(help="The attestor's signing keys (a keyring shared by every replica).",
                       no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
out = Console()

_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(text: str) -> dt.timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter("a duration such as 30m, 12h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return dt.timedelta(**{unit: int(match.group(1))})


def _services(data_dir: Path, dev: bool | None):  # type: ignore[no-untyped-def]
    from attestor.cli import services_for

    return services_for(data_dir, dev)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    ttl: Annotated[str, typer.Option(help="lifetime, e.g. 1h, 7d")] = "1h",
    subject: Annotated[str, typer.Option(help="who the token is for")] = "operator",
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """Mint a bearer token (printed on stdout; the attestor keeps no copy, the audit log
    records who minted it for whom, its role, id and expiry)."""
    import uuid

    from attestor import audit
    from attestor.auth.tokens import local_issuer, mint

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    svc = _services(data_dir, dev)
    now, lifetime, jti = svc.clock(), parse_duration(ttl), uuid.uuid4().hex
    with svc.session() as session, session.begin():  # recorded before it exists
        token = mint(svc.signer, local_issuer(svc.settings.trust_domain), role=role,
                     subject=subject, ttl=lifetime, now=now, jti=jti)
        audit.append(session, at=now, actor=cli_principal(), action="token.mint",
                     outcome="success", subject=f"token:{subject}",
                     details={"role": role, "jti": jti, "kid": svc.signer.kid,
                              "expires_at": (now + lifetime).isoformat()})
    print(token)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="the station's name")],
    role: Annotated[str, typer.Option(help="usually enroller")] = "enroller",
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """Create an API key (printed once; only its hash is stored)."""
    from attestor import audit
    from attestor.auth import apikeys

    svc = _services(data_dir, dev)
    with svc.session() as session, session.begin():
        key = apikeys.create(session, name, role, svc.clock())
        audit.append(session, at=svc.clock(), actor=cli_principal(), action="apikey.create",
                     outcome="success", subject=f"apikey:{key.split('_')[1]}",
                     details={"name": name, "role": role})
    print(key)


@apikey_app.command("list")
def apikey_list(output: Output = None, data_dir: DataDir = DEFAULT_DIR,
                dev: Dev = None) -> None:
    """API keys: id, name, role, created, revoked (never the key)."""
    from sqlmodel import select

    from attestor.db.models import ApiKey

    svc = _services(data_dir, dev)
    with svc.session() as session:
        keys = [{"id": k.id, "name": k.name, "role": k.role,
                 "created_at": k.created_at.isoformat(),
                 "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                for k in session.exec(select(ApiKey)).all()]
    emit(output, keys, lambda: rows(("id", "name", "role", "created", "revoked"),
                                    (tuple(k.values()) for k in keys)))


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Revoke an API key by its id (takes effect on the next request, every replica)."""
    from attestor import audit
    from attestor.db.models import ApiKey

    svc = _services(data_dir, dev)
    with svc.session() as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is None:
            raise typer.BadParameter(f"no API key {key_id}")
        row.revoked_at = svc.clock()
        session.add(row)
        audit.append(session, at=svc.clock(), actor=cli_principal(), action="apikey.revoke",
                     outcome="success", subject=f"apikey:{key_id}",
                     details={"name": row.name, "role": row.role})
    out.print(f"revoked {key_id}")


@keys_app.command("init")
def keys_init(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Create the signing key if this data directory predates it."""
    from attestor.backends.signing import SigningKey
    from attestor.cli import settings_for

    settings = settings_for(data_dir, dev)
    if settings.signing_key_file.exists():
        out.print("the signing key exists")
        return
    SigningKey.create(settings.signing_key_file, settings.ca_passphrase())
    out.print(f"created {settings.signing_key_file}")


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """New signing key for tokens, attestation results and checkpoints; the previous one
    is retired but stays published until what it signed has expired (every replica
    switches within 30 s)."""
    from attestor import audit

    svc = _services(data_dir, dev)
    now = svc.clock()
    with svc.session() as session, session.begin():
        kid, retired = svc.keys.rotate(session, now)
        audit.append(session, at=now, actor=cli_principal(), action="keys.rotate",
                     outcome="success", subject=f"key:{kid}",
                     details={"kid": kid, "retired": retired})
    out.print(f"active signing key {kid}; retired {', '.join(retired) or 'none'}")


def _read_marks(paths: list[Path] | None) -> list[AuditMark]:
    from attestor.audit_verify import read_checkpoints

    marks: list[AuditMark] = []
    for path in paths or []:
        found, unreadable = read_checkpoints(path.read_text(errors="replace").splitlines())
        if unreadable:
            raise typer.BadParameter(f"{path}: lines {unreadable[:10]} are not checkpoints",
                                     param_hint="--checkpoints")
        marks += found
    return marks


def verify_file(export: Path, key: Path, checkpoints: list[Path] | None = None
                ) -> ExportReport:
    """Check an export offline (no database, no CA passphrase): the typed result of
    ``attestor audit verify --file``."""
    from attestor.audit_offline import verify_export_file

    try:
        return verify_export_file(export.read_bytes(), key.read_bytes(),
                                  _read_marks(checkpoints))
    except ValueError as exc:
        raise typer.BadParameter(f"{key}: {exc}", param_hint="--key") from exc


def verify_database(data_dir: Path, dev: bool | None, checkpoints: list[Path] | None = None
                    ) -> AuditReport:
    """Walk the database's chain (local mode: needs the data directory and its
    passphrase): the typed result of ``attestor audit verify``."""
    from attestor import audit

    marks = _read_marks(checkpoints)
    svc = _services(data_dir, dev)
    with svc.session() as session:
        return audit.verify(session, svc.keys.all_public(), marks)


def checkpoint_key(data_dir: Path, dev: bool | None) -> str:
    """The checkpoint public keys, PEM: the typed result of ``attestor audit key``."""
    from attestor.services.audit_export import checkpoint_keys_pem

    return checkpoint_keys_pem(_services(data_dir, dev))


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.__dict__))
        return
    # Problems quote what the file or database held: text, never markup.
    out.print(f"entries {report.entries}, last {report.last_seq}, checkpoints "
              f"{report.checkpoints} (+{report.external_checkpoints} from sinks), "
              f"anchored to {report.anchored_seq}"
              + (f", pruned up to {report.base_seq} (the chain starts after its signed "
                 "checkpoint)" if report.base_seq else ""))
    for problem in report.problems:
        out.print(f"[red]{escape(str(problem['code']))}[/] at {escape(str(problem['seq']))}: "
                  f"{escape(str(problem['detail']))}", highlight=False)
    signed = getattr(report, "export_signed", None)
    if signed:  # an export whose last line verified (attestor/audit_offline.py)
        exported = escape(str(getattr(report, "exported_at", "")))
        if getattr(report, "complete", True):
            out.print(f"export signed by the attestor at {exported}: the file is as "
                      f"exported, the whole log up to entry {report.last_seq}")
        else:
            out.print(f"export signed by the attestor at {exported}: the file is as "
                      f"exported, but [yellow]FILTERED[/]: only the {report.entries} "
                      "matching entries, each checked on its own; what it leaves out and "
                      "the chain between entries are not proven (export unfiltered for a "
                      "chain proof)")
    if not report.ok:
        out.print("[bold red]TAMPERED[/]")
    elif report.unanchored_entries:
        since = f" since {escape(str(report.unanchored_since))}" \
            if report.unanchored_since else ""
        out.print(f"[green]intact[/] up to {report.anchored_seq}; [yellow]"
                  f"{report.unanchored_entries} unanchored[/] entries{since} "
                  "(not yet covered by a signed "
                  "checkpoint: consistent, but a writer with database access could have "
                  "rewritten them before they were read)")
    else:
        out.print("[green]intact[/]")


ExistingFile: dict[str, Any] = {"exists": True, "dir_okay": False}


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
    as_json: Json = False,
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoints", metavar="FILE", help="a sink's copy of the signed checkpoints (the "
        "file sink, saved webhook bodies or syslog lines); repeatable", **ExistingFile)]
    = None,
    file: Annotated[Path | None, typer.Option(
        "--file", metavar="EXPORT", help="check this export (JSON Lines from `attestor audit "
        "export` or GET /v1/audit/export) offline: no database, no CA passphrase; needs "
        "--key", **ExistingFile)] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", metavar="PEM", help="the checkpoint public keys (`attestor audit key`, GET "
        "/v1/audit/checkpoint-key)", **ExistingFile)] = None,
) -> None:
    """Walk the chain; exit 1 if any entry was edited, deleted, reordered or truncated,
    or differs from a checkpoint a sink kept. Entries after the last valid checkpoint
    are reported as unanchored: consistent, but not proven. With --file and --key, an
    export is checked instead, offline: also exit 1 if any byte or line of the file was
    changed, removed, added or moved. With --server, the server walks its own chain."""
    from attestor.cli_remote import client

    if (file is None) != (key is None):
        raise typer.BadParameter("--file and --key go together")
    report: AuditReport
    if file is not None and key is not None:  # offline: never a server or a database
        report = verify_file(file, key, checkpoints)
    elif (api := client()) is not None:  # attestor/cli_audit_remote.py
        from attestor.cli_audit_remote import verify_remotely

        if checkpoints:
            raise typer.BadParameter("compared with a local chain only, not with --server",
                                     param_hint="--checkpoints")
        verify_remotely(api, as_json)
    else:
        report = verify_database(data_dir, dev, checkpoints)
    _print_report(report, as_json)
    raise typer.Exit(0 if report.ok else 1)


def export_locally(output: Path | None, data_dir: Path, dev: bool | None,
                   audit_filter: Any = None) -> int:
    """`attestor audit export` on the host: the log (or the entries matching
    ``audit_filter``) as JSON Lines with its signed checkpoints and a signed last line
    (docs/audit.md); `attestor audit verify --file` checks it anywhere. The line count."""
    import sys

    from attestor.db.queries import AuditFilter
    from attestor.services.audit_export import export_lines

    svc = _services(data_dir, dev)
    sink = writable(output) if output is not None else sys.stdout.buffer
    count = 0
    try:
        for line in export_lines(svc, audit_filter or AuditFilter()):
            sink.write(line)
            count += 1
    finally:
        if output is not None:
            sink.close()
        else:
            sink.flush()
    return count


@audit_app.command("checkpoint")
def audit_checkpoint(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Sign the chain's current head and send it to the checkpoint sinks (a running
    server does it before `audit_checkpoint_entries` or `audit_checkpoint_seconds` of
    unanchored entries)."""
    from attestor.services import checkpoints

    svc = _services(data_dir, dev)
    mark = checkpoints.sign(svc)
    out.print(f"checkpoint at {mark.seq}" if mark else "nothing new to sign")


@audit_app.command("prune")
def audit_prune(
    through_checkpoint: Annotated[int, typer.Option(
        "--through-checkpoint", metavar="SEQ", min=1, help="delete the entries up to this "
        "signed checkpoint's sequence number; it becomes the chain's anchor")],
    archive: Annotated[Path, typer.Option(
        "--archive", metavar="EXPORT", help="an unfiltered export (`attestor audit export "
        "--out`) holding those entries and that checkpoint: keep it, it is their only "
        "copy afterwards", **ExistingFile)],
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None, as_json: Json = False,
) -> None:
    """Delete the audit entries up to a signed checkpoint, on the attestor host only, once
    --archive is proven to hold them: a complete export that verifies with the attestor's
    keys, holds the checkpoint, and whose entries have the database's hashes. The
    checkpoint becomes the chain's anchor: `audit verify` and exports start there. Audited
    (audit.pruned, with the range and the archive's SHA-256). Refused, deleting nothing,
    with a reason code (exit 1) otherwise. Never run automatically (docs/audit.md)."""
    from attestor.cli_remote import client
    from attestor.services import audit_prune as pruning

    if client() is not None:
        raise typer.BadParameter("`attestor audit prune` runs on the attestor host (-d), "
                                 "where the archive is checked against the database; not "
                                 "with --server")
    svc = _services(data_dir, dev)
    try:
        done = pruning.prune(svc.session, svc.keys.all_public(), archive.read_bytes(),
                             through_checkpoint, now=svc.clock(), actor=cli_principal())
    except pruning.PruneRefused as exc:
        if as_json:
            print(json.dumps({"ok": False, "code": exc.code, "detail": exc.detail}))
        else:
            out.print(f"[red]{exc.code}[/]: {escape(exc.detail)}\nnothing pruned",
                      highlight=False)
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"ok": True, **done.as_dict()}))
    elif done.entries:
        out.print(f"pruned entries {done.from_seq}..{done.through_seq} ({done.deleted} rows, "
                  f"{done.checkpoints_deleted} checkpoints); the chain now starts after "
                  f"checkpoint {done.through_seq}; archive sha256 {done.archive_sha256}")
    else:
        out.print(f"finished an interrupted prune through {done.through_seq} "
                  f"({done.deleted} rows, {done.checkpoints_deleted} checkpoints)")
