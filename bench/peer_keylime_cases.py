"""The three comparisons of bench/peer_keylime.py: each builds, for one input, the
edgeproof and Keylime calls (each checked to give the right answer first) and races them
in interleaved rounds. ``kl`` is the dict of Keylime modules the CLI imported."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from agent.sim.ima import binary_entry, template_data
from agent.sim.softtpm import SoftKey, software_pcrs
from identity.checks import CheckRunner
from identity.errors import IdentityError
from identity.eventlog.replay import check_replay_matches, replay
from identity.eventlog.summary import summarize
from identity.eventlog.tcg import parse_event_log
from identity.ima.log import parse_ascii, parse_binary
from identity.ima.replay import replay_ima
from identity.pcr import PcrSelection
from identity.tpm.ak import check_attestation_key
from identity.tpm.quote import verify_quote

BATCH_SECONDS = 0.02
Row = tuple[str, dict[str, Any]]  # timings (µs) and, for boot logs, verdicts


def race(contenders: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Best µs per call of each contender, timed in interleaved rounds of batches."""
    batch = {}
    for name, fn in contenders.items():
        start = time.perf_counter()
        fn()
        batch[name] = max(1, int(BATCH_SECONDS / max(time.perf_counter() - start, 1e-7)))
    best = dict.fromkeys(contenders, float("inf"))
    deadline, rounds = time.perf_counter() + seconds, 0
    while rounds < 3 or time.perf_counter() < deadline:
        for name, fn in contenders.items():
            n = batch[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e6)
        rounds += 1
    return best


# --- quotes -------------------------------------------------------------------------

def tpm2_tools_pcrs(values: dict[str, dict[int, bytes]]) -> bytes:
    """The PCR file `tpm2_quote -o` writes, which Keylime's agent sends: TPML_PCR_SELECTION
    then the TPML_DIGESTs as C structs in host (little-endian) order, unmarshalled."""
    algs = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C}
    sel = struct.pack("<I", len(values))
    digests: list[bytes] = []
    for i in range(16):
        if i < len(values):
            bank = list(values)[i]
            mask = sum(1 << pcr for pcr in values[bank])
            sel += struct.pack("<HB3sxx", algs[bank], 3, mask.to_bytes(3, "little"))
            digests += [values[bank][pcr] for pcr in sorted(values[bank])]
        else:
            sel += bytes(8)
    chunks = [digests[i:i + 8] for i in range(0, len(digests), 8)]
    out = sel + struct.pack("<I", len(chunks))
    for chunk in chunks:
        out += struct.pack("<I", len(chunk))
        out += b"".join(struct.pack("<H", len(d)) + d.ljust(64, b"\0")
                        for d in chunk + [b""] * (8 - len(chunk)))
    return out


def quote_case(kl: dict[str, Any], private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
               ) -> tuple[dict[str, Callable[[], object]], str]:
    """The contenders for one AK, each checked to accept, and the relabelling probe."""
    tpm_util, tpm = kl["tpm_util"], kl["tpm_main"].Tpm
    soft = SoftKey(private=private)
    ak = check_attestation_key(soft.public)
    selection = PcrSelection.of({"sha256": range(8)})
    values = software_pcrs(selection)
    nonce = b"k3yl1m3N0nc3edge2026"  # Keylime's nonces are 20 ASCII characters
    attest, signature = soft.quote(selection, values, nonce)
    pcrblob = tpm2_tools_pcrs(values)
    public = private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    wire = "r" + ":".join(base64.b64encode(b).decode() for b in (attest, signature, pcrblob))
    ak_b64 = base64.b64encode(soft.public).decode()
    if isinstance(private, rsa.RSAPrivateKey):
        raw = private.sign(attest, padding.PKCS1v15(), hashes.SHA256())
        rsa_public = private.public_key()

        def bare() -> None:
            rsa_public.verify(raw, attest, padding.PKCS1v15(), hashes.SHA256())
    else:
        der = private.sign(attest, ec.ECDSA(hashes.SHA256()))
        ec_public = private.public_key()

        def bare() -> None:
            ec_public.verify(der, attest, ec.ECDSA(hashes.SHA256()))

    def ours() -> None:
        runner = CheckRunner()
        if not verify_quote(runner, ak, attest, signature, nonce=nonce, pcr_values=values,
                            required=selection).passed:
            raise AssertionError(runner.reason_codes)

    def ours_wire() -> None:
        quote, sig, _ = (base64.b64decode(f) for f in wire[1:].split(":"))
        runner = CheckRunner()
        if not verify_quote(runner, check_attestation_key(soft.public), quote, sig,
                            nonce=nonce, pcr_values=values, required=selection).passed:
            raise AssertionError(runner.reason_codes)

    def theirs() -> None:
        pcrs = tpm_util.checkquote(pem, nonce.decode(), signature, attest, pcrblob, "sha256")
        if len(pcrs) != 8:
            raise AssertionError("checkquote returned the wrong PCRs")

    def theirs_wire() -> None:
        pcrs, err = tpm._tpm2_checkquote(ak_b64, wire, nonce.decode(), "sha256", False)
        if err or len(pcrs) != 8:
            raise AssertionError(err)

    def pem_load() -> None:
        serialization.load_pem_public_key(pem)

    contenders: dict[str, Callable[[], object]] = {
        "bare": bare, "ours": ours, "theirs": theirs, "ours_wire": ours_wire,
        "theirs_wire": theirs_wire, "pem": pem_load}
    return contenders, relabel_probe(kl, soft, ak, pem, values, nonce)


