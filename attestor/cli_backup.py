"""`attestor backup create|verify|restore`: the data directory (and a SQLite database) in one
file, checked by hash before anything is restored (attestor/backup.py, docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.origin import cli_principal

backup_app = typer.Typer(help="Back up and restore the data directory (CA and store keys, "
                         "settings, trust store, SQLite database).", no_args_is_help=True)
out = Console()


@backup_app.command("create")
def backup_create(
    out_file: Annotated[Path, typer.Option("--out", help="the backup file to write (new)")],
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """Write a backup while the attestor keeps serving (SQLite online backup API)."""
    from attestor import audit
    from attestor.backup import BackupError, create
    from attestor.cli import fail, services_for

    svc = services_for(data_dir, dev)
    now = svc.clock()
    with svc.session() as session, session.begin():  # the backup holds its own record
        audit.append(session, at=now, actor=cli_principal(), action="backup.create",
                     outcome="success",
                     subject=str(out_file))
    try:
        report = create(svc.settings, out_file, now)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    out.print(f"[green]backup[/] {report.path}: {len(report.files)} files (0600)")
    if report.database == "postgresql":
        out.print("[yellow]the database is PostgreSQL and is not in this file:[/] back it up "
                  "with pg_dump (docs/deploy.md)")


@backup_app.command("verify")
def backup_verify(archive: Path) -> None:
    """Check every file of a backup against its manifest; exit 1 on any mismatch."""
    from attestor.backup import BackupError, verify
    from attestor.cli import fail

    try:
        manifest, blobs = verify(archive)
    except BackupError as exc:
        fail(str(exc))
    out.print(f"[green]intact[/] {archive}: {len(blobs)} files, database "
              f"{manifest.get('database')}, made {manifest.get('created_at')}")


@backup_app.command("restore")
def backup_restore(archive: Path, data_dir: DataDir = DEFAULT_DIR) -> None:
    """Restore a verified backup into a new data directory (never over an existing one)."""
    from attestor.backup import BackupError, restore
    from attestor.cli import fail

    try:
        manifest = restore(archive, data_dir)
    except (BackupError, OSError) as exc:
        fail(str(exc))
    out.print(f"[green]restored[/] {archive} into {data_dir}")
    if manifest.get("database") == "postgresql":
        out.print("[yellow]restore the PostgreSQL database with pg_restore, then[/] "
                  "`attestor audit verify`")
    else:
        out.print("check it: `attestor audit verify -d " + str(data_dir) + "`")
