"""atheris fuzz targets, one per binary parser: only the typed error may escape.

Run one: ``python fuzz/targets.py TARGET -max_total_time=60`` (``make fuzz`` runs all).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from identity.checks import CheckRunner
    from identity.devid.hwname import HardwareModuleName
    from identity.errors import IdentityError
    from identity.eventlog.integrity import check_integrity
    from identity.eventlog.replay import check_replay_matches, replay
    from identity.eventlog.summary import summarize
    from identity.eventlog.tcg import parse_event_log
    from identity.eventlog.uefi import (
        decode_gpt,
        decode_image_load,
        decode_signature_lists,
        decode_variable,
    )
    from identity.ima.log import parse_ascii, parse_binary
    from identity.ima.replay import replay_ima
    from identity.tpm.structures import DIGEST_SIZES, parse_attest, parse_public, parse_signature
    from identity.truststore import load_certificates
    from identity.x509.csr import check_csr


def _event_log(data: bytes) -> None:
    log = parse_event_log(data)
    replay(log)
    for bank in log.banks:  # a quote of every PCR: exercises the incomplete-bank refusal
        try:
            check_replay_matches(log, {bank: {i: bytes(DIGEST_SIZES[bank]) for i in range(24)}})
        except IdentityError:
            pass
    check_integrity(CheckRunner(), log)
    summarize(log)


def _uefi(data: bytes) -> None:
    for decode in (decode_variable, decode_signature_lists, decode_image_load, decode_gpt):
        try:
            decode(data)
        except IdentityError:
            pass


def _ima(data: bytes) -> None:
    listing = parse_binary(data)  # the bank told from the first entry
    replay_ima(listing.entries, ["sha1", "sha256"], list_bank=listing.bank)


def _ima_per_bank(data: bytes) -> None:
    """A per-bank list (32-byte template hashes), replayed against a quote of its PCRs."""
    listing = parse_binary(data, "sha256")
    pcrs = {e.pcr for e in listing.entries}
    quoted = {"sha256": {pcr: bytes(32) for pcr in pcrs | {10}}}
    try:
        replay_ima(listing.entries, ["sha256"], quoted=quoted, list_bank="sha256")
    except IdentityError:
        pass
    replay_ima(listing.entries, ["sha1", "sha256"], list_bank="sha256", padded_sha1=False)


def _ima_ascii(data: bytes) -> None:
    replay_ima(parse_ascii(data.decode("utf-8", errors="replace")), ["sha256"])


def _certificates(data: bytes) -> None:
    try:
        load_certificates(data)
    except ValueError:
        pass  # the trust store's documented refusal


TARGETS: dict[str, Callable[[bytes], object]] = {
    "attest": parse_attest,
    "signature": parse_signature,
    "public": parse_public,
    "eventlog": _event_log,
    "uefi": _uefi,
    "ima": _ima,
    "ima_per_bank": _ima_per_bank,
    "ima_ascii": _ima_ascii,
    "csr": check_csr,
    "certificates": _certificates,
    "hwname": HardwareModuleName.from_der,
}


def main() -> None:
    name = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in TARGETS else ""
    if not name:
        sys.exit(f"usage: targets.py {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[name]

    def one(data: bytes) -> None:
        try:
            target(data)
        except IdentityError:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