def quote_rows(kl: dict[str, Any], seconds: float) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    probes = []
    for label, private in (("ECC P-256", ec.generate_private_key(ec.SECP256R1())),
                           ("RSA-2048", rsa.generate_private_key(65537, 2048))):
        contenders, probe = quote_case(kl, private)
        rows.append((label, race(contenders, seconds)))
        probes.append(f"{label}: {probe}")
    return rows, probes


def relabel_probe(kl: dict[str, Any], soft: SoftKey, ak: Any, pem: bytes,
                  values: dict[str, dict[int, bytes]], nonce: bytes) -> str:
    """A quote whose signed selection is PCRs 8-15 while the values sent are labelled 0-7
    (same digest): does each side accept the values as PCRs 0-7?"""
    wanted = PcrSelection.of({"sha256": range(8)})
    attest, signature = soft.quote(wanted, values, nonce,
                                   signed_selection=PcrSelection.of({"sha256": range(8, 16)}))
    runner = CheckRunner()
    ours = "accepts" if verify_quote(
        runner, ak, attest, signature, nonce=nonce, pcr_values=values, required=wanted,
    ).passed else f"refuses ({', '.join(runner.reason_codes)})"
    try:
        pcrs = kl["tpm_util"].checkquote(pem, nonce.decode(), signature, attest,
                                         tpm2_tools_pcrs(values), "sha256")
        theirs = f"accepts, returning PCRs {sorted(pcrs)}"
    except Exception as exc:  # noqa: BLE001 - a refusal is any exception
        theirs = f"refuses ({exc})"
    return (f"a quote signed over PCRs 8-15, its values sent as PCRs 0-7: edgeproof {ours}; "
            f"Keylime `checkquote` {theirs}")


# --- measured boot ------------------------------------------------------------------

def keylime_mismatches(pcrs: dict[str, Any], manifest: dict[str, dict[str, str]]) -> list[str]:
    """The ``bank:PCR`` whose value Keylime's parse differs from the real TPM's."""
    wrong = []
    for bank, expected in manifest.items():
        for index, value in expected.items():
            got = pcrs.get(bank, {}).get(str(index))
            if not isinstance(got, int) or f"{got:0{len(value)}x}" != value:
                wrong.append(f"{bank}:{index}")
    return wrong


def ours_matches(data: bytes, manifest: dict[str, dict[str, str]]) -> bool:
    """The attestor's replay check against the PCR values the real TPM reported."""
    quoted = {bank: {int(i): bytes.fromhex(v) for i, v in expected.items()}
              for bank, expected in manifest.items()}
    try:
        check_replay_matches(parse_event_log(data), quoted)
    except IdentityError:
        return False
    return True


def eventlog_rows(kl: dict[str, Any], corpus: Path, seconds: float) -> tuple[list[Row], list[str]]:
    """Keylime parses a boot log by running `tpm2_eventlog` (tpm2-tools, C) in a child
    process, which parses and replays; then, in process, loads its YAML, enriches the
    UEFI variables (libefivar), computes boot aggregates and unescapes strings."""
    p, cmd_exec, config = kl["tpm2_tools_elparser"], kl["cmd_exec"], kl["config"]
    enrich = kl["tpm_bootlog_enrich"].enrich
    stringify, aggregate, unescape = (getattr(p, f"__{n}") for n in (
        "stringify_pcr_keys", "add_boot_aggregate", "unescape_eventlog"))
    rows: list[Row] = []
    notes = []
    for folder in ("eventlogs", "eventlogs-edge"):
        manifest = json.loads((corpus / folder / "manifest.json").read_text())
        for name, info in manifest.items():
            data = (corpus / folder / name).read_bytes()
            try:
                parse_event_log(data)
            except IdentityError:
                failure, result = p.parse_binary_bootlog(data)
                notes.append(f"{name} (truncated): edgeproof refuses it; Keylime "
                             f"{'refuses it' if result is None else 'accepts it'}")
                continue
            # None: the manifest holds no PCR values for this log ("must parse").
            ours_ok = ours_matches(data, info["expected_pcrs"]) if info["expected_pcrs"] else None
            with tempfile.NamedTemporaryFile() as f:
                f.write(data)
                f.flush()
                child = cmd_exec.run(cmd=["tpm2_eventlog", "--eventlog-version=2", f.name],
                                     raiseOnError=False)

                def tool(path: str = f.name) -> None:
                    cmd_exec.run(cmd=["tpm2_eventlog", "--eventlog-version=2", path],
                                 raiseOnError=False)

                def post(out: list[bytes] = child["retout"]) -> None:
                    log = config.yaml_to_dict(out, add_newlines=False)
                    enrich(log)
                    stringify(log)
                    aggregate(log)
                    unescape(log)

                def whole(data: bytes = data) -> None:
                    p.parse_binary_bootlog(data)

                def ours(data: bytes = data) -> None:
                    replay(parse_event_log(data))

                def ours_summary(data: bytes = data) -> None:
                    log = parse_event_log(data)
                    replay(log)
                    summarize(log)

                try:
                    failure, result = p.parse_binary_bootlog(data)
                    refusal = None if result is not None else \
                        f"refuses it ({', '.join(sorted(failure.get_event_ids()))})"
                except Exception as exc:  # noqa: BLE001 - report it, time ours alone
                    refusal = f"raises {type(exc).__name__}: {exc}"
                if refusal is not None:
                    notes.append(f"{name}: Keylime's parser {refusal}")
                    got = race({"ours": ours, "ours_summary": ours_summary}, seconds / 2)
                    rows.append((name, {**got, "ours_ok": ours_ok}))
                    continue
                wrong = keylime_mismatches(result["pcrs"], info["expected_pcrs"])
                if wrong:
                    notes.append(f"{name}: Keylime's parse gives other values than the real "
                                 f"TPM for {', '.join(wrong)}")
                got = race({"ours": ours, "ours_summary": ours_summary, "whole": whole,
                            "tool": tool, "post": post}, seconds)
            rows.append((name, {**got, "ours_ok": ours_ok,
                         "theirs_ok": not wrong if ours_ok is not None else None}))
    return rows, notes


