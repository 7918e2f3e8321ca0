"""`attestor ownership`: manufacturer roots and ownership records for zero-touch
onboarding (docs/onboarding.md), against a server (--server; the audit log names the
token's subject) or on the data directory (``cli:user@host``). Every change is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_remote import Output, client, emit, emit_result, out, rows, when
from attestor.models.ownership import ImportResult, OwnershipPublic, RootPublic
from attestor.origin import cli_principal

ownership_app = typer.Typer(help="Zero-touch onboarding: manufacturer roots, owned serials.",
                            no_args_is_help=True)
Class = Annotated[str, typer.Option("--class", help="device class the devices join")]
State = Annotated[str | None, typer.Option(help="owned, onboarded or revoked",
                                           show_default=False)]
Limit = Annotated[int, typer.Option(help="at most this many")]


def _services(data_dir: Path, dev: bool | None) -> Any:
    from attestor.cli import services_for

    return services_for(data_dir, dev)


def _imported(output: Output, result: ImportResult) -> None:
    emit_result(output, result, lambda: out.print(
        f"{result.created} created, {result.updated} updated"
        + (f"; already onboarded (kept): {', '.join(result.already_onboarded)}"
           if result.already_onboarded else "")
        + (f"; revoked (kept): {', '.join(result.kept_revoked)}"
           if result.kept_revoked else "")
        + (f"; owned with another IDevID or root (kept): "
           f"{', '.join(result.kept_conflicting)}"
           if result.kept_conflicting else "")))


def _root_rows(roots: list[RootPublic]) -> None:
    rows(("kind", "sha256", "subject", "imported by", "imported at"),
         (("root" if r.is_root else "intermediate", r.sha256, r.subject, r.imported_by,
           when(r.imported_at)) for r in roots))


@ownership_app.command("import-roots")
def import_roots(files: Annotated[list[Path], typer.Argument(
        help="PEM files with the manufacturer's root (and issuing) CA certificates")],
        output: Output = None, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Trust a manufacturer's CA certificates for IAK/IDevID chains and manifests (admin)."""
    pem = b"".join(f.read_bytes() for f in files)
    api = client()
    if api is not None:
        with api:
            added = api.import_ownership_roots(pem.decode("ascii", "replace"))
    else:
        from attestor.services import ownership

        added = [RootPublic.model_validate(r) for r in
                 ownership.import_roots(_services(data_dir, dev), pem, cli_principal())]

    def table() -> None:
        if added:
            _root_rows(added)
        out.print(f"{len(added)} certificate(s) added")
    emit_result(output, added, table)


@ownership_app.command("roots")
def list_roots(output: Output = None, data_dir: DataDir = DEFAULT_DIR,
               dev: Dev = None) -> None:
    """The manufacturer CA certificates this attestor trusts (auditor)."""
    api = client()
    if api is not None:
        with api:
            roots = api.ownership_roots()
    else:
        from attestor.db import ownership_queries as q

        with _services(data_dir, dev).session() as session:
            roots = [RootPublic.model_validate(r) for r in q.roots(session)]
    emit(output, roots, lambda: _root_rows(roots))


@ownership_app.command("remove-root")
def remove_root(sha256: Annotated[str, typer.Argument(help="SHA-256 of the certificate")],
                data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Stop trusting a manufacturer CA certificate; serials bound to it stay bound and
    cannot onboard until it is imported again (admin)."""
    api = client()
    if api is not None:
        with api:
            api.remove_ownership_root(sha256)
    else:
        from attestor.services import ownership

        ownership.remove_root(_services(data_dir, dev), sha256, cli_principal())
    out.print(f"{sha256}: removed")


@ownership_app.command("import-manifest")
def import_manifest(manifest: Annotated[Path, typer.Argument(help="signed batch manifest")],
                    device_class: Class = "default", output: Output = None,
                    data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Own every device of an OEM's signed batch manifest (signature checked; admin)."""
    api = client()
    if api is not None:
        with api:
            result = api.import_manifest(manifest.read_text(), device_class)
    else:
        from attestor.services import ownership

        result = ImportResult.model_validate(ownership.import_manifest(
            _services(data_dir, dev), manifest.read_bytes(), device_class, cli_principal()))
    _imported(output, result)


@ownership_app.command("import-csv")
def import_csv(csv: Annotated[Path, typer.Argument(help="serials, one per line")],
               root: Annotated[str, typer.Option(
                   "--root", metavar="SHA256", help="SHA-256 of the imported manufacturer "
                   "root these devices chain to (see `ownership roots`)")],
               device_class: Class = "default", output: Output = None,
               data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Own the serials of a CSV (first column; a `serial` header is skipped), bound to
    one manufacturer root (admin)."""
    api = client()
    if api is not None:
        with api:
            result = api.import_serials(csv.read_text(), root, device_class)
    else:
        from attestor.services import ownership

        result = ImportResult.model_validate(ownership.import_csv(
            _services(data_dir, dev), csv.read_text(), device_class, cli_principal(),
            root))
    _imported(output, result)


@ownership_app.command("list")
def list_records(state: State = None, limit: Limit = 1000, output: Output = None,
                 data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Ownership records, by serial (auditor)."""
    api = client()
    if api is not None:
        with api:
            records = list(api.iter_ownership(state=state, max_items=limit))
    else:
        from attestor.db import ownership_queries as q

        with _services(data_dir, dev).session() as session:
            records = [OwnershipPublic.model_validate(r)
                       for r in q.page(session, state, None, limit)]
    emit(output, records, lambda: rows(
        ("serial", "class", "state", "root", "device", "batch", "changed"),
        ((r.serial, r.device_class, r.state, (r.root_sha256 or "unbound")[:16],
          r.device_id, r.batch, when(r.changed_at))
         for r in records)))


def _change(action: str, summary: str, done: str) -> None:
    def command(serial: str, output: Output = None, data_dir: DataDir = DEFAULT_DIR,
                dev: Dev = None) -> None:
        api = client()
        if api is not None:
            with api:
                record = (api.revoke_ownership(serial) if action == "revoke"
                          else api.release_ownership(serial))
        else:
            from attestor.services import ownership

            change = ownership.revoke if action == "revoke" else ownership.release
            record = OwnershipPublic.model_validate(
                change(_services(data_dir, dev), serial, cli_principal()))
        emit_result(output, record, lambda: out.print(f"{record.serial}: {done}"))

    command.__doc__ = summary
    ownership_app.command(action)(command)


_change("revoke", "This serial may never onboard (again) (admin).", "revoked")
_change("release", "An onboarded (or revoked) serial may onboard once more (admin).",
        "owned again; it may onboard once more")
