"""`make demo-onboarding`: an OEM provisions a TPM, a customer's attestor onboards it.

No factory station and no API key at the owner: the OEM (`edgeproof-oem`) creates the
IAK and IDevID in the device's swtpm, proves them to its own CA and signs a batch
manifest; the owner imports the OEM's root and the manifest (`attestor ownership`); the
device onboards on first boot (`edge-agent onboard`), then attests as any other.
The real commands do the work; exit 0 only if every step behaved as expected.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from pathlib import Path

import httpx

from agent.sim.boot import simulate_boot
from agent.sim.demo import (
    DemoFailed,
    _wait_healthy,
    attest_before_learning,
    attest_json,
    console,
    device_id_in,
    issue_tls,
    ok,
    run,
    serve_https,
    step,
)
from agent.sim.swtpm import Manufacturer, SwtpmProcess
from agent.tpm.device import Tpm


def main(workdir: Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    oem, batch = workdir / "oem-ca", workdir / "oem-batch-2026-12"
    data, state = workdir / "owner-attestor", workdir / "device" / "state"
    log = workdir / "device" / "binary_bios_measurements"

    step("TPM vendor: a swtpm manufactured with an EK certificate")
    vendor = Manufacturer(workdir / "tpm-vendor")
    vendor.ensure_config()
    tpm_dir = workdir / "device" / "tpm"
    vendor.manufacture(tpm_dir)
    tpm_proc = SwtpmProcess(tpm_dir).start()
    ok(f"TPM ready at {tpm_proc.tcti}")

    step("OEM factory line: its own CA, IAK + IDevID in the TPM, certificates, manifest")
    run("edgeproof-oem", "init-ca", "--ca-dir", str(oem), "--organization", "Acme Devices")
    out = run("edgeproof-oem", "provision", "--ca-dir", str(oem), "--tcti", tpm_proc.tcti,
              "--serial", "ACME-0042", "--batch", str(batch), "--ek-ca",
              str(vendor.root_certificate), "--ek-ca", str(vendor.intermediate_certificate))
    ok("EK chain checked; IAK (0x81020001) and IDevID (0x81020000) created; IAK bound to "
       "the EK by credential activation; IDevID certified by the IAK")
    ok(" ".join(out.split()))
    run("edgeproof-oem", "manifest", "--ca-dir", str(oem), "--batch", str(batch), "--out",
        str(workdir / "manifest.json"))
    ok("IAK/IDevID certificates in NV 0x01C90000/0x01C90001; signed batch manifest written")
    with Tpm(tpm_proc.tcti) as tpm:
        simulate_boot(tpm, log)
    ok("the device is shipped; at the customer it boots (measured boot simulated)")

    step("Owner: an attestor that has never seen this device, with no station key")
    run("attestor", "init", "--dev", "-d", str(data))
    ca = workdir / "attestor-ca.pem"
    ca.write_text(run("attestor", "ca", "-d", str(data), "--dev"))
    issue_tls(data)
    run("attestor", "ownership", "import-roots", str(oem / "root.pem"), str(oem / "issuing.pem"),
        "-d", str(data), "--dev")
    ok("the OEM's root (and issuing CA) imported as manufacturer roots")
    url, server = serve_https(data, workdir / "attestor.log")
    http = httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=10)
    onboard = ("edge-agent", "onboard", "--attestor", url, "--ca-bundle", str(ca), "--tcti",
               tpm_proc.tcti, "--state-dir", str(state), "--event-log", str(log))
    try:
        _wait_healthy(http, url, server)
        ok(f"attestor serving HTTPS on {url}")
        refused = run(*onboard, expect=3)
        if "onboarding.serial_not_owned" not in refused:
            raise DemoFailed(f"an unowned device was not refused: {refused}")
        console.print("  [bold red]✗ refused[/] before the purchase is recorded: "
                      "onboarding.serial_not_owned")
        run("attestor", "ownership", "import-manifest", str(workdir / "manifest.json"),
            "--class", "default", "-d", str(data), "--dev")
        ok("batch manifest imported (signature checked against the OEM root): "
           "ACME-0042 is owned, class default")

        step("First boot: onboarding with IAK and IDevID, no station, no API key")
        out = run(*onboard)
        device_id = device_id_in(out)
        ok(f"device {device_id} onboarded: LDevID certificate from the owner's CA; LAK and "
           "LDevID certified by the IAK over the owner's nonce")

        step("The normal first attestation")
        attest_before_learning(state)
        run("attestor", "policy", "learn", "--device", device_id, "-d", str(data), "--dev")
        result = attest_json(state, expect=0)
        ok(f"attested: verdict {result.get('verdict')}, certificate serial "
           f"{str(result.get('serial'))[:16]}…")

        step("The same device onboarding again (re-imaged): refused until released")
        shutil.rmtree(state)
        again = run(*onboard, expect=3)
        if "onboarding.already_onboarded" not in again:
            raise DemoFailed(f"a second onboarding was not refused: {again}")
        console.print("  [bold red]✗ refused[/]: onboarding.already_onboarded")
        console.print(run("attestor", "ownership", "list", "-d", str(data), "--dev"))
    finally:
        http.close()
        tpm_proc.stop()
        server.terminate()
        server.wait(timeout=10)
    console.print("\n[bold green]demo complete:[/] OEM provisioning, signed manifest, owner "
                  "import, onboarding with no API key, first attestation, and the refusals.")


if __name__ == "__main__":
    try:
        main(Path(os.environ.get("EDGEPROOF_DEMO_DIR", "demo-onboarding-run")).resolve())
    except DemoFailed as exc:
        console.print(f"\n[bold red]demo failed:[/] {exc}")
        sys.exit(1)