# --- IMA ----------------------------------------------------------------------------

def synthetic_lists(count: int) -> tuple[str, bytes]:
    """An ima-ng list of ``count`` file measurements (SHA-256 file digests, SHA-1
    template hashes) as /sys/kernel/security/ima/ascii_runtime_measurements prints it,
    and the same list as binary_runtime_measurements."""
    lines, binary = [], []
    for i in range(count):
        path, digest = f"/usr/lib/x86_64-linux-gnu/lib{i}.so.6", hashlib.sha256(
            str(i).encode()).digest()
        data = template_data(path, "sha256", digest)
        th = hashlib.sha1(data).hexdigest()  # noqa: S324 - IMA's template hash is SHA-1
        lines.append(f"10 {th} ima-ng sha256:{digest.hex()} {path}")
        binary.append(binary_entry(data))
    return "\n".join(lines) + "\n", b"".join(binary)


def ima_case(kl: dict[str, Any], text: str, bank: str, binary: bytes | None = None,
             ) -> dict[str, Callable[[], object]]:
    """Both sides parse the ASCII list, check every template hash (SHA-1) and replay
    PCR10 in ``bank`` until it equals the quoted value (the list's final one); with
    ``binary``, edgeproof also does the same on the binary form of the list (what its
    agent sends; Keylime's verifier takes only the ASCII form)."""
    ima, algorithms = kl["ima"], kl["algorithms"]
    pcr10 = replay_ima(parse_ascii(text), [bank]).state.pcrs[bank][10]
    quoted = {bank: {10: pcr10}}
    alg = algorithms.Hash.SHA1 if bank == "sha1" else algorithms.Hash.SHA256

    def ours() -> None:
        r = replay_ima(parse_ascii(text), [bank], quoted=quoted, check_template_hashes=True)
        if r.pending or r.template_hash_failures:
            raise AssertionError(r)

    def ours_default() -> None:
        replay_ima(parse_ascii(text), [bank], quoted=quoted)

    def theirs() -> None:
        running, failure = ima.process_measurement_list(None, text.split("\n"), None,
                                                        pcr10.hex(), hash_alg=alg)
        if failure or running != pcr10.hex():
            raise AssertionError(failure.get_event_ids())

    def ours_binary() -> None:
        r = replay_ima(parse_binary(binary or b"").entries, [bank], quoted=quoted,
                       check_template_hashes=True)
        if r.pending or r.template_hash_failures:
            raise AssertionError(r)

    contenders: dict[str, Callable[[], object]] = {"ours": ours, "theirs": theirs}
    if bank != "sha1":
        contenders["ours_default"] = ours_default
    if binary is not None:
        contenders["ours_binary"] = ours_binary
    return contenders


def ima_rows(kl: dict[str, Any], corpus: Path, seconds: float) -> list[Row]:
    real = (corpus / "ima" / "rust-keylime-ascii_runtime_measurements").read_text()
    rows: list[Row] = []
    synthetic, binary = synthetic_lists(50_000)
    for label, text, bank, binary_form in (
            ("826-entry ASCII list (real), SHA-1 bank", real, "sha1", None),
            ("50,000-entry ASCII ima-ng list (synthetic), SHA-256 bank", synthetic, "sha256",
             binary)):
        # A 50,000-entry call takes a few hundred ms: give the row more rounds.
        got = race(ima_case(kl, text, bank, binary_form),
                   seconds if binary_form is None else 3 * seconds)
        rows.append((label, {**got, "entries": float(len(parse_ascii(text)))}))
    return rows
