"""`attestor ownership`: manufacturer roots and ownership records for zero-touch
onboarding, from the attestor host (each change audited with actor ``cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from identity.errors import IdentityError

ownership_app = typer.Typer(help="Zero-touch onboarding: manufacturer roots, owned serials.",
                            no_args_is_help=True)
out = Console()
err = Console(stderr=True)
ACTOR = "cli"
Class = Annotated[str, typer.Option("--class", help="device class the devices join")]


def _services(data_dir: Path, dev: bool | None):  # type: ignore[no-untyped-def]
    from attestor.cli import services_for

    return services_for(data_dir, dev)


def _refused(exc: IdentityError) -> typer.Exit:
    err.print(f"[bold red]refused[/] ({exc.code}): {exc.detail}")
    return typer.Exit(3)


@ownership_app.command("import-roots")
def import_roots(files: Annotated[list[Path], typer.Argument(
        help="PEM files with the manufacturer's root (and issuing) CA certificates")],
        data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Trust a manufacturer's CA certificates for IAK/IDevID chains and manifests."""
    from attestor.services import ownership

    try:
        rows = ownership.import_roots(_services(data_dir, dev),
                                      b"".join(f.read_bytes() for f in files), ACTOR)
    except IdentityError as exc:
        raise _refused(exc) from exc
    for row in rows:
        out.print(f"{'root' if row.is_root else 'intermediate'} {row.sha256} {row.subject}")
    out.print(f"{len(rows)} certificate(s) added")


@ownership_app.command("import-manifest")
def import_manifest(manifest: Annotated[Path, typer.Argument(help="signed batch manifest")],
                    device_class: Class = "default", data_dir: DataDir = DEFAULT_DIR,
                    dev: Dev = None) -> None:
    """Own every device of an OEM's signed batch manifest (signature checked)."""
    from attestor.services import ownership

    try:
        result = ownership.import_manifest(_services(data_dir, dev), manifest.read_bytes(),
                                           device_class, ACTOR)
    except IdentityError as exc:
        raise _refused(exc) from exc
    out.print(result)


@ownership_app.command("import-csv")
def import_csv(csv: Annotated[Path, typer.Argument(help="serials, one per line")],
               device_class: Class = "default", data_dir: DataDir = DEFAULT_DIR,
               dev: Dev = None) -> None:
    """Own the serials of a CSV (first column; a `serial` header is skipped)."""
    from attestor.services import ownership

    try:
        result = ownership.import_csv(_services(data_dir, dev), csv.read_text(), device_class,
                                      ACTOR)
    except IdentityError as exc:
        raise _refused(exc) from exc
    out.print(result)


@ownership_app.command("list")
def list_records(state: Annotated[str | None, typer.Option(
        help="owned, onboarded or revoked")] = None,
        data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Ownership records, by serial."""
    from attestor.db import ownership_queries as q

    svc = _services(data_dir, dev)
    table = Table("serial", "class", "state", "device", "batch")
    with svc.session() as session:
        for row in q.page(session, state, None, 1000):
            table.add_row(row.serial, row.device_class, row.state, row.device_id or "",
                          row.batch or "")
    out.print(table)


@ownership_app.command("revoke")
def revoke(serial: str, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """This serial may never onboard (again)."""
    from attestor.services import ownership

    try:
        ownership.revoke(_services(data_dir, dev), serial, ACTOR)
    except IdentityError as exc:
        raise _refused(exc) from exc
    out.print(f"{serial}: revoked")


@ownership_app.command("release")
def release(serial: str, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """An onboarded (or revoked) serial may onboard once more."""
    from attestor.services import ownership

    try:
        ownership.release(_services(data_dir, dev), serial, ACTOR)
    except IdentityError as exc:
        raise _refused(exc) from exc
    out.print(f"{serial}: owned again; it may onboard once more")
