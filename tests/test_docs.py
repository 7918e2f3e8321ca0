"""README, docs and --help stay true to the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import identity.gate
import identity.tpmwrap  # noqa: F401 - registers their error classes
from identity.errors import IdentityError

ROOT = Path(__file__).resolve().parent.parent


def _codes(cls: type[IdentityError]) -> Iterator[str]:
    yield cls.code
    for sub in cls.__subclasses__():
        yield from _codes(sub)


def test_every_reason_code_is_documented() -> None:
    doc = (ROOT / "docs" / "reason-codes.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE))
    missing = set(_codes(IdentityError)) - documented
    assert not missing, f"codes missing from docs/reason-codes.md: {sorted(missing)}"


def test_every_audit_finding_is_documented() -> None:
    source = "".join((ROOT / "attestor" / name).read_text() for name in (
        "audit.py", "audit_verify.py", "audit_offline.py"))
    findings = set(re.findall(r'report\.problem\(\s*"([a-z_.]+)"', source))
    doc = (ROOT / "docs" / "reason-codes.md").read_text()
    assert findings, "the audit verifier reports no findings?"
    assert findings <= set(re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE))


def test_every_gate_decision_reason_is_documented() -> None:
    source = (ROOT / "attestor" / "services" / "gate.py").read_text()
    reasons = set(re.findall(r'"(gate\.[a-z_]+)"', source)) - {"gate.decision"}  # audit action
    doc = (ROOT / "docs" / "reason-codes.md").read_text()
    assert len(reasons) >= 6
    assert reasons <= set(re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE))


def test_reason_codes_are_unique() -> None:
    codes = list(_codes(IdentityError))
    assert len(codes) == len(set(codes))


def test_readme_opens_with_the_two_commands() -> None:
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.strip()]
    commands = [ln.split("#")[0].strip() for ln in lines[1:6] if ln.startswith("make ")]
    assert commands == ["make demo", "make test"]


def test_cli_help_lists_the_commands_the_docs_use() -> None:
    from agent.cli import app as agent_app
    from attestor.cli import app as attestor_app

    runner = CliRunner()
    attestor_help = runner.invoke(attestor_app, ["--help"]).output
    agent_help = runner.invoke(agent_app, ["--help"]).output
    for command in ("init", "serve", "trust", "policy", "secret", "db", "device"):
        assert command in attestor_help
    for command in ("provision", "attest", "run", "status"):
        assert command in agent_help
    readme = (ROOT / "README.md").read_text()
    for used in re.findall(r"^(?:attestor|edge-agent) ([a-z]+)", readme, re.MULTILINE):
        assert used in attestor_help + agent_help, used


def test_every_alert_is_explained_in_the_deploy_guide() -> None:
    """docs/deploy.md says what each alert means and what to check first."""
    import yaml

    rules = yaml.safe_load((ROOT / "deploy" / "monitoring" / "edgeproof-alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    doc = (ROOT / "docs" / "deploy.md").read_text()
    explained = set(re.findall(r"^\| `([A-Za-z]+)` \| (?:critical|warning|info) \|", doc,
                               re.MULTILINE))
    assert len(alerts) >= 20
    assert alerts == explained, (sorted(alerts - explained), sorted(explained - alerts))


def test_every_cli_option_has_help_and_none_is_hidden() -> None:
    """Options the docs and probes use (`edge-agent status --offline`, `attestor audit
    verify --json`) show in --help, each with a line saying what it does."""
    import typer

    from agent.cli import app as agent_app
    from attestor.cli import app as attestor_app

    def options(command: Any, path: str) -> Iterator[tuple[str, Any]]:  # typer's own click
        for name, sub in getattr(command, "commands", {}).items():
            yield from options(sub, f"{path} {name}")
        for param in command.params:
            if param.param_type_name == "option":
                yield f"{path} {param.opts[0]}", param

    found = [*options(typer.main.get_command(attestor_app), "attestor"),
             *options(typer.main.get_command(agent_app), "edge-agent")]
    assert len(found) > 100
    assert [name for name, opt in found if not opt.help or opt.hidden] == []


DEPLOY_DOCS = ["README.md", "docs/deploy.md", "deploy/README.md", "deploy/images/README.md",
               "deploy/helm/edgeproof/README.md"]


def _shell_commands(text: str) -> Iterator[str]:
    """Each command of the ```sh blocks, continuation lines joined."""
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        yield from block.replace("\\\n", " ").splitlines()


def test_podman_commands_in_the_docs_name_the_images_make_images_builds() -> None:
    """A short name (`edgeproof-attestor`) does not resolve in podman: every `podman run`
    names localhost/edgeproof-*:<the package version>, as scripts/images.sh tags them."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    runs = [c for doc in DEPLOY_DOCS for c in _shell_commands((ROOT / doc).read_text())
            if c.lstrip().startswith("podman run")]
    assert len(runs) >= 5
    image = re.compile(rf"\slocalhost/edgeproof-(attestor|agent):{re.escape(version)}(\s|$)")
    assert [c for c in runs if not image.search(c)] == []


def test_links_between_the_deploy_docs_resolve() -> None:
    for doc in DEPLOY_DOCS:
        path = ROOT / doc
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{doc}: {target}"
    readme = (ROOT / "README.md").read_text()
    assert "(docs/deploy.md)" in readme and "deploy/helm/edgeproof/" in readme
