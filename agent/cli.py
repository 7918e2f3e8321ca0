"""`edge-agent`: the device side of edgeproof."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from agent.client import AttestorClient, AttestorError, Unreachable, with_failover
from agent.config import DEFAULT_STATE_DIR, AgentConfig, ConfigError, load_config

if TYPE_CHECKING:
    from agent.tpm.device import Tpm

app = typer.Typer(help="edgeproof device agent: enroll, attest and renew with the TPM.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

StateDir = Annotated[Path, typer.Option("--state-dir", "-s", envvar="EDGE_AGENT_STATE_DIR",
                                        help="agent state directory")]
Tcti = Annotated[str | None, typer.Option(help="TCTI, e.g. device:/dev/tpmrm0 or "
                                          "swtpm:host=127.0.0.1,port=2321")]
EventLog = Annotated[Path | None, typer.Option(help="binary TCG event log to send")]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _client(config: AgentConfig) -> AttestorClient:
    return AttestorClient(config.urls, str(config.ca_bundle) if config.ca_bundle else None)


def _refused(exc: AttestorError, note: str = "") -> NoReturn:
    err.print(f"[bold red]refused[/] ({exc.status}): {exc.detail}")
    failed = [c for c in exc.checks if not c.get("passed") and not c.get("skipped")]
    for check in failed:
        err.print(f"  reason: [red]{check.get('code')}[/] {check.get('detail', '')}")
    if not failed:
        for code in exc.codes:
            err.print(f"  reason: [red]{code}[/]")
    if note:
        err.print(note)
    raise typer.Exit(3)


@app.command()
def provision(
    attestor: Annotated[str, typer.Option(help="attestor base URL")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tcti: Tcti = None,
    ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle for HTTPS")] = None,
    serial: Annotated[str | None, typer.Option(help="device serial number")] = None,
    device_class: Annotated[str | None, typer.Option("--class", help="device class")] = None,
    event_log: EventLog = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="EDGE_AGENT_API_KEY", help="the factory station's enroller API key")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="EDGE_AGENT_TOKEN", help="an enroller bearer token (instead of an API key)")
    ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="re-provision an enrolled device: new keys beside the old, the old "
        "removed only after the attestor confirmed the new ones")] = False,
) -> None:
    """Factory enrollment: create AK and DevID in the TPM, persist them, enroll.

    Needs an enroller credential unless the manufacturer pre-registered this TPM's EK.
    All or nothing: nothing changes for the device until the attestor has confirmed the
    new keys and issued their certificate; on any failure the new keys are removed.
    An enrolled device is refused unless --force, which creates the new keys beside the
    enrolled ones and removes the old keys only after the switch (stop `edge-agent run`
    first)."""
    from agent.enroll import AlreadyEnrolled, force_plan
    from agent.enroll import provision as do_provision
    from agent.keyswap import KeySwapError, pending
    from agent.tpm.device import Tpm, TpmError
    from agent.verify import IssuedCertificateInvalid

    config = load_config(state_dir=state_dir, attestor_url=attestor, tcti=tcti,
                         ca_bundle=ca_bundle, serial=serial, device_class=device_class,
                         event_log=event_log)
    if config.device_id and not force:
        fail(f"this device is already enrolled (device {config.device_id}); "
             "`edge-agent provision --force` replaces its keys (see --help)")
    if config.device_id:
        err.print(f"[yellow]--force:[/] {force_plan(config)}")
    try:
        with Tpm(config.tcti) as tpm, AttestorClient(
                config.attestor_url, str(config.ca_bundle) if config.ca_bundle else None,
                api_key=api_key, token=token) as client:
            enrolled = do_provision(config, tpm, client, now(), force=force)
    except AttestorError as exc:
        _refused(exc, _kept(config).removeprefix("; "))
    except AlreadyEnrolled as exc:  # an interrupted first provisioning, completed now
        fail(str(exc))
    except (Unreachable, TpmError, IssuedCertificateInvalid, KeySwapError) as exc:
        fail(str(exc) + _kept(config))
    except OSError as exc:  # the state directory: the journal says where it stopped
        left = pending(config.state_dir)
        fail(f"cannot write under {config.state_dir}: {exc.strerror or exc}"
             + (f"; {left}: `edge-agent attest --once` completes or undoes it" if left
                else _kept(config)))
    out.print(f"[green]enrolled[/] device [bold]{enrolled.device_id}[/] (EK {enrolled.ek_type})")
    out.print(f"  AK 0x{enrolled.ak_handle:08x}, DevID 0x{enrolled.devid_handle:08x}"
              + (f"; old keys removed from {', '.join(f'0x{h:08x}' for h in enrolled.replaced)}"
                 if enrolled.replaced else ""))
    not_after = enrolled.certificate.not_valid_after_utc
    out.print(f"  device identity certificate valid until {not_after}")


@app.command()
def onboard(
    attestor: Annotated[str, typer.Option(help="the owner's attestor base URL")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tcti: Tcti = None,
    ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle for HTTPS")] = None,
    event_log: EventLog = None,
) -> None:
    """Zero-touch onboarding on first boot: no station, no API key (docs/onboarding.md).

    Uses the IAK and IDevID the manufacturer left in the TPM (certificates in NV
    0x01C90000-0x01C90002): the owner's attestor checks them against the manufacturer
    roots and its ownership records, then issues the LDevID certificate for new local
    keys (LAK and LDevID). All or nothing, as `provision`."""
    from agent.enroll import EnrollmentError
    from agent.keyswap import KeySwapError
    from agent.onboard import onboard as do_onboard
    from agent.tpm.device import Tpm, TpmError
    from agent.verify import IssuedCertificateInvalid

    config = load_config(state_dir=state_dir, attestor_url=attestor, tcti=tcti,
                         ca_bundle=ca_bundle, event_log=event_log)
    try:
        with Tpm(config.tcti) as tpm, AttestorClient(
                config.attestor_url, str(config.ca_bundle) if config.ca_bundle else None
                ) as client:
            enrolled, answer = do_onboard(config, tpm, client, now())
    except AttestorError as exc:
        _refused(exc)
    except (EnrollmentError, Unreachable, TpmError, IssuedCertificateInvalid,
            KeySwapError) as exc:
        fail(str(exc))
    out.print(f"[green]onboarded[/] device [bold]{enrolled.device_id}[/] (serial "
              f"{answer.serial}, class {answer.device_class})")
    out.print(f"  LAK 0x{enrolled.ak_handle:08x}, LDevID 0x{enrolled.devid_handle:08x}; "
              f"LDevID certificate valid until {enrolled.certificate.not_valid_after_utc}")


def _kept(config: AgentConfig) -> str:
    """After a failed provisioning: the enrollment in place is untouched."""
    if not config.device_id:
        return ""
    return f"; nothing changed: device {config.device_id} keeps its enrolled keys"


@app.command()
def attest(
    once: Annotated[bool, typer.Option("--once", help="attest once and exit")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tcti: Tcti = None,
    event_log: EventLog = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Attest now and install the issued credentials (use `run` for the daemon)."""
    from agent.attest import NotProvisioned, attest_once
    from agent.keyswap import KeySwapError
    from agent.tpm.device import Tpm, TpmError
    from agent.verify import IssuedCertificateInvalid

    if not once:
        fail("use `edge-agent attest --once`, or `edge-agent run` to keep renewing")
    config = load_config(state_dir=state_dir, tcti=tcti, event_log=event_log)
    try:
        with Tpm(config.tcti) as tpm, _client(config) as client:
            _recover(config, tpm)
            issued = with_failover(client, lambda: attest_once(config, tpm, client, now()))
    except AttestorError as exc:
        if json_out:
            failed = [{"code": c.get("code"), "detail": c.get("detail")}
                      for c in exc.checks if not c.get("passed") and not c.get("skipped")]
            print(json.dumps({"verdict": "fail", "codes": exc.codes, "detail": exc.detail,
                              "failed": failed}))
            raise typer.Exit(3) from exc
        _refused(exc)
    except (Unreachable, TpmError, NotProvisioned, IssuedCertificateInvalid,
            KeySwapError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write credentials under {config.output}: {exc.strerror or exc}; "
             "the current set is kept")
    if json_out:
        print(json.dumps({"verdict": "pass", "serial": issued.serial,
                          "not_after": issued.not_after.isoformat(),
                          "uri": issued.subject_uri, "secrets": list(issued.secrets)}))
        return
    out.print(f"[green]attested[/]: certificate {issued.serial} for {issued.subject_uri}")
    out.print(f"  valid {issued.not_before:%H:%M:%S} → {issued.not_after:%H:%M:%S} UTC; "
              f"renews at {issued.renew_at(config.renew_fraction):%H:%M:%S}")
    if issued.secrets:
        out.print(f"  secrets: {', '.join(issued.secrets)}")


