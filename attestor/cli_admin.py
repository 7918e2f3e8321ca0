"""`attestor token`, `attestor apikey`, `attestor keys`, `attestor audit`: credentials and
the audit log from the attestor host."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from attestor.auth import ROLES
from attestor.cli_options import DEFAULT_DIR, DataDir, Dev, Json
from attestor.cli_remote import Output, emit, rows

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
    """Mint a bearer token (printed on stdout; the attestor keeps no copy)."""
    from attestor.auth.tokens import local_issuer, mint

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    svc = _services(data_dir, dev)
    token = mint(svc.signer, local_issuer(svc.settings.trust_domain), role=role,
                 subject=subject, ttl=parse_duration(ttl), now=svc.clock())
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
        audit.append(session, at=svc.clock(), actor="cli", action="apikey.create",
                     outcome="done", subject=f"apikey:{key.split('_')[1]}",
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
        audit.append(session, at=svc.clock(), actor="cli", action="apikey.revoke",
                     outcome="done", subject=f"apikey:{key_id}")
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
        audit.append(session, at=now, actor="cli", action="keys.rotate", outcome="ok",
                     subject=kid, details={"retired": retired})
    out.print(f"active signing key {kid}; retired {', '.join(retired) or 'none'}")


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
    as_json: Json = False,
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoints", metavar="FILE", help="a sink's copy of the signed checkpoints (the "
        "file sink, saved webhook bodies or syslog lines); repeatable", exists=True,
        dir_okay=False)]
    = None,
) -> None:
    """Walk the chain; exit 1 if any entry was edited, deleted, reordered or truncated,
    or differs from a checkpoint a sink kept. Entries after the last valid checkpoint
    are reported as unanchored: consistent, but not proven."""
    from attestor import audit
    from attestor.cli_remote import client

    api = client()
    if api is not None:  # the server walks its own chain (attestor/cli_audit_remote.py)
        from attestor.cli_audit_remote import verify_remotely

        if checkpoints:
            raise typer.BadParameter("compared with a local chain only, not with --server",
                                     param_hint="--checkpoints")
        verify_remotely(api, as_json)
    marks: list[audit.Mark] = []
    for path in checkpoints or []:
        found, unreadable = audit.read_checkpoints(path.read_text(errors="replace")
                                                   .splitlines())
        if unreadable:
            raise typer.BadParameter(f"{path}: lines {unreadable[:10]} are not checkpoints",
                                     param_hint="--checkpoints")
        marks += found
    svc = _services(data_dir, dev)
    with svc.session() as session:
        report = audit.verify(session, svc.keys.all_public(), marks)
    if as_json:
        print(json.dumps(report.__dict__))
    else:
        out.print(f"entries {report.entries}, last {report.last_seq}, checkpoints "
                  f"{report.checkpoints} (+{report.external_checkpoints} from sinks), "
                  f"anchored to {report.anchored_seq}")
        for problem in report.problems:
            out.print(f"[red]{problem['code']}[/] at {problem['seq']}: {problem['detail']}")
        if not report.ok:
            out.print("[bold red]TAMPERED[/]")
        elif report.unanchored_entries:
            out.print(f"[green]intact[/] up to {report.anchored_seq}; [yellow]"
                      f"{report.unanchored_entries} unanchored[/] entries since "
                      f"{report.unanchored_since} (not yet covered by a signed checkpoint: "
                      "not verified)")
        else:
            out.print("[green]intact[/]")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("checkpoint")
def audit_checkpoint(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Sign the chain's current head and send it to the checkpoint sinks (a running
    server does it before `audit_checkpoint_entries` or `audit_checkpoint_seconds` of
    unanchored entries)."""
    from attestor.services import checkpoints

    svc = _services(data_dir, dev)
    mark = checkpoints.sign(svc)
    out.print(f"checkpoint at {mark.seq}" if mark else "nothing new to sign")
