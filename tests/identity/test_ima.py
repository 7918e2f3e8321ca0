"""IMA measurement lists: real lists, replay (incremental, ahead of the quote), the boot
aggregate, allowlists and ima-sig signatures."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.ima import binary_entry, template_data
from identity.checks import CheckRunner
from identity.errors import (
    ImaBootAggregateMismatch,
    ImaMalformed,
    ImaReplayMismatch,
    ImaUnsupportedTemplate,
)
from identity.ima.appraise import ImaPolicy, appraise_ima, key_id, learn_ima
from identity.ima.log import ImaEntry, parse_ascii, parse_binary
from identity.ima.replay import ImaState, check_boot_aggregate, replay_ima

BINARY = ["sml-ima-sha1.bin", "sml-ima-ng-sha1.bin", "sml-ima-sig-sha256.bin",
          "sml-ima-sha1-invalidated.bin", "sml-ima-sig-sha256-invalidated.bin",
          "sml-ima-ng-sha1-invalidated.bin"]


@pytest.mark.corpus
@pytest.mark.parametrize("name", BINARY)
def test_every_real_entry_has_a_verifying_template_hash(corpus: Path, name: str) -> None:
    listing = parse_binary((corpus / "ima" / name).read_bytes())
    result = replay_ima(listing.entries, ["sha1", "sha256"], check_template_hashes=True)
    assert result.template_hash_failures == []
    assert result.violations == sum(e.violation for e in listing.entries)
    if "invalidated" in name and listing.entries:
        assert result.violations >= 1  # the invalidated lists show their violations


@pytest.mark.corpus
def test_the_826_entry_ascii_list(corpus: Path) -> None:
    entries = parse_ascii((corpus / "ima" / "rust-keylime-ascii_runtime_measurements")
                          .read_text())
    assert len(entries) == 826 and entries[0].path == "boot_aggregate"
    result = replay_ima(entries, ["sha1"])
    assert result.template_hash_failures == [] and result.violations == 0


def _list(paths: list[str]) -> tuple[bytes, list[bytes]]:
    datas = [template_data(p, "sha256", hashlib.sha256(p.encode()).digest()) for p in paths]
    return b"".join(binary_entry(d) for d in datas), datas


def _pcr10(datas: list[bytes], bank: str = "sha256") -> bytes:
    value = b"\x00" * hashlib.new(bank).digest_size
    for data in datas:
        value = hashlib.new(bank, value + hashlib.new(bank, data).digest()).digest()
    return value


def test_incremental_replay_equals_the_whole() -> None:
    blob, datas = _list([f"/bin/f{i}" for i in range(10)])
    entries = parse_binary(blob).entries
    whole = replay_ima(entries, ["sha256"], quoted={"sha256": {10: _pcr10(datas)}})
    first = replay_ima(entries[:6], ["sha256"], quoted={"sha256": {10: _pcr10(datas[:6])}})
    rest = replay_ima(entries[6:], ["sha256"], first.state, {"sha256": {10: _pcr10(datas)}})
    assert rest.state == whole.state and rest.state.entries == 10
    assert ImaState.from_dict(rest.state.as_dict()) == rest.state


def test_list_ahead_of_the_quote_is_accepted_up_to_it() -> None:
    blob, datas = _list([f"/bin/f{i}" for i in range(5)])
    result = replay_ima(parse_binary(blob).entries, ["sha256"],
                        quoted={"sha256": {10: _pcr10(datas[:3])}})
    assert (result.accepted, result.pending) == (3, 2)


def test_list_that_never_reaches_the_quote_is_refused() -> None:
    blob, _ = _list(["/bin/a", "/bin/b"])
    with pytest.raises(ImaReplayMismatch):
        replay_ima(parse_binary(blob).entries, ["sha256"], quoted={"sha256": {10: b"\x01" * 32}})


def test_violation_extends_ff() -> None:
    data = template_data("/bin/open-for-write", "sha256", b"\x00" * 32)
    entry = struct.pack("<I", 10) + b"\x00" * 20 + struct.pack("<I", 6) + b"ima-ng" + \
        struct.pack("<I", len(data)) + data
    result = replay_ima(parse_binary(entry).entries, ["sha256"])
    assert result.violations == 1
    assert result.state.pcr10["sha256"] == hashlib.sha256(b"\x00" * 32 + b"\xff" * 32).digest()


def test_boot_aggregate() -> None:
    pcrs = {"sha256": {i: hashlib.sha256(bytes([i])).digest() for i in range(10)}}
    aggregate = hashlib.sha256(b"".join(pcrs["sha256"][i] for i in range(8))).digest()
    good = parse_binary(binary_entry(template_data("boot_aggregate", "sha256", aggregate)))
    check_boot_aggregate(good.entries, pcrs)
    with_8_9 = hashlib.sha256(b"".join(pcrs["sha256"][i] for i in range(10))).digest()
    check_boot_aggregate(parse_binary(binary_entry(
        template_data("boot_aggregate", "sha256", with_8_9))).entries, pcrs)
    forged = parse_binary(binary_entry(template_data("boot_aggregate", "sha256", b"\x00" * 32)))
    with pytest.raises(ImaBootAggregateMismatch):
        check_boot_aggregate(forged.entries, pcrs)


def test_unsupported_template_is_named() -> None:
    entry = struct.pack("<I", 10) + b"\x01" * 20 + struct.pack("<I", 7) + b"evm-sig" + \
        struct.pack("<I", 0)
    with pytest.raises(ImaUnsupportedTemplate, match="evm-sig"):
        parse_binary(entry)
    with pytest.raises(ImaUnsupportedTemplate):
        parse_ascii("10 " + "00" * 20 + " my-template sha256:00 /x\n")


def _entry(path: str, contents: bytes, signature: bytes = b"") -> ImaEntry:
    digest = hashlib.sha256(contents).digest()
    return ImaEntry(10, b"\x01" * 20, "ima-sig", b"", "sha256", digest, path, signature)


def _signature(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    else:
        sig = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return bytes([3, 2, 4]) + key_id(key.public_key()) + struct.pack(">H", len(sig)) + sig


@pytest.mark.adversarial
@pytest.mark.parametrize("make_key", [lambda: rsa.generate_private_key(65537, 2048),
                                      lambda: ec.generate_private_key(ec.SECP256R1())])
def test_ima_sig_signatures(make_key) -> None:  # type: ignore[no-untyped-def]
    key, other = make_key(), make_key()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    policy = ImaPolicy(trusted_keys=(pem,))
    good = _entry("/usr/bin/app", b"app")
    signed = good._replace(signature=_signature(key, good.digest))
    by_other = good._replace(signature=_signature(other, good.digest))
    wrong_file = good._replace(signature=_signature(key, hashlib.sha256(b"x").digest()))
    runner = CheckRunner()
    appraise_ima(runner, policy, [signed])
    assert runner.passed
    for forged in (by_other, wrong_file):
        runner = CheckRunner()
        appraise_ima(runner, policy, [forged])
        assert "ima.signature_invalid" in runner.reason_codes


@pytest.mark.adversarial
def test_allowlist_and_excludes() -> None:
    known, unknown = _entry("/usr/bin/app", b"app"), _entry("/usr/bin/evil", b"evil")
    changed = _entry("/usr/bin/app", b"patched app")
    policy = learn_ima([known]).model_copy(update={"excludes": (r"/var/log/.*",)})
    for entries, ok in (([known], True), ([unknown], False), ([changed], False),
                        ([_entry("/var/log/x", b"log")], True)):
        runner = CheckRunner()
        appraise_ima(runner, policy, entries)
        assert runner.passed is ok
        assert ok or runner.reason_codes == ["ima.file_not_allowed"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800))
def test_binary_parser_only_raises_its_typed_error(data: bytes) -> None:
    try:
        parse_binary(data)
    except ImaMalformed:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_ascii_parser_only_raises_its_typed_error(text: str) -> None:
    try:
        parse_ascii(text)
    except ImaMalformed:
        pass