def _recover(config: AgentConfig, tpm: Tpm) -> None:
    """Finish or undo a provisioning that was interrupted (agent/keyswap.py)."""
    from agent.keyswap import recover

    done = recover(config, tpm)
    if done:
        err.print(f"[yellow]note:[/] {done}")


@app.command()
def run(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tcti: Tcti = None,
    event_log: EventLog = None,
) -> None:
    """Run as a daemon: renew before expiry, back off while the attestor is away.

    Under systemd (Type=notify) it reports READY and pings the watchdog; SIGTERM or
    SIGINT stop it between steps, never in the middle of installing a set."""
    from agent.daemon import run_daemon

    raise typer.Exit(run_daemon(state_dir, tcti, event_log))


@app.command("fetch-update")
def fetch_update(
    url: Annotated[str, typer.Argument(help="the update's URL")],
    out_file: Annotated[Path, typer.Option("--out", help="where to write it")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle for the update server's "
                                                    "TLS certificate")] = None,
    client_auth: Annotated[str, typer.Option(
        help="mtls: the workload certificate as TLS client certificate, the TPM signing the "
        "handshake (needs /dev/tpmrm0 or tpm2-abrmd); signature: a TPM request signature, "
        "for a server behind a TLS-terminating proxy")] = "mtls",
) -> None:
    """Download an update from a service that serves only attested devices: sends the
    attestation-result token and proves the TPM-resident workload key (mutual TLS, or a
    request signature). Exit 0 when written, 3 when refused, 1 when the service cannot
    be reached or its certificate is not trusted."""
    from agent.client import TlsRefused, Unreachable
    from agent.fetch import FetchRefused
    from agent.fetch import fetch_update as fetch
    from agent.tpm.device import Tpm, TpmError
    from agent.tpm.openssl import TpmTlsError

    if client_auth not in ("mtls", "signature"):
        raise typer.BadParameter("mtls or signature", param_hint="--client-auth")
    config = load_config(state_dir=state_dir)
    bundle = str(ca_bundle or config.ca_bundle) if (ca_bundle or config.ca_bundle) else None
    try:
        if client_auth == "mtls":
            got = fetch(config, url, out_file, bundle, auth="mtls")
        else:
            with Tpm(config.tcti) as tpm:
                got = fetch(config, url, out_file, bundle, auth="signature", tpm=tpm)
    except FetchRefused as exc:
        if exc.status == 0:
            fail(exc.detail)
        err.print(f"[bold red]refused[/] ({exc.status} {exc.code}): {exc.detail}")
        for reason in exc.reasons:
            err.print(f"  reason: [red]{reason}[/]")
        raise typer.Exit(3) from exc
    except TlsRefused as exc:
        fail(str(exc), 3 if exc.reason == "tls.client_certificate_refused" else 1)
    except (Unreachable, TpmError, TpmTlsError, ValueError) as exc:
        fail(str(exc))
    out.print(f"[green]fetched[/] {got.path} ({got.size} bytes, sha256 {got.sha256})")


