"""`attestor`: run the attestation service and administer it (embedded setup)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from attestor.cli_admin import apikey_app, audit_app, keys_app, token_app
from attestor.cli_backup import backup_app
from attestor.cli_logs import ImaBank, eventlog_app, ima_app, read_ima_list
from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_secret import secret_app
from attestor.cli_tls import tls_app
from attestor.cli_verify import ekcert_app, quote_app
from attestor.origin import cli_principal
from attestor.settings import ConfigError, Settings, load_settings
from identity.errors import IdentityError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from attestor.services.context import Services



class _Commands(TyperGroup):
    """Every command's configuration and backend failures end with one line
    (``error: <code>: <message>``) and a non-zero exit, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        from contextlib import nullcontext

        import sqlalchemy as sa

        from attestor import origin

        # A command's audit entries carry the CLI's user agent; a server's carry their
        # requests' (each request binds its own; background jobs run in threads: none).
        cli = origin.command_line() if ctx.invoked_subcommand != "serve" else nullcontext()
        try:
            with cli:
                return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc), 2)
        except IdentityError as exc:
            fail_with(exc)
        except sa.exc.DBAPIError as exc:  # a failure after the database was opened
            from attestor.db.engine import database_error

            fail_with(database_error(exc))


app = typer.Typer(help="edgeproof attestor: attestation service and admin commands.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=_Commands)
trust_app = typer.Typer(help="The EK trust store (TPM-vendor CA certificates).",
                        no_args_is_help=True)
policy_app = typer.Typer(help="Reference policies per device class.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
device_app = typer.Typer(help="Enrolled devices.", no_args_is_help=True)
for sub, name in ((trust_app, "trust"), (policy_app, "policy"), (secret_app, "secret"),
                  (db_app, "db"), (device_app, "device"), (quote_app, "quote"),
                  (ekcert_app, "ekcert"), (eventlog_app, "eventlog"), (ima_app, "ima"),
                  (token_app, "token"), (apikey_app, "apikey"), (keys_app, "keys"),
                  (audit_app, "audit"), (backup_app, "backup"), (tls_app, "tls")):
    app.add_typer(sub, name=name)

out = Console()
err = Console(stderr=True)



def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, even in a log
    raise typer.Exit(code)


def fail_with(exc: IdentityError) -> NoReturn:
    fail(f"{exc.code}: {exc.detail}")


def settings_for(data_dir: Path, dev: bool | None = None, **overrides: object) -> Settings:
    try:
        return load_settings(data_dir, dev=dev or None, **overrides)
    except ConfigError as exc:
        fail(str(exc))


def services_for(data_dir: Path, dev: bool | None) -> Services:
    from attestor.services.context import build_services

    try:
        return build_services(settings_for(data_dir, dev))
    except ConfigError as exc:
        fail(str(exc))
    except IdentityError as exc:
        fail_with(exc)


def engine_for(data_dir: Path, dev: bool | None) -> sa.Engine:
    """An engine on the configured database, which must exist and answer."""
    from attestor.db.engine import open_engine

    return open_engine(settings_for(data_dir, dev).db_url)


@app.command()
def init(
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
    trust_domain: Annotated[str, typer.Option(help="SPIFFE trust domain")] = "edgeproof.local",
    ca_name: Annotated[str, typer.Option(help="CA common-name prefix")] = "edgeproof",
    exist_ok: Annotated[bool, typer.Option(
        "--exist-ok", help="a data directory that already holds an attestor is left as it "
        "is, exit 0 (a container's init step)")] = False,
) -> None:
    """Create a data directory: database (SQLite in the data directory unless
    EDGEPROOF_DATABASE_URL names one; recorded in attestor.toml), local two-level CA,
    secret-store key. The only command that creates a database."""
    from sqlalchemy import make_url

    from attestor.db.engine import shown
    from attestor.services.context import utc_now
    from attestor.setup import initialise

    if (data_dir / "ca" / "root.pem").exists():
        if exist_ok:
            out.print(f"{data_dir} already holds an attestor; left as it is")
            return
        fail(f"{data_dir} already holds an attestor; refusing to overwrite it")
    settings = settings_for(data_dir, dev, trust_domain=trust_domain)
    initialise(settings, utc_now(), ca_name)
    out.print(f"[green]initialised[/] {data_dir} (database {shown(settings.db_url)}, CA in "
              f"{settings.ca_dir}, trust store {settings.trust_dir})")
    if make_url(settings.db_url).password is not None:
        out.print("[yellow]the database password is not recorded:[/] every command needs it "
                  "in EDGEPROOF_DATABASE_URL, or in PGPASSWORD or a PGPASSFILE")


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    log_format: Annotated[str, typer.Option(help="json (one object per line) or console")]
    = "json",
    tls_cert: Annotated[Path | None, typer.Option(
        help="serve HTTPS with this certificate, PEM, chain after it (tls.cert_file)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="the certificate's private key (PEM) (tls.key_file)")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="require client certificates from this CA (tls.client_ca_file)")] = None,
    insecure_http: Annotated[bool | None, typer.Option(
        "--insecure-http", help="serve plain HTTP because a proxy in front terminates TLS "
        "(tls.insecure_http)", show_default=False)] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="also serve GET /metrics, without credentials, on this port (metrics.port)")
    ] = None,
    metrics_host: Annotated[str | None, typer.Option(
        help="listen address of the metrics port (default: the API's)")] = None,
) -> None:
    """Run the attestor's API under uvicorn (JSON logs with request ids): HTTPS with
    --tls-cert/--tls-key, plain HTTP only with --insecure-http or --dev."""
    import uvicorn

    from attestor.app import create_app
    from attestor.observability import configure_logging
    from attestor.services.context import build_services, utc_now
    from attestor.serving import uvicorn_tls_options

    given = {"cert_file": tls_cert, "key_file": tls_key, "client_ca_file": tls_client_ca,
             "insecure_http": insecure_http}
    tls = {k: v for k, v in given.items() if v is not None}
    metrics = {k: v for k, v in (("port", metrics_port), ("host", metrics_host)) if v}
    settings = settings_for(data_dir, dev, host=host, port=port, tls=tls or None,
                            metrics=metrics or None)
    try:
        tls_options = uvicorn_tls_options(settings, utc_now())
        services = build_services(settings)
    except ConfigError as exc:
        fail(str(exc))
    except IdentityError as exc:
        fail_with(exc)
    if services.trust.rejected:
        for source, why in services.trust.rejected:
            err.print(f"[yellow]trust store:[/] skipped {source}: {why}")
    configure_logging(json=log_format != "console")
    if settings.metrics.port is not None:
        start_metrics_listener(services)
    uvicorn.run(create_app(services), host=settings.host, port=settings.port,
                log_level="info", access_log=False, log_config=None,
                timeout_keep_alive=15, timeout_graceful_shutdown=20,
                proxy_headers=False,  # only settings.trusted_proxies name clients
                **tls_options)


def start_metrics_listener(services: Services) -> None:
    """The unauthenticated metrics port (attestor/api/metrics_listener.py says why)."""
    import structlog

    from attestor.api.metrics_listener import MetricsListener

    settings = services.settings
    host, port = settings.metrics_host, settings.metrics.port or 0
    try:
        MetricsListener(services.metrics.registry, host, port).start()
    except OSError as exc:
        fail(f"cannot listen for metrics on {host}:{port}: {exc.strerror or exc}")
    shown = f"[{host}]" if ":" in host else host
    structlog.get_logger("attestor.metrics").info(
        "metrics listener (GET /metrics, no credential)", url=f"http://{shown}:{port}/metrics")


@db_app.command("upgrade")
def db_upgrade(
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
    create: Annotated[bool, typer.Option(
        "--create", help="create the SQLite database if it does not exist (a data directory "
        "whose CA came from elsewhere, not from `attestor init`)")] = False,
) -> None:
    """Apply database migrations up to the current schema. The database must exist
    (`attestor init` creates it) unless --create is given."""
    from attestor.db.engine import check, current_revision, make_engine, upgrade

    if create:
        engine = make_engine(settings_for(data_dir, dev).db_url, create=True)
        check(engine)
    else:
        engine = engine_for(data_dir, dev)
    upgrade(engine)
    out.print(f"database at revision {current_revision(engine)}")


@trust_app.command("add")
def trust_add(files: list[Path], data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Import TPM-vendor root or intermediate CA certificates (PEM or DER).

    Running attestors use them from their next enrollment, without a restart; to
    withdraw a vendor, remove its file from the data directory's trust/ek-roots/."""
    from attestor.trust import audit_import, import_certificates

    settings = settings_for(data_dir, dev)
    refused = import_certificates(files, settings.trust_dir)
    audit_import(engine_for(data_dir, dev), files, refused, cli_principal(),
                 dt.datetime.now(dt.UTC))
    for path, why in refused:
        err.print(f"[yellow]refused[/] {path}: {why}")
    out.print(f"imported {len(files) - len(refused)} of {len(files)} file(s)")
    if refused:
        raise typer.Exit(1)


@trust_app.command("list")
def trust_list(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Show the trust store's roots and intermediates, and files it could not load."""
    from attestor.trust import load_trust_store

    store = load_trust_store(settings_for(data_dir, dev).trust_dir)
    table = Table("kind", "subject", "not after")
    for kind, certs in (("root", store.roots), ("intermediate", store.intermediates)):
        for cert in certs:
            table.add_row(kind, cert.subject.rfc4514_string(), str(cert.not_valid_after_utc))
    out.print(table)
    for source in store.normalized:
        err.print(f"[yellow]re-encoded[/] {source}: root with non-DER names, trusted as re-encoded")
    for source, why in store.rejected:
        err.print(f"[yellow]not loaded[/] {source}: {why}")


@policy_app.command("learn")
def policy_learn(
    device: Annotated[str | None, typer.Option(
        help="device whose last verified attestation is known-good")] = None,
    eventlog: Annotated[Path | None, typer.Option(
        help="a known-good firmware event log (binary) to learn the boot policy from")] = None,
    ima: Annotated[Path | None, typer.Option(
        help="a known-good IMA measurement list to learn the allowlist from")] = None,
    ascii_ima: Annotated[bool, typer.Option("--ascii", help="the IMA list is ASCII")] = False,
    list_bank: ImaBank = None,
    device_class: Annotated[str | None, typer.Option(
        "--class", help="device class (default: the device's)")] = None,
    golden: Annotated[bool, typer.Option(help="golden PCRs from the device's quote")] = True,
    secret: Annotated[list[str] | None, typer.Option(
        help="also grant this secret on a pass (repeatable)")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """New policy version learned from a known-good device and/or known-good logs."""
    from attestor.services.policies import LearnSources, learn_policy

    svc = services_for(data_dir, dev)
    try:
        entries = None
        if ima is not None:
            entries = read_ima_list(ima, ascii_ima, list_bank)[0]
        sources = LearnSources(device_id=device, golden=golden,
                               event_log=eventlog.read_bytes() if eventlog else None,
                               ima_entries=entries, grant=tuple(secret or ()))
        with svc.session() as session, session.begin():
            policy, evidence = learn_policy(session, device_class, sources, cli_principal(),
                                            svc.clock())
    except IdentityError as exc:
        fail(exc.detail)
    except OSError as exc:
        fail(str(exc))
    origin = (f" from attestation #{evidence.id} at {evidence.at:%Y-%m-%d %H:%M:%S}Z"
              if evidence is not None else "")
    out.print(f"[green]policy[/] class={policy.device_class} version={policy.version} "
              f"learned{origin}")
    document = dict(policy.document)
    if document.get("ima"):
        allow = document["ima"].get("allowlist", {})
        document["ima"] = {**document["ima"], "allowlist": f"{len(allow)} paths"}
    out.print_json(json.dumps(document))


@policy_app.command("show")
def policy_show(
    device_class: Annotated[str, typer.Option("--class", help="device class")] = "default",
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """Print the policy in force for a device class."""
    from sqlmodel import Session

    from attestor.db import queries

    with Session(engine_for(data_dir, dev)) as session:
        row = queries.current_policy(session, device_class)
    if row is None:
        fail(f"no policy for class {device_class!r} (learn one with `attestor policy learn`)")
    out.print(f"class={row.device_class} version={row.version} by={row.created_by}")
    out.print_json(json.dumps(row.document))


@policy_app.command("set")
def policy_set(
    file: Annotated[Path, typer.Argument(help="policy document (JSON)")],
    device_class: Annotated[str, typer.Option("--class", help="device class")] = "default",
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """Store a policy document as the class's next version."""
    from attestor.services.policies import set_policy
    from identity.policy import parse_policy

    svc = services_for(data_dir, dev)
    try:
        document = parse_policy(json.loads(file.read_text()))
    except (OSError, ValueError, IdentityError) as exc:
        fail(f"{file}: {exc}")
    with svc.session() as session, session.begin():
        policy = set_policy(session, device_class, document, cli_principal(), svc.clock())
    out.print(f"[green]policy[/] class={device_class} version={policy.version}")


@app.command("ca")
def ca_export(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Print the CA trust anchor (PEM) that relying parties and agents need."""
    sys.stdout.write((settings_for(data_dir, dev).ca_dir / "root.pem").read_text())


@device_app.command("list")
def device_list(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Enrolled devices with their last verdict."""
    from sqlmodel import Session

    from attestor.db import queries

    with Session(engine_for(data_dir, dev)) as session:
        devices = queries.list_devices(session, limit=1000)
    table = Table("device", "serial", "class", "state", "last verdict", "last attested")
    for d in devices:
        table.add_row(d.id, d.serial or "", d.device_class, d.state, d.last_verdict or "",
                      str(d.last_attested_at or ""))
    out.print(table)


@device_app.command("show")
def device_show(device_id: str, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """One device and its recent attestations with their reason codes."""
    from sqlmodel import Session

    from attestor.db import queries

    with Session(engine_for(data_dir, dev)) as session:
        try:
            device = queries.get_device(session, device_id)
        except IdentityError as exc:
            fail(exc.detail)
        history = queries.attestations_for(session, device_id, limit=20)
    out.print(f"{device.id} serial={device.serial} class={device.device_class} "
              f"state={device.state} enrolled={device.enrolled_at:%Y-%m-%d %H:%M:%S}Z")
    table = Table("at", "verdict", "reasons", "policy", "certificate")
    for a in history:
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.verdict, ", ".join(a.reasons),
                      str(a.policy_version or ""), a.certificate_serial or "")
    out.print(table)


def main() -> None:
    """Entry point: configuration and backend problems end with one clear line, not a
    traceback (the commands' group, :class:`_Commands`, says it)."""
    app()


if __name__ == "__main__":
    main()
