"""`attestor`: run the attestation service and administer it (embedded setup)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from attestor.cli_admin import apikey_app, audit_app, keys_app, token_app
from attestor.cli_audit_remote import register as register_remote_audit
from attestor.cli_backup import backup_app
from attestor.cli_fleet import certificates_app, device_app, gate_app
from attestor.cli_logs import eventlog_app, ima_app
from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_ownership import ownership_app
from attestor.cli_policy import policy_app, trust_app
from attestor.cli_remote import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    RootOptions,
    err,
    out,
    set_root_options,
)
from attestor.cli_remote import fail as fail  # other command modules use cli.fail
from attestor.cli_secret import secret_app
from attestor.cli_tls import tls_app
from attestor.cli_verify import ekcert_app, quote_app
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
        from attestor.client import ApiError, ClientError, TransportError

        # A command's audit entries carry the CLI's user agent; a server's carry their
        # requests' (each request binds its own; background jobs run in threads: none).
        cli = origin.command_line() if ctx.invoked_subcommand != "serve" else nullcontext()
        try:
            with cli:
                return super().invoke(ctx)
        except ApiError as exc:  # the server's problem, with its code
            fail(f"{exc.code}: {exc.detail} (HTTP {exc.status})")
        except TransportError as exc:
            fail(f"{exc.code}: {exc.detail}", EXIT_UNREACHABLE)
        except ClientError as exc:  # the command line, environment or config file
            fail(f"{exc.code}: {exc.detail}", EXIT_USAGE)
        except ConfigError as exc:
            fail(str(exc), 2)
        except IdentityError as exc:
            fail_with(exc)
        except sa.exc.DBAPIError as exc:  # a failure after the database was opened
            from attestor.db.engine import database_error

            fail_with(database_error(exc))


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, cls=_Commands)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
for sub, name in ((trust_app, "trust"), (policy_app, "policy"), (secret_app, "secret"),
                  (db_app, "db"), (device_app, "device"), (quote_app, "quote"),
                  (ekcert_app, "ekcert"), (eventlog_app, "eventlog"), (ima_app, "ima"),
                  (token_app, "token"), (apikey_app, "apikey"), (keys_app, "keys"),
                  (audit_app, "audit"), (backup_app, "backup"), (tls_app, "tls"),
                  (certificates_app, "certificates"), (gate_app, "gate"),
                  (ownership_app, "ownership")):
    app.add_typer(sub, name=name)
register_remote_audit(audit_app)


# Bootstrap, the host's secrets and offline file tools (docs/cli.md): never remote.
LOCAL_ONLY = {"init", "serve", "db", "token", "apikey", "keys", "secret", "tls", "backup",
              "ca", "quote", "ekcert", "eventlog", "ima"}


@app.callback()
def connect(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(
        help="the attestor's URL: operator commands then work against it, not on a data "
        "directory (env EDGEPROOF_SERVER; docs/cli.md)", show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        help="bearer token for --server (env EDGEPROOF_TOKEN; prefer it or a profile: a "
        "flag shows in the process list)", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option(
        help="a profile of ~/.config/edgeproof/cli.toml (env EDGEPROOF_PROFILE)",
        show_default=False)] = None,
    ca_bundle: Annotated[Path | None, typer.Option(
        help="CA certificates (PEM) that verify the server's TLS certificate (env "
        "EDGEPROOF_CA_BUNDLE; default: the system's)", show_default=False)] = None,
) -> None:
    """edgeproof attestor: attestation service and admin commands.

    Operator commands (device, policy, trust, certificates, gate, audit, ownership) work
    against a server with --server and a token, or locally on a data directory (-d) when
    no server is named; bootstrap commands (init, db, token, apikey, keys, secret, tls, backup,
    serve) are local only. docs/cli.md lists which is which."""
    if server and ctx.invoked_subcommand in LOCAL_ONLY:
        fail(f"`attestor {ctx.invoked_subcommand}` works on the attestor host's data "
             "directory (-d), never against a server: drop --server", EXIT_USAGE)
    set_root_options(RootOptions(server=server, token=token, profile=profile,
                                 ca_bundle=ca_bundle))


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


@app.command("ca")
def ca_export(data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """Print the CA trust anchor (PEM) that relying parties and agents need."""
    sys.stdout.write((settings_for(data_dir, dev).ca_dir / "root.pem").read_text())


def main() -> None:
    """Entry point: configuration and backend problems end with one clear line, not a
    traceback (the commands' group, :class:`_Commands`, says it)."""
    app()


if __name__ == "__main__":
    main()