@app.command()
def status(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    check_attestor: Annotated[bool, typer.Option(
        "--check-attestor", help="also ask the attestor's /healthz (informative only)")
    ] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="never contact the attestor, even with --check-attestor (the "
        "liveness probe's form; local state only is the default)")] = False,
) -> None:
    """Health, identity and device state, certificate expiry, last verdict and reasons,
    last and next renewal, consecutive failures. Exit 0 when healthy, 1 when not (no
    valid certificate, device quarantined or revoked, last attestation refused, too many
    failures in a row, renewal overdue): a liveness probe. Reads local state only,
    unless --check-attestor."""
    from agent.status import collect, render

    config = load_config(state_dir=state_dir)
    client = _client(config) if check_attestor and not offline else None
    info = collect(config, now(), client)
    if json_out:
        print(json.dumps(info))
    else:
        render(info, out)
    raise typer.Exit(0 if info["healthy"] else 1)


@app.command()
def doctor(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tcti: Tcti = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="do not contact the attestor")
                       ] = False,
) -> None:
    """Check the TPM, EK certificate, persistent keys (and that they are the ones the
    attestor knows), event logs, clock and state directory; each problem with a fix.
    Exit 0 when nothing failed, 1 otherwise."""
    from agent.doctor import FAIL, run_checks
    from agent.doctor_keys import attestor_record

    config = load_config(state_dir=state_dir, tcti=tcti)

    def attestor_clock() -> dt.datetime | None:
        with _client(config) as client:
            return with_failover(client, client.health)

    checks = run_checks(config, now(), None if offline else attestor_clock,
                        None if offline or not config.device_id else attestor_record(config))
    if json_out:
        print(json.dumps({"ok": all(c.status != FAIL for c in checks),
                          "checks": [c.as_dict() for c in checks]}))
    else:
        colour = {"ok": "green", "warn": "yellow", "fail": "bold red"}
        for check in checks:
            out.print(f"[{colour[check.status]}]{check.status:>4}[/] {check.name}: "
                      f"{check.detail}")
            if check.hint and check.status != "ok":
                out.print(f"       fix: {check.hint}")
    raise typer.Exit(1 if any(c.status == FAIL for c in checks) else 0)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] invalid configuration: {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
