"""`attestor policy` and `attestor trust`: reference policies per device class and the EK
trust store, against a server (--server) or on the data directory; every command works
both ways. `policy show -o json` prints what `policy set` reads back."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from attestor.cli_logs import ImaBank, read_ima_list
from attestor.cli_options import DEFAULT_DIR, DataDir, Dev
from attestor.cli_remote import (
    Format,
    Output,
    client,
    emit,
    emit_result,
    err,
    fail,
    out,
    print_json,
    rows,
    when,
)
from attestor.models.fleet import PolicyLearn, PolicyLearned, TrustStorePublic
from attestor.models.operator import PolicyVersion
from attestor.origin import cli_principal
from identity.errors import IdentityError
from identity.policy import PolicyDocument, parse_policy

policy_app = typer.Typer(help="Reference policies per device class.", no_args_is_help=True)
trust_app = typer.Typer(help="The EK trust store (TPM-vendor CA certificates).",
                        no_args_is_help=True)
ClassOpt = Annotated[str, typer.Option("--class", help="device class")]


def _services(data_dir: Path, dev: bool | None) -> Any:
    from attestor.cli import services_for

    return services_for(data_dir, dev)


def _print_policy(policy: PolicyVersion) -> None:
    out.print(Text(f"class={policy.device_class} version={policy.version} "
                   f"by={policy.created_by} at={when(policy.created_at)}"))
    out.print_json(json.dumps(policy.document))


@policy_app.command("show")
def policy_show(device_class: ClassOpt = "default", output: Output = None,
                data_dir: DataDir = DEFAULT_DIR, dev: Dev = None) -> None:
    """The policy in force for a device class (-o json: what `policy set` accepts)."""
    api = client()
    if api is not None:
        with api:
            policy = api.policy(device_class)
    else:
        from sqlmodel import Session

        from attestor.cli import engine_for
        from attestor.db import queries
        from attestor.services.policies import view

        with Session(engine_for(data_dir, dev)) as session:
            row = queries.current_policy(session, device_class)
            if row is None:
                fail(f"request.not_found: no policy for class {device_class!r} (learn one "
                     "with `attestor policy learn`)")
            policy = view(row)
    emit(output, policy, lambda: _print_policy(policy))


def read_document(file: Path, device_class: str | None) -> tuple[str, PolicyDocument]:
    """A policy document from a file (``-``: stdin): a bare document, or what `policy show
    -o json` printed (its class is used unless --class names one)."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        fail(f"{file}: {exc}")
    if not isinstance(data, dict):
        fail(f"{file}: not a JSON object")
    if "document" in data and "version" in data:  # `policy show -o json`
        device_class = device_class or data.get("device_class")
        data = data["document"]
    try:
        return device_class or "default", parse_policy(data)
    except IdentityError as exc:
        fail(f"{file}: {exc.code}: {exc.detail}")


@policy_app.command("set")
def policy_set(
    file: Annotated[Path, typer.Argument(help="policy document (JSON; - for stdin), or "
                                         "the output of `policy show -o json`")],
    device_class: Annotated[str | None, typer.Option(
        "--class", help="device class (default: the file's, else default)",
        show_default=False)] = None,
    output: Output = None, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """Store a policy document as the class's next version, in force at once."""
    chosen, document = read_document(file, device_class)
    api = client()
    if api is not None:
        with api:
            policy = api.set_policy(chosen, document)
    else:
        from attestor.services.policies import set_policy, view

        svc = _services(data_dir, dev)
        with svc.session() as session, session.begin():
            policy = view(set_policy(session, chosen, document, cli_principal(), svc.clock()))
    emit_result(output, policy, lambda: out.print(
        f"[green]policy[/] class={policy.device_class} version={policy.version}"))


def _learn_locally(data_dir: Path, dev: bool | None, device_class: str | None,
                   request: PolicyLearn) -> PolicyLearned:
    from attestor.services.policies import LearnSources, learn_policy, view
    from identity.ima.log import parse_ascii, parse_binary

    entries = None
    if request.ima_list is not None:
        entries = (parse_ascii(request.ima_list.decode()) if request.ima_ascii
                   else list(parse_binary(request.ima_list, request.ima_bank).entries))
    sources = LearnSources(device_id=request.device_id, golden=request.golden,
                           event_log=request.event_log, ima_entries=entries,
                           grant=tuple(request.grant))
    svc = _services(data_dir, dev)
    with svc.session() as session, session.begin():
        policy, evidence = learn_policy(session, device_class, sources, cli_principal(),
                                       svc.clock())
        return PolicyLearned(policy=view(policy),
                             attestation_id=evidence.id if evidence else None,
                             attested_at=evidence.at if evidence else None)


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
    output: Output = None, data_dir: DataDir = DEFAULT_DIR, dev: Dev = None,
) -> None:
    """New policy version learned from a known-good device and/or known-good logs."""
    try:
        ima_bytes = None
        bank = list_bank
        if ima is not None:
            bank = read_ima_list(ima, ascii_ima, list_bank)[3]  # checked here, sent whole
            ima_bytes = ima.read_bytes()
        request = PolicyLearn(device_id=device, golden=golden,
                              event_log=eventlog.read_bytes() if eventlog else None,
                              ima_list=ima_bytes, ima_ascii=ascii_ima,
                              ima_bank=None if ascii_ima else bank,
                              grant=list(secret or ()))
    except (OSError, ValueError) as exc:
        fail(str(exc))
    except IdentityError as exc:
        fail(f"{exc.code}: {exc.detail}")
    api = client()
    if api is not None:
        with api:
            chosen = device_class or (api.device(device).device_class if device else None)
            if chosen is None:
                fail("name a device (--device) or a device class (--class) to learn for",
                     2)
            learned = api.learn_policy(chosen, request)
    else:
        learned = _learn_locally(data_dir, dev, device_class, request)

    def table() -> None:
        policy = learned.policy
        origin = (f" from attestation #{learned.attestation_id} at "
                  f"{when(learned.attested_at)}" if learned.attestation_id else "")
        out.print(f"[green]policy[/] class={policy.device_class} version={policy.version} "
                  f"learned{origin}")
        document = dict(policy.document)
        if document.get("ima"):
            allow = document["ima"].get("allowlist", {})
            document["ima"] = {**document["ima"], "allowlist": f"{len(allow)} paths"}
        out.print_json(json.dumps(document))
    emit_result(output, learned, table)


