"""One test per entry of the quirk table (identity/quirks.py), each on a fixture that
reproduces the quirk; a table entry without a test fails the suite."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.sim.ima import binary_entry, template_data
from identity.errors import (
    EventLogBankIncomplete,
    EventLogMalformed,
    EventLogReplayMismatch,
    ImaMalformed,
    ImaPcrNotQuoted,
    ImaReplayMismatch,
)
from identity.eventlog.events import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_HCRTM_EVENT,
    EV_NO_ACTION,
    EV_POST_CODE,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)
from identity.eventlog.replay import check_replay_matches, replay
from identity.eventlog.tcg import encode_agile_event, encode_spec_id_event, parse_event_log
from identity.ima.log import bank_of_file, parse_binary
from identity.ima.replay import replay_ima
from identity.quirks import EXIT_BOOT_SERVICES_VARIANTS, QUIRKS

TESTS: dict[str, Callable[..., None]] = {}


def quirk(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        TESTS[name] = fn
        return fn
    return register


def _h(bank: str, data: bytes) -> bytes:
    return hashlib.new(bank, data).digest()


def _extend(bank: str, *digests: bytes, start: bytes | None = None) -> bytes:
    value = start if start is not None else b"\x00" * hashlib.new(bank).digest_size
    for digest in digests:
        value = _h(bank, value + digest)
    return value


def _event(pcr: int, etype: int, data: bytes, banks: tuple[str, ...]) -> bytes:
    return encode_agile_event(pcr, etype, {b: _h(b, data) for b in banks}, data)


SEP = b"\x00" * 4


# Event logs ---------------------------------------------------------------------------

def _ebs_log(banks: tuple[str, ...] = ("sha256",)) -> bytes:
    return encode_spec_id_event(banks) + _event(5, EV_SEPARATOR, SEP, banks) + _event(
        5, EV_EFI_ACTION, b"Calling EFI Application from Boot Option", banks)


def _ebs_case(variant: str) -> None:
    events = dict(EXIT_BOOT_SERVICES_VARIANTS)[variant]
    log = parse_event_log(_ebs_log())
    logged = [_h("sha256", SEP), _h("sha256", b"Calling EFI Application from Boot Option")]
    quoted = {"sha256": {5: _extend("sha256", *logged, *(_h("sha256", e) for e in events))}}
    warnings = check_replay_matches(log, quoted)
    assert len(warnings) == 1 and variant in warnings[0]
    assert warnings[0].startswith("eventlog.exit_boot_services_missing")
    with pytest.raises(EventLogReplayMismatch):  # a PCR5 no variant explains
        check_replay_matches(log, {"sha256": {5: _extend("sha256", *logged, b"\x01" * 32)}})


@quirk("eventlog.ebs_success_unlogged")
def test_ebs_success_unlogged() -> None:
    _ebs_case("eventlog.ebs_success_unlogged")


@quirk("eventlog.ebs_failure_unlogged")
def test_ebs_failure_unlogged() -> None:
    _ebs_case("eventlog.ebs_failure_unlogged")


@quirk("eventlog.ebs_failure_success_unlogged")
def test_ebs_failure_success_unlogged() -> None:
    _ebs_case("eventlog.ebs_failure_success_unlogged")


def partial_bank_log() -> tuple[bytes, dict[str, dict[int, bytes]]]:
    """Spec ID lists sha1 and sha256; the boot application on PCR4 carries only a SHA-1
    digest (as firmware that logs fewer banks than it lists). Returns the log and the
    PCRs a TPM would hold (sha256 PCR4 measured by the TPM, not in the log)."""
    both = ("sha1", "sha256")
    app = struct.pack("<QQQQ", 0x7E000000, 0x1A000, 0, 0)  # UEFI_IMAGE_LOAD_EVENT
    log = (encode_spec_id_event(both) + _event(0, EV_S_CRTM_VERSION, b"v1", both)
           + _event(0, EV_SEPARATOR, SEP, both) + _event(4, EV_SEPARATOR, SEP, both)
           + encode_agile_event(4, EV_EFI_BOOT_SERVICES_APPLICATION,
                                {"sha1": _h("sha1", app)}, app))
    pcrs = {bank: {0: _extend(bank, _h(bank, b"v1"), _h(bank, SEP)),
                   4: _extend(bank, _h(bank, SEP), _h(bank, app))} for bank in both}
    return log, pcrs


@quirk("eventlog.partial_bank_digests")
def test_partial_bank_digests() -> None:
    data, pcrs = partial_bank_log()
    log = parse_event_log(data)  # refused whole before
    assert log.banks == ("sha1", "sha256") and log.incomplete_pcrs("sha256") == {4}
    result = replay(log)
    assert result.values["sha1"] == pcrs["sha1"]
    assert result.values["sha256"] == {0: pcrs["sha256"][0]}  # PCR4: no value, not a guess
    assert check_replay_matches(log, {"sha1": pcrs["sha1"]}) == []
    assert check_replay_matches(log, {"sha256": {0: pcrs["sha256"][0]}}) == []
    with pytest.raises(EventLogBankIncomplete, match=r"sha256 PCR 4 .*event 4"):
        check_replay_matches(log, {"sha1": pcrs["sha1"], "sha256": pcrs["sha256"]})


@pytest.mark.adversarial
def test_a_stripped_digest_cannot_stand_for_a_measured_bootloader() -> None:
    """The forgery: the device booted an unknown loader (the quoted sha256 PCR4 says so);
    the log sent keeps a known loader's SHA-1 digest on that event and drops its sha256
    digest, hoping a partial replay skips what it cannot check."""
    good, evil = b"\\EFI\\BOOT\\BOOTX64.EFI", b"\\EFI\\BOOT\\EVIL.EFI"
    both = ("sha1", "sha256")
    forged = parse_event_log(
        encode_spec_id_event(both) + _event(4, EV_SEPARATOR, SEP, both)
        + encode_agile_event(4, EV_EFI_BOOT_SERVICES_APPLICATION,
                             {"sha1": _h("sha1", good)}, good))
    quoted = {"sha256": {4: _extend("sha256", _h("sha256", SEP), _h("sha256", evil))}}
    with pytest.raises(EventLogBankIncomplete) as caught:
        check_replay_matches(forged, quoted)
    assert caught.value.code == "eventlog.bank_incomplete"


@quirk("eventlog.unknown_spec_id_algorithm")
def test_unknown_spec_id_algorithm() -> None:
    sha3 = 0x0027  # TPM_ALG_SHA3_256
    data = encode_spec_id_event(("sha256",), extra=((sha3, 32),)) + encode_agile_event(
        7, EV_SEPARATOR, {"sha256": _h("sha256", SEP)}, SEP, unknown=((sha3, b"\x33" * 32),))
    log = parse_event_log(data)
    assert log.banks == ("sha256",) and log.skipped_algorithms == (sha3,)
    assert log.events[1].digests == {"sha256": _h("sha256", SEP)}
    check_replay_matches(log, {"sha256": {7: _extend("sha256", _h("sha256", SEP))}})
    with pytest.raises(EventLogMalformed, match="no algorithm this verifier supports"):
        parse_event_log(encode_spec_id_event((), extra=((sha3, 32),)))


@quirk("eventlog.startup_locality")
def test_startup_locality() -> None:
    digest = _h("sha256", b"crtm")
    log = parse_event_log(encode_spec_id_event(("sha256",)) + encode_agile_event(
        0, EV_NO_ACTION, {"sha256": b"\x00" * 32}, b"StartupLocality\x00\x03")
        + encode_agile_event(0, EV_S_CRTM_VERSION, {"sha256": digest}, b"v"))
    assert replay(log).values["sha256"][0] == _extend("sha256", digest,
                                                       start=b"\x00" * 31 + b"\x03")


@quirk("eventlog.hcrtm")
def test_hcrtm() -> None:
    digest = _h("sha256", b"HCRTM")
    log = parse_event_log(encode_spec_id_event(("sha256",)) + encode_agile_event(
        0, EV_EFI_HCRTM_EVENT, {"sha256": digest}, b"HCRTM"))
    assert replay(log).values["sha256"][0] == _extend("sha256", digest,
                                                       start=b"\x00" * 31 + b"\x04")


@quirk("eventlog.no_action_pcr_minus_one")
def test_no_action_pcr_minus_one() -> None:
    zero = {"sha256": b"\x00" * 32}
    log = parse_event_log(encode_spec_id_event(("sha256",)) + encode_agile_event(
        0xFFFFFFFF, EV_NO_ACTION, zero, b"windows"))
    assert log.events[1].pcr == 0xFFFFFFFF and replay(log).values["sha256"] == {}
    with pytest.raises(EventLogMalformed, match="out of range"):
        parse_event_log(encode_spec_id_event(("sha256",)) + encode_agile_event(
            0xFFFFFFFF, EV_POST_CODE, zero, b"x"))


# IMA ----------------------------------------------------------------------------------

def _datas(paths: list[str]) -> list[bytes]:
    return [template_data(p, "sha256", _h("sha256", p.encode())) for p in paths]


@quirk("ima.per_bank_list")
def test_per_bank_list() -> None:
    datas = _datas(["boot_aggregate", "/usr/bin/a", "/usr/bin/b"])
    for bank in ("sha256", "sha384", "sha512"):
        blob = b"".join(binary_entry(d, bank=bank) for d in datas)
        listing = parse_binary(blob)  # told from the first entry
        assert listing.bank == bank and len(listing.entries) == 3 and not listing.trailing
        assert parse_binary(blob, bank_of_file(f"binary_runtime_measurements_{bank}")) \
            == listing
        assert all(e.template_hash == _h(bank, d) for e, d in zip(listing.entries, datas,
                                                                  strict=True))
        result = replay_ima(listing.entries, [bank], list_bank=bank)
        assert result.template_hash_failures == []
        assert result.state.pcr10[bank] == _extend(bank, *(_h(bank, d) for d in datas))
        with pytest.raises(ImaMalformed, match="template name length"):
            parse_binary(blob, "sha1")  # the old parser's view of this list
    assert bank_of_file("binary_runtime_measurements_sm3") == "sm3_256"
    with pytest.raises(ImaMalformed):
        bank_of_file("binary_runtime_measurements_md5")


@quirk("ima.pcr_other_than_10")
def test_pcr_other_than_10() -> None:
    datas = _datas(["boot_aggregate", "/etc/app.conf", "/usr/bin/a"])
    blob = (binary_entry(datas[0]) + binary_entry(datas[1], pcr=13)
            + binary_entry(datas[2]))
    entries = parse_binary(blob).entries
    quoted = {10: _extend("sha256", _h("sha256", datas[0]), _h("sha256", datas[2])),
              13: _extend("sha256", _h("sha256", datas[1]))}
    result = replay_ima(entries, ["sha256"], quoted={"sha256": quoted})
    assert result.accepted == 3 and result.state.pcrs["sha256"] == quoted
    with pytest.raises(ImaPcrNotQuoted, match="PCR 13"):
        replay_ima(entries, ["sha256"], quoted={"sha256": {10: quoted[10]}})
    with pytest.raises(ImaReplayMismatch):  # PCR13 forged: PCR10 alone no longer decides
        replay_ima(entries, ["sha256"], quoted={"sha256": {**quoted, 13: b"\x00" * 32}})


@pytest.mark.corpus
def test_the_corpus_pcr13_entry(corpus: Path) -> None:
    """sml-ima-ng-sha1-invalidated.bin lacks the last byte of its only entry (the NUL
    after 'boot_aggregate'); restored, the entry is a violation on PCR 13."""
    data = (corpus / "ima" / "sml-ima-ng-sha1-invalidated.bin").read_bytes()
    listing = parse_binary(data)
    assert listing.entries == [] and listing.trailing == len(data)
    assert listing.cut == ("entry 0 (PCR 13, ima-ng) declares 49 bytes of template data, "
                           "48 follow")
    entry, = parse_binary(data + b"\x00").entries
    assert (entry.pcr, entry.path, entry.violation) == (13, "boot_aggregate", True)
    for bank in ("sha1", "sha256"):
        ff = b"\xff" * hashlib.new(bank).digest_size
        result = replay_ima([entry], [bank], quoted={bank: {13: _extend(bank, ff)}})
        assert result.state.pcrs[bank] == {13: _extend(bank, ff)} and result.violations == 1


@quirk("ima.violation_ff")
def test_violation_ff_in_a_per_bank_list() -> None:
    data = template_data("/var/log/open-for-write", "sha256", b"\x00" * 32)
    entry = struct.pack("<I", 10) + b"\x00" * 32 + struct.pack("<I", 6) + b"ima-ng" + \
        struct.pack("<I", len(data)) + data
    listing = parse_binary(entry, "sha256")
    assert listing.entries[0].violation
    result = replay_ima(listing.entries, ["sha256"], list_bank="sha256")
    assert result.violations == 1 and result.template_hash_failures == []
    assert result.state.pcr10["sha256"] == _extend("sha256", b"\xff" * 32)


@quirk("ima.padded_sha1_extend")
def test_padded_sha1_extend() -> None:
    datas = _datas(["boot_aggregate", "/usr/bin/a"])
    violation = template_data("/tmp/x", "sha256", b"\x00" * 32)
    blob = b"".join(binary_entry(d) for d in datas) + struct.pack("<I", 10) + \
        b"\x00" * 20 + struct.pack("<I", 6) + b"ima-ng" + struct.pack("<I", len(violation)) \
        + violation
    entries = parse_binary(blob).entries
    pre58 = _extend("sha256", *(_h("sha1", d).ljust(32, b"\x00") for d in datas),
                    (b"\xff" * 20).ljust(32, b"\x00"))
    with pytest.raises(ImaReplayMismatch):
        replay_ima(entries, ["sha256"], quoted={"sha256": {10: pre58}})
    result = replay_ima(entries, ["sha256"], quoted={"sha256": {10: pre58}}, padded_sha1=True)
    assert result.accepted == 3 and result.template_hash_failures == []
    rewritten = entries[1]._replace(data=template_data("/usr/bin/b", "sha256", b"\x01" * 32))
    forged = replay_ima([entries[0], rewritten, entries[2]], ["sha256"],
                        quoted={"sha256": {10: pre58}}, padded_sha1=True)
    assert forged.template_hash_failures == [1]  # the padded form extends the hash: checked


@quirk("ima.truncated_copy")
def test_truncated_copy() -> None:
    whole = b"".join(binary_entry(d, bank="sha256") for d in _datas(["boot_aggregate", "/a"]))
    listing = parse_binary(whole[:-3], "sha256")
    assert len(listing.entries) == 1 and listing.trailing == len(whole) - 3 - listing.offsets[1]
    assert listing.cut.startswith("entry 1 (PCR 10, ima-ng) declares")
    assert parse_binary(whole + b"\n", "sha256").cut == "1 stray bytes after entry 1"


def test_every_quirk_has_a_test() -> None:
    assert {q.id for q in QUIRKS} == set(TESTS)
    assert all(q.source and q.handling for q in QUIRKS)
