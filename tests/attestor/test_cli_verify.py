"""`attestor quote verify` and `attestor ekcert check` on genuine swtpm output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from agent.sim.swtpm import Manufacturer
from attestor.cli import app
from identity.pcr import PcrSelection, format_pcr_values
from identity.tpm.keys import public_key
from identity.tpm.structures import parse_public
from tests.harness import Device

pytestmark = pytest.mark.tpm
SEL = PcrSelection.of({"sha256": range(8)})
NONCE = "00112233445566778899aabbccddeeff"


@pytest.fixture
def quote_files(device: Device, tmp_path: Path) -> dict[str, Path]:
    tpm = device.tpm
    tpm.ensure_srk()
    ak = tpm.create_ak()
    signed = tpm.quote(SEL, bytes.fromhex(NONCE))
    files = {"ak": tmp_path / "ak.pub", "message": tmp_path / "quote.msg",
             "signature": tmp_path / "quote.sig", "pcrs": tmp_path / "pcrs.json",
             "ak_pem": tmp_path / "ak.pem"}
    files["ak"].write_bytes(ak)
    files["message"].write_bytes(signed.attest)
    files["signature"].write_bytes(signed.signature)
    files["pcrs"].write_text(json.dumps(format_pcr_values(tpm.pcr_read(SEL))))
    files["ak_pem"].write_bytes(public_key(parse_public(ak)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return files


def _verify(files: dict[str, Path], ak: str = "ak", nonce: str = NONCE,
            *extra: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, [
        "quote", "verify", "--ak", str(files[ak]), "--message", str(files["message"]),
        "--signature", str(files["signature"]), "--nonce", nonce,
        "--pcrs", str(files["pcrs"]), "--json", *extra])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_genuine_quote_verifies(quote_files: dict[str, Path]) -> None:
    code, report = _verify(quote_files, "ak", NONCE, "--require", "sha256:0,1,2,3,4,5,6,7")
    assert code == 0 and report["valid"] is True
    assert report["selection"] == "sha256:0,1,2,3,4,5,6,7"


def test_pem_ak_is_accepted(quote_files: dict[str, Path]) -> None:
    assert _verify(quote_files, "ak_pem")[0] == 0


def test_wrong_nonce_exits_1_with_its_code(quote_files: dict[str, Path]) -> None:
    code, report = _verify(quote_files, "ak", "ff" * 16)
    assert code == 1 and report["codes"] == ["quote.nonce_mismatch"]


def test_altered_pcr_file_exits_1(quote_files: dict[str, Path]) -> None:
    values = json.loads(quote_files["pcrs"].read_text())
    values["sha256"]["4"] = "00" * 32
    quote_files["pcrs"].write_text(json.dumps(values))
    code, report = _verify(quote_files)
    assert code == 1 and report["codes"] == ["quote.pcr_digest_mismatch"]


def test_garbage_message_exits_1_with_malformed(quote_files: dict[str, Path]) -> None:
    quote_files["message"].write_bytes(b"\x00" * 10)
    code, report = _verify(quote_files)
    assert code == 1 and report["codes"] == ["tpm.malformed"]


def test_ekcert_check(device: Device, manufacturer: Manufacturer,
                      rogue_manufacturer: Manufacturer, tmp_path: Path) -> None:
    cert = tmp_path / "ek.der"
    endorsement = device.tpm.endorsement()
    assert endorsement.certificate is not None
    cert.write_bytes(endorsement.certificate)
    for name, maker in (("good", manufacturer), ("rogue", rogue_manufacturer)):
        trust = tmp_path / name
        trust.mkdir()
        for source in (maker.root_certificate, maker.intermediate_certificate):
            (trust / source.name).write_bytes(source.read_bytes())
    runner = CliRunner()
    good = runner.invoke(app, ["ekcert", "check", str(cert), "--trust", str(tmp_path / "good"),
                               "--json"])
    assert good.exit_code == 0
    assert json.loads(good.stdout)["model"] == "swtpm"
    rogue = runner.invoke(app, ["ekcert", "check", str(cert), "--trust",
                                str(tmp_path / "rogue"), "--json"])
    assert rogue.exit_code == 1
    assert json.loads(rogue.stdout)["codes"] == ["ek.chain_untrusted"]
