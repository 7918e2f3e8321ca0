"""`make demo`: the whole job end to end on the embedded defaults.

Attestor on SQLite with its local CA, serving HTTPS with a certificate from that CA
(the agent verifies it against the attestor's root); one emulated device (swtpm with
an EK certificate from a test manufacturer); measured boot; enrollment; learning the
reference from the known-good boot; attestation with certificate and secret;
renewal; then a tampered boot loader, refused with its reason codes.
The real `attestor` and `edge-agent` commands do the work; exit 0 only if
every step behaved as expected.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from rich.console import Console

from agent.sim.boot import simulate_boot
from agent.sim.swtpm import Manufacturer, SwtpmProcess, free_port_pair
from agent.tpm.device import Tpm

console = Console(highlight=False, soft_wrap=True)
BIN = Path(sys.executable).parent
SECRET_NAME = "wifi/psk"  # noqa: S105 - a name, not a value


class DemoFailed(Exception):
    pass


def step(title: str) -> None:
    console.print(f"\n[bold cyan]▶ {title}[/]")


def ok(message: str) -> None:
    console.print(f"  [green]✓[/] {message}")


CLIENT_ENV = {"EDGEPROOF_SERVER", "EDGEPROOF_TOKEN", "EDGEPROOF_PROFILE",
              "EDGEPROOF_CA_BUNDLE", "EDGEPROOF_CLI_CONFIG"}


def run(*args: str, expect: int = 0, env: dict[str, str] | None = None) -> str:
    # The operator's own server settings (docs/cli.md) would send `attestor` elsewhere.
    own = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,  # noqa: S603
                          env={**own, "EDGEPROOF_CLI_CONFIG": os.devnull, **(env or {}),
                               "COLUMNS": "100"}, check=False)
    if proc.returncode != expect:
        raise DemoFailed(f"`{' '.join(args)}` exited {proc.returncode} (expected {expect}):\n"
                         f"{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def attest_json(state: Path, expect: int) -> dict[str, object]:
    out = run("edge-agent", "attest", "--once", "--json", "--state-dir", str(state),
              expect=expect)
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def device_id_in(out: str) -> str:
    """The device id a provisioning or onboarding command printed."""
    return next(w for w in out.split() if w.startswith("d") and len(w) == 32)


def attest_before_learning(state: Path) -> None:
    """The first attestation: the quote verifies, the class has no reference yet."""
    first = attest_json(state, expect=3)
    if first.get("codes") != ["policy.no_reference"]:
        raise DemoFailed(f"expected policy.no_reference before learning, got {first}")


def boot(tpm_proc: SwtpmProcess, log: Path, *, tamper: str | None) -> None:
    with Tpm(tpm_proc.tcti) as tpm:
        simulate_boot(tpm, log, tamper=tamper)


def main(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    data, state = workdir / "attestor", workdir / "device" / "state"
    log = workdir / "device" / "binary_bios_measurements"

    step("Attestor: SQLite database, local two-level CA (embedded defaults)")
    run("attestor", "init", "--dev", "-d", str(data))
    maker = Manufacturer(workdir / "tpm-manufacturer")
    maker.ensure_config()
    ok("initialised; CA keys encrypted, mode 0600")

    step("Emulated device: swtpm manufactured with an EK certificate")
    tpm_dir = workdir / "device" / "tpm"
    maker.manufacture(tpm_dir)
    run("attestor", "trust", "add", "-d", str(data), str(maker.root_certificate),
        str(maker.intermediate_certificate))
    ok("test manufacturer's root and intermediate imported into the EK trust store")
    run("attestor", "secret", "put", SECRET_NAME, "--value", "correct horse battery staple",
        "-d", str(data), "--dev")
    ok(f"secret {SECRET_NAME!r} stored (AES-GCM in the database)")
    station_key = run("attestor", "apikey", "create", "--name", "factory-line-1",
                      "-d", str(data), "--dev").strip().splitlines()[-1]
    ok("factory station API key created (only its hash is stored)")

    ca = workdir / "attestor-ca.pem"
    ca.write_text(run("attestor", "ca", "-d", str(data), "--dev"))
    issue_tls(data)
    ok("HTTPS certificate for 127.0.0.1 issued by the attestor's own CA (attestor tls issue)")
    url, server = serve_https(data, workdir / "attestor.log")
    tpm_proc = SwtpmProcess(tpm_dir)
    http = httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=10)
    try:
        _wait_healthy(http, url, server)
        ok(f"attestor serving HTTPS on {url}; agents verify it with attestor-ca.pem")
        tpm_proc.start()
        boot(tpm_proc, log, tamper=None)
        ok(f"measured boot simulated: PCRs 0-7 extended, event log at {log.name}")
        device_id = _enroll_attest_renew(data, state, log, url, ca, tpm_proc, station_key)
        gatekeeper = _gate(http, data, state, url, device_id)
        _tampered(state, log, tpm_proc)
        _security_team(data, url, ca, device_id)
        _gate_denies(http, url, device_id, gatekeeper)
    finally:
        http.close()
        tpm_proc.stop()
        server.terminate()
        server.wait(timeout=10)


def issue_tls(data: Path) -> None:
    """The attestor's HTTPS certificate for 127.0.0.1, from its own CA."""
    run("attestor", "tls", "issue", "-d", str(data), "--dev", "--dns", "localhost", "--ip",
        "127.0.0.1", "--out-cert", str(data / "tls.pem"), "--out-key", str(data / "tls.key"))


