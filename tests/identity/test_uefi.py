"""UEFI event-data decoders on real machines' logs, and on hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.errors import EventLogMalformed
from identity.eventlog import events as ev
from identity.eventlog.summary import summarize
from identity.eventlog.tcg import parse_event_log
from identity.eventlog.uefi import (
    decode_gpt,
    decode_image_load,
    decode_signature_lists,
    decode_text,
    decode_variable,
    device_path_text,
)

pytestmark = pytest.mark.corpus


def _log(corpus: Path, name: str):  # type: ignore[no-untyped-def]
    folder = "eventlogs" if name.endswith(".bin") else "eventlogs-edge"
    return parse_event_log((corpus / folder / name).read_bytes())


def test_secure_boot_databases_of_a_real_machine(corpus: Path) -> None:
    summary = summarize(_log(corpus, "rhel8-uefi.bin"))
    assert summary.secure_boot is True
    dbx = summary.databases["dbx"]
    assert len(dbx) == 186 and sum(e.kind == "sha256" for e in dbx) >= 180
    kek = summary.databases["KEK"][0]
    assert kek.kind == "x509" and "Microsoft Corporation KEK CA 2011" in kek.describe()


def test_secure_boot_off_and_missing_dbx(corpus: Path) -> None:
    assert summarize(_log(corpus, "ubuntu-2104-no-secure-boot.bin")).secure_boot is False
    assert summarize(_log(corpus, "ubuntu-2104-no-dbx.bin")).databases["dbx"] == []


def test_boot_applications_kernel_and_cmdline(corpus: Path) -> None:
    summary = summarize(_log(corpus, "ubuntu-1804-amd-sev.bin"))
    assert summary.kernel == "/boot/vmlinuz-5.4.0-1046-gcp"
    assert summary.cmdline is not None and "root=LABEL=cloudimg-rootfs" in summary.cmdline
    assert all(len(a.digests["sha256"]) == 64 for a in summary.boot_applications)
    assert summarize(_log(corpus, "ubuntu-2104-no-dbx.bin")).sbat_level == "sbat,1,2021030218"


def test_device_paths_read_as_text(corpus: Path) -> None:
    for name in json.loads((corpus / "eventlogs" / "manifest.json").read_text()):
        for event in _log(corpus, name).events:
            if event.type == ev.EV_EFI_BOOT_SERVICES_APPLICATION:
                path = decode_image_load(event.data).device_path
                # Loaded from disk: a full path ending in the file; from memory: none.
                assert path == "" or path.split("/")[-1].startswith("\\")
                assert "Path(" not in path


def test_gpt_event_of_a_real_machine(corpus: Path) -> None:
    gpt = next(e for e in _log(corpus, "ebs_event_missing_eventlog").events
               if e.type == ev.EV_EFI_GPT_EVENT)
    partitions = decode_gpt(gpt.data)
    assert partitions and all(p.first_lba <= p.last_lba for p in partitions)


@pytest.mark.parametrize("decode", [decode_variable, decode_signature_lists, decode_image_load,
                                    decode_gpt, device_path_text])
def test_truncated_structures_are_refused(corpus: Path, decode: object) -> None:
    log = _log(corpus, "rhel8-uefi.bin")
    samples = [e.data for e in log.events if e.type in (
        ev.EV_EFI_VARIABLE_DRIVER_CONFIG, ev.EV_EFI_BOOT_SERVICES_APPLICATION)]
    for data in samples[:4]:
        for cut in (1, 17, 31, len(data) // 2):
            try:
                decode(data[:cut])  # type: ignore[operator]
            except EventLogMalformed:
                pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decoders_only_raise_their_typed_error(data: bytes) -> None:
    for decode in (decode_variable, decode_signature_lists, decode_image_load, decode_gpt,
                   device_path_text, decode_text):
        try:
            decode(data)  # type: ignore[operator]
        except EventLogMalformed:
            pass
