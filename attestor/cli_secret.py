"""`attestor secret`: the embedded secret store (put, get, list, rotate-key), from the
attestor host. Every change is audited by name and version, never by value. With
``secrets.backend = "vault"`` secrets live in Vault and are managed there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_remote import Output, emit, rows
from identity.errors import IdentityError

if TYPE_CHECKING:
    from attestor.backends.secrets.embedded import EmbeddedSecretStore
    from attestor.services.context import Services

secret_app = typer.Typer(help="The embedded secret store (values AES-256-GCM encrypted in "
                         "the database).", no_args_is_help=True)
out = Console()


def _store(data_dir: Path, dev: bool | None) -> tuple[Services, EmbeddedSecretStore]:
    from attestor.backends.secrets.embedded import EmbeddedSecretStore
    from attestor.cli import fail, services_for

    svc = services_for(data_dir, dev)
    if not isinstance(svc.secrets, EmbeddedSecretStore):
        fail("secrets.backend is vault: manage secrets in Vault (see docs/vault.md)")
    return svc, svc.secrets


def _audit(svc: Services, action: str, subject: str, details: dict[str, object]) -> None:
    from attestor import audit

    with svc.session() as session, session.begin():
        audit.append(session, at=svc.clock(), actor="cli", action=action, outcome="ok",
                     subject=subject, details=details)


@secret_app.command("put")
def secret_put(
    name: str,
    value: Annotated[str | None, typer.Option(help="value (prefer --from-file or stdin)")] = None,
    from_file: Annotated[Path | None, typer.Option(help="read the value from a file")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """Store a new version of a secret (value from --value, --from-file or stdin)."""
    from attestor.cli import fail

    if value is not None and from_file is not None:
        fail("give --value or --from-file, not both")
    svc, store = _store(data_dir, dev)
    try:
        data = (value.encode() if value is not None
                else from_file.read_bytes() if from_file is not None
                else sys.stdin.buffer.read())
        version = store.put(name, data, svc.clock())
    except OSError as exc:
        fail(f"cannot read the value: {exc.strerror}")
    except IdentityError as exc:
        fail(exc.detail)
    _audit(svc, "secret.put", f"secret:{name}", {"name": name, "version": version})
    out.print(f"[green]stored[/] {name} version {version} ({len(data)} bytes)")


@secret_app.command("get")
def secret_get(name: str, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Write the latest value of a secret to stdout (raw bytes; audited)."""
    from attestor.cli import fail

    svc, store = _store(data_dir, dev)
    try:
        value = store.read(name)
    except IdentityError as exc:
        fail(exc.detail)
    if value is None:
        fail(f"no secret named {name!r}")
    _audit(svc, "secret.get", f"secret:{name}", {"name": name, "version": value.version})
    sys.stdout.buffer.write(value.value)
    sys.stdout.buffer.flush()


@secret_app.command("list")
def secret_list(output: Output = None, data_dir: DataDir = DEFAULT_DIR,
                dev: Dev = None) -> None:
    """Secret names and latest versions (never values)."""
    _, store = _store(data_dir, dev)
    names = [{"name": name, "version": version} for name, version in store.names()]
    emit(output, names, lambda: rows(("name", "version"),
                                     ((n["name"], n["version"]) for n in names)))


@secret_app.command("rotate-key")
def secret_rotate_key(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Re-encrypt every stored version under a new key and replace the key file.

    Crash-safe: the new key is staged as <key>.next, the re-encryption is one
    transaction, the rename comes last; rerun after an interruption to finish.
    Running replicas pick the new key up on their next read."""
    from attestor.cli import fail

    svc, store = _store(data_dir, dev)
    old = store.key_id
    try:
        count = store.rotate_key(svc.settings.secret_key_file)
    except (IdentityError, OSError) as exc:
        fail(str(exc))
    _audit(svc, "secret.rotate_key", "secret-store", {"old_key_id": old,
                                                     "new_key_id": store.key_id,
                                                     "reencrypted": count})
    out.print(f"[green]rotated[/] key {old} -> {store.key_id}: {count} version(s) "
              "re-encrypted")