def serve_https(data: Path, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`attestor serve` on a free port with the certificate of :func:`issue_tls`."""
    port = free_port_pair()
    server = subprocess.Popen(  # noqa: S603
        [str(BIN / "attestor"), "serve", "--dev", "-d", str(data), "--port", str(port),
         "--tls-cert", str(data / "tls.pem"), "--tls-key", str(data / "tls.key")],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    return f"https://127.0.0.1:{port}", server


def _wait_healthy(http: httpx.Client, url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # a loaded machine starts Python slowly
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DemoFailed("the attestor exited; see demo-run/attestor.log")
        try:
            if http.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise DemoFailed("the attestor did not become healthy")


def _enroll_attest_renew(data: Path, state: Path, log: Path, url: str, ca: Path,
                         tpm_proc: SwtpmProcess, station_key: str) -> str:
    step("Factory enrollment: EK chain, credential activation, DevID certify")
    out = run("edge-agent", "provision", "--attestor", url, "--ca-bundle", str(ca),
              "--tcti", tpm_proc.tcti, "--state-dir", str(state), "--serial", "EDGE-0001",
              "--event-log", str(log), env={"EDGE_AGENT_API_KEY": station_key})
    device_id = device_id_in(out)
    ok(f"device {device_id} enrolled; device identity certificate in devid.pem; from now on "
       "its requests are signed by its TPM-resident DevID key")

    step("Reference policy learned from the known-good boot")
    attest_before_learning(state)
    ok("first attestation: quote verified, no reference yet (policy.no_reference)")
    run("attestor", "policy", "learn", "--device", device_id, "--secret", SECRET_NAME,
        "-d", str(data), "--dev")
    ok("golden PCRs and the boot policy (keys, boot applications, kernel) learned; "
       "the policy grants the secret")

    step("Attestation: quote, event log replay, policy, TPM-resident key")
    result = attest_json(state, expect=0)
    cert = _show_certificate(state)
    secret = (state / "secrets" / SECRET_NAME).read_bytes()
    ok(f"secret {SECRET_NAME!r} delivered ({len(secret)} bytes, file mode "
       f"{oct((state / 'secrets' / SECRET_NAME).stat().st_mode & 0o777)})")

    step("Renewal")
    renewed = attest_json(state, expect=0)
    if renewed["serial"] == result["serial"]:
        raise DemoFailed("renewal did not issue a new serial")
    ok(f"renewed: serial {str(result['serial'])[:16]}… → {str(renewed['serial'])[:16]}…")
    del cert
    return device_id


def _decide(http: httpx.Client, url: str, device_id: str, token: str) -> dict[str, object]:
    answer = http.post(f"{url}/v1/gate/decisions",
                       json={"device_id": device_id, "action": "update:firmware/stable"},
                       headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 200:
        raise DemoFailed(f"gate decision failed: {answer.status_code} {answer.text}")
    decision: dict[str, object] = answer.json()
    return decision


def _gate(http: httpx.Client, data: Path, state: Path, url: str, device_id: str) -> str:
    """The attestation-result token checked offline, then a gate rule and a decision."""
    from cryptography.hazmat.primitives import serialization

    from identity import gate

    step("Attestation result: a signed EAR token bound to the certificate, and the gate")
    cert = x509.load_pem_x509_certificate((state / "cert.pem").read_bytes())
    jwks = http.get(f"{url}/.well-known/jwks.json").json()
    result = gate.verify((state / "attestation.jwt").read_text(), jwks,
                         gate.Requirements(issuer="edgeproof-attestor:edgeproof.local"),
                         dt.datetime.now(dt.UTC),
                         cert.public_bytes(serialization.Encoding.DER))
    ok(f"attestation.jwt verifies offline (identity.gate): ear.status {result.status}, "
       f"trustworthiness {result.vector}")
    shown = json.loads(run("attestor", "policy", "show", "-o", "json", "-d", str(data),
                           "--dev"))  # what `policy set` reads back, edited
    shown["document"]["gates"] = [{"action": "update:firmware/*", "max_age_seconds": 900}]
    (data.parent / "policy-with-gate.json").write_text(json.dumps(shown))
    run("attestor", "policy", "set", str(data.parent / "policy-with-gate.json"), "--class",
        "default", "-d", str(data), "--dev")
    token = run("attestor", "token", "create", "--role", "gatekeeper", "--ttl", "10m",
                "-d", str(data), "--dev").strip().splitlines()[-1]
    decision = _decide(http, url, device_id, token)
    if decision["decision"] != "allow":
        raise DemoFailed(f"the gate did not allow the attested device: {decision}")
    ok("gate rule update:firmware/* added; POST /v1/gate/decisions → allow")
    return token


def _gate_denies(http: httpx.Client, url: str, device_id: str, token: str) -> None:
    decision = _decide(http, url, device_id, token)
    if decision["decision"] != "deny":
        raise DemoFailed(f"the gate allowed a device whose last boot was refused: {decision}")
    reasons = decision.get("reasons")
    listed = ", ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    ok(f"the gate now denies update:firmware/stable: {listed}"
       " (its old token has not expired; the gate knows better)")
    console.print("\n[bold green]demo complete:[/] enrollment, attestation, certificate, "
                  "secret, renewal, attestation result and gate, and the tampered boot "
                  "refused.")


def _security_team(data: Path, url: str, ca: Path, device_id: str) -> None:
    """An auditor's view from their own machine: the CLI against the API (docs/cli.md)."""
    step("The security team: `attestor --server` with an auditor token")
    token = run("attestor", "token", "create", "--role", "auditor", "--ttl", "10m",
                "-d", str(data), "--dev").strip().splitlines()[-1]
    env = {"EDGEPROOF_SERVER": url, "EDGEPROOF_CA_BUNDLE": str(ca), "EDGEPROOF_TOKEN": token}
    shown = json.loads(run("attestor", "device", "show", device_id, "-o", "json", env=env))
    if shown["last_verdict"] != "fail" or "policy.pcr_mismatch" not in shown["last_reasons"]:
        raise DemoFailed(f"the auditor does not see the refusal: {shown}")
    ok(f"device show {device_id[:8]}… -o json: last verdict {shown['last_verdict']} "
       f"({', '.join(shown['last_reasons'])})")
    refused = run("attestor", "device", "revoke", device_id, "--reason", "demo", expect=1,
                  env=env)
    ok(f"the auditor may not revoke it: {refused.strip()}")


def _show_certificate(state: Path) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate((state / "cert.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((state / "chain.pem").read_bytes())
    roots = x509.load_pem_x509_certificates((state / "ca.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    PolicyBuilder().store(Store(roots)).time(now).build_client_verifier().verify(cert, chain)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    lifetime = cert.not_valid_after_utc - now
    ok(f"certificate subject {cert.subject.rfc4514_string()}")
    ok(f"SAN {', '.join(san.get_values_for_type(x509.UniformResourceIdentifier))}")
    ok(f"lifetime {int(lifetime.total_seconds() // 60)} min (until "
       f"{cert.not_valid_after_utc:%H:%M:%S} UTC); chain verifies to the attestor's CA")
    key_pem = (state / "key.pem").read_bytes()
    if not key_pem.startswith(b"-----BEGIN TSS2 PRIVATE KEY-----"):
        raise DemoFailed("key.pem is not a TPM-wrapped key")
    ok("key.pem is a TSS2 PRIVATE KEY: the private key never leaves the TPM")
    return cert


def _tampered(state: Path, log: Path, tpm_proc: SwtpmProcess) -> None:
    step("Reboot with a tampered boot loader")
    before = (state / "cert.pem").read_bytes()
    tpm_proc.restart()
    boot(tpm_proc, log, tamper="bootloader")
    ok("device power-cycled; GRUB image modified; PCR4 differs")
    refused = attest_json(state, expect=3)
    codes = [str(c) for c in refused.get("codes", [])]  # type: ignore[attr-defined]
    if refused.get("verdict") != "fail" or "policy.pcr_mismatch" not in codes:
        raise DemoFailed(f"the tampered boot was not refused as expected: {refused}")
    if (state / "cert.pem").read_bytes() != before:
        raise DemoFailed("credentials changed after a refused attestation")
    console.print(f"  [bold red]✗ refused[/]: {', '.join(codes)}")
    for failed in refused.get("failed", []):  # type: ignore[attr-defined]
        console.print(f"    {failed['code']}: {failed['detail']}")
    ok("nothing issued; the previous credentials stay in place")



if __name__ == "__main__":
    try:
        main(Path(os.environ.get("EDGEPROOF_DEMO_DIR", "demo-run")).resolve())
    except DemoFailed as exc:
        console.print(f"\n[bold red]demo failed:[/] {exc}")
        sys.exit(1)
