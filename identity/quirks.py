"""The table of real-world evidence layouts and firmware/kernel quirks the verifier handles.

Each entry names one layout or quirk seen in the field, where it is documented or
handled elsewhere (the project or file we learned it from), and what edgeproof does
about it. ``tests/identity/test_quirks.py`` holds one test per entry, each built from a
fixture that reproduces the quirk, and fails if an entry has no test;
docs/measured-boot.md lists them. Identifiers are stable: warnings and docs name them.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from identity.eventlog.events import (
    EXIT_BOOT_SERVICES_FAILED,
    EXIT_BOOT_SERVICES_INVOCATION,
    EXIT_BOOT_SERVICES_RETURNED,
)


class Quirk(NamedTuple):
    id: str
    area: str  # "eventlog" or "ima"
    what: str  # the layout or behaviour, in a sentence
    source: str  # where it is documented or handled elsewhere
    handling: str  # what edgeproof does


QUIRKS: Final[tuple[Quirk, ...]] = (
    Quirk("eventlog.ebs_success_unlogged", "eventlog",
          "firmware extends PCR5 with 'Exit Boot Services Invocation' and '... Returned with "
          "Success' without logging either event",
          "google/go-attestation attest/eventlog_workarounds.go (EBS Invocation + Success)",
          "PCR5 is retried with both events appended; accepted with the warning "
          "eventlog.exit_boot_services_missing when only that makes it match"),
    Quirk("eventlog.ebs_failure_unlogged", "eventlog",
          "as above, with '... Returned with Failure' instead of Success",
          "google/go-attestation attest/eventlog_workarounds.go (EBS Invocation + Failure)",
          "retried and reported like eventlog.ebs_success_unlogged"),
    Quirk("eventlog.ebs_failure_success_unlogged", "eventlog",
          "as above: Invocation, Failure, then Success (Exit Boot Services called twice)",
          "google/go-attestation attest/eventlog_workarounds.go "
          "(EBS Invocation + Failure + Success)",
          "retried and reported like eventlog.ebs_success_unlogged"),
    Quirk("eventlog.partial_bank_digests", "eventlog",
          "events carry digests for fewer banks than the Spec ID event lists",
          "tpm2-software/tpm2-tools lib/tpm2_eventlog.c (extends whatever digests an event "
          "carries); google/go-attestation attest/eventlog.go parseRawEvent2 (accepts, then "
          "fails replay of a PCR whose event lacks the bank)",
          "parsed; each bank replays the PCRs every event covers; a quoted PCR in a bank "
          "an event lacks is refused with eventlog.bank_incomplete, the other banks judged"),
    Quirk("eventlog.unknown_spec_id_algorithm", "eventlog",
          "the Spec ID event lists an algorithm the verifier cannot compute (SHA3-256, say)",
          "TCG PC Client PFP 10.4.5.1 (digestSizes lets a parser skip algorithms it does not "
          "know); go-attestation refuses such logs",
          "its digests are skipped by the size the Spec ID gives; the bank is not replayed "
          "(a quote of only that bank fails eventlog.replay_mismatch)"),
    Quirk("eventlog.startup_locality", "eventlog",
          "a StartupLocality EV_NO_ACTION event: PCR0 starts at the locality (3 with TXT)",
          "TCG PC Client PFP 10.4.5.3; go-attestation replayPCR; tpm2_eventlog foreach_event2",
          "PCR0's initial value ends in the locality byte"),
    Quirk("eventlog.hcrtm", "eventlog",
          "an H-CRTM event: PCR0 starts at 4",
          "TPM 2.0 Part 1, 34.3; tpm2_eventlog foreach_digest2",
          "PCR0's initial value ends in 4"),
    Quirk("eventlog.no_action_pcr_minus_one", "eventlog",
          "Windows logs EV_NO_ACTION events on PCR index 0xFFFFFFFF",
          "google/go-attestation attest/testdata (Windows logs)",
          "accepted for EV_NO_ACTION only; any other event on that index is malformed"),
    Quirk("ima.per_bank_list", "ima",
          "binary_runtime_measurements_<bank>: each entry's template hash has that bank's "
          "size (32 bytes for SHA-256); the template data is the same in every list",
          "Linux security/integrity/ima/ima_fs.c (ima_measurements_show, "
          "create_securityfs_measurement_lists; 'ima: add crypto agility support for "
          "template-hash algorithm')",
          "the bank comes from the file name, the request's ima_bank, or the first entry; "
          "the template hashes are checked in that bank"),
    Quirk("ima.pcr_other_than_10", "ima",
          "an IMA policy rule with pcr=N extends its entries into PCR N instead of 10",
          "Linux Documentation/ABI/testing/ima_policy (pcr=); ima_fs.c prints e->pcr; "
          "Keylime flags entries off its configured PCR",
          "every PCR the list touches is replayed and compared with its quoted value; a PCR "
          "the quote lacks fails ima.pcr_not_quoted"),
    Quirk("ima.violation_ff", "ima",
          "a measurement violation is logged with an all-zero template hash and extends "
          "0xFF... in every bank",
          "Linux ima_queue.c ima_add_template_entry; Keylime ima/ast.py (FF_HASH)",
          "extends 0xFF...; counted, and refused only with fail_on_violations"),
    Quirk("ima.padded_sha1_extend", "ima",
          "kernels before 5.8 extend every PCR bank with the 20-byte SHA-1 template hash "
          "zero-padded to the bank's size (violations: 20 bytes of 0xFF, zero-padded)",
          "Linux drivers/char/tpm tpm_pcr_extend before 'ima: Calculate and extend PCR with "
          "digests in ima_template_entry' (5.8)",
          "when the normal replay of a SHA-1 list does not reach the quote, the padded replay "
          "is tried (template hashes verified first); a match passes with the warning "
          "ima.padded_sha1_extend"),
    Quirk("ima.truncated_copy", "ima",
          "a copy of the list ends mid-entry (the corpus' sml-ima-ng-sha1-invalidated.bin "
          "lacks the last byte of its only entry)",
          "tpm2-software/tpm2-tss test/data/fapi/eventlog",
          "complete entries are kept; the cut entry is named (index, PCR, bytes declared and "
          "present) and nothing after it is accepted"),
)

EXIT_BOOT_SERVICES_VARIANTS: Final[tuple[tuple[str, tuple[bytes, ...]], ...]] = (
    ("eventlog.ebs_success_unlogged",
     (EXIT_BOOT_SERVICES_INVOCATION, EXIT_BOOT_SERVICES_RETURNED)),
    ("eventlog.ebs_failure_unlogged",
     (EXIT_BOOT_SERVICES_INVOCATION, EXIT_BOOT_SERVICES_FAILED)),
    ("eventlog.ebs_failure_success_unlogged",
     (EXIT_BOOT_SERVICES_INVOCATION, EXIT_BOOT_SERVICES_FAILED, EXIT_BOOT_SERVICES_RETURNED)),
)
"""The Exit Boot Services events firmware may measure into PCR5 without logging them."""

QUIRK_IDS: Final = frozenset(q.id for q in QUIRKS)