@trust_app.command("list")
def trust_list(output: Output = None, data_dir: DataDir = DEFAULT_DIR,
               dev: Dev = None) -> None:
    """The trust store's roots and intermediates, and files it could not load."""
    api = client()
    if api is not None:
        with api:
            store = api.trust()
    else:
        store = _local_store(data_dir, dev)
    emit(output, store, lambda: _trust_table(store))


def _local_store(data_dir: Path, dev: bool | None) -> TrustStorePublic:
    from attestor.cli import settings_for
    from attestor.services.trust import view
    from attestor.trust import load_trust_store

    return view(load_trust_store(settings_for(data_dir, dev).trust_dir))


def _trust_table(store: TrustStorePublic) -> None:
    rows(("kind", "subject", "not after", "sha256"),
         ((c.kind, c.subject, when(c.not_after), c.sha256[:16])
          for c in store.certificates))
    for source in store.re_encoded:
        err.print(f"[yellow]re-encoded[/] {source}: root with non-DER names, trusted as "
                  "re-encoded")
    for problem in store.not_loaded:
        err.print(f"[yellow]not loaded[/] {problem.source}: {problem.problem}")


@trust_app.command("add")
def trust_add(files: list[Path], output: Output = None, data_dir: DataDir = DEFAULT_DIR,
              dev: Dev = None) -> None:
    """Import TPM-vendor root or intermediate CA certificates (PEM or DER); exit 1 if any
    file was refused.

    Running attestors use them from their next enrollment, without a restart; to
    withdraw a vendor, remove its file from the data directory's trust/ek-roots/."""
    api = client()
    refused: list[tuple[str, str]]
    if api is not None:
        try:
            contents = [f.read_bytes() for f in files]
        except OSError as exc:
            fail(f"{exc.filename}: {exc.strerror}")
        with api:
            result = api.add_trust(contents)
        index = {f"certificates[{i}]": str(f) for i, f in enumerate(files)}
        refused = [(index.get(r.source, r.source), r.problem) for r in result.refused]
        imported = result.imported
    else:
        import datetime as dt

        from attestor.cli import engine_for, settings_for
        from attestor.trust import audit_import, import_certificates

        local = import_certificates(files, settings_for(data_dir, dev).trust_dir)
        audit_import(engine_for(data_dir, dev), files, local, cli_principal(),
                     dt.datetime.now(dt.UTC))
        refused = [(str(path), why) for path, why in local]
        imported = [f.name for f in files if str(f) not in dict(refused)]
    if output == Format.json:
        print_json({"imported": imported,
                    "refused": [{"source": s, "problem": p} for s, p in refused]})
    else:
        for source, why in refused:
            err.print(f"[yellow]refused[/] {source}: {why}")
        out.print(f"imported {len(files) - len(refused)} of {len(files)} file(s)")
    if refused:
        raise typer.Exit(1)
