"""atheris fuzz targets, one per binary parser: only the typed error may escape.

Run one: ``python fuzz/targets.py TARGET -max_total_time=60`` (``make fuzz`` runs all).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from identity.checks import CheckRunner
    from identity.errors import IdentityError
    from identity.eventlog.integrity import check_integrity
    from identity.eventlog.replay import replay
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
    from identity.tpm.structures import parse_attest, parse_public, parse_signature
    from identity.truststore import load_certificates
    from identity.x509.csr import check_csr


def _event_log(data: bytes) -> None:
    log = parse_event_log(data)
    replay(log)
    check_integrity(log, CheckRunner())
    summarize(log)


def _uefi(data: bytes) -> None:
    for decode in (decode_variable, decode_signature_lists, decode_image_load, decode_gpt):
        try:
            decode(data)
        except IdentityError:
            pass


def _ima(data: bytes) -> None:
    replay_ima(parse_binary(data).entries, ["sha1", "sha256"])


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
    "ima_ascii": _ima_ascii,
    "csr": check_csr,
    "certificates": _certificates,
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
