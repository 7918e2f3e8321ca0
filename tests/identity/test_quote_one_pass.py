"""The one-pass quote verification decides exactly as the check-by-check path.

``verify_quote`` takes ``_one_pass`` for a regular quote whose checks all pass and
``_check_each`` otherwise; these tests run both on genuine quotes and on hypothesis
mutations of them (re-signed, so the checks after the signature are reached) and
require the same checks, warnings, selection, clock, or the same exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.softtpm import SoftKey, software_pcrs
from identity.checks import CheckRunner
from identity.errors import IdentityError
from identity.pcr import PcrSelection
from identity.tpm import quote as quote_module
from identity.tpm.ak import TpmKey, load_key
from identity.tpm.quote import ClockState, verify_quote

pytestmark = pytest.mark.adversarial

NONCE = bytes(range(32))
SEL = PcrSelection.of({"sha256": range(8), "sha1": [0, 1, 23]})
REQUIRED = PcrSelection.of({"sha256": range(8)})
VALUES = software_pcrs(SEL)
KEYS = [
    SoftKey(),
    SoftKey(private=ec.generate_private_key(ec.SECP384R1()), hash_name="sha384"),
    SoftKey(private=rsa.generate_private_key(65537, 2048)),
    SoftKey(private=rsa.generate_private_key(65537, 2048), pss_salt=32),
]
LOADED = [load_key(k.public) for k in KEYS]
QUOTES = [k.quote(SEL, VALUES, NONCE) for k in KEYS]
PREVIOUS = ClockState(clock=1, reset_count=0, restart_count=0, safe=True)


def _outcome(ak: TpmKey, attest: bytes, sig: bytes, one_pass: bool, **kw: Any) -> object:
    kw.setdefault("nonce", NONCE)
    kw.setdefault("pcr_values", VALUES)
    kw.setdefault("required", REQUIRED)
    saved = quote_module._one_pass
    if not one_pass:
        quote_module._one_pass = lambda *a: None  # type: ignore[assignment]
    try:
        runner = CheckRunner()
        result = verify_quote(runner, ak, attest, sig, **kw)
    except IdentityError as exc:
        return type(exc), str(exc)
    finally:
        quote_module._one_pass = saved
    return (runner.checks, runner.warnings, result.passed, result.selection, result.clock,
            result.firmware_version, result.reset_since_last)


def _same(ak: TpmKey, attest: bytes, sig: bytes, **kw: Any) -> object:
    fast = _outcome(ak, attest, sig, True, **kw)
    assert fast == _outcome(ak, attest, sig, False, **kw)
    return fast


@pytest.mark.parametrize("index", range(len(KEYS)))
def test_genuine_quotes_take_the_one_pass_path(index: int) -> None:
    attest, sig = QUOTES[index]
    assert quote_module._one_pass(LOADED[index], attest, sig, NONCE, VALUES, REQUIRED,
                                  None) is not None
    outcome = _same(LOADED[index], attest, sig, previous=PREVIOUS, firmware_denied=lambda v: False)
    assert all(check.passed for check in outcome[0])  # type: ignore[index]


def test_each_failed_check_falls_back_with_its_reason() -> None:
    ak, (attest, sig) = LOADED[0], QUOTES[0]
    other = {"sha256": dict(VALUES["sha256"]), "sha1": VALUES["sha1"]}
    other["sha256"][3] = b"\x01" * 32
    for kw in ({"nonce": bytes(32)}, {"pcr_values": other},
               {"required": PcrSelection.of({"sha384": [0]})},
               {"expected_signer": b"\x00\x0b" + bytes(32)}):
        assert quote_module._one_pass(ak, attest, sig, kw.get("nonce", NONCE),
                                      kw.get("pcr_values", VALUES),
                                      kw.get("required", REQUIRED),
                                      kw.get("expected_signer")) is None
        _same(ak, attest, sig, **kw)
    assert quote_module._one_pass(LOADED[1], attest, sig, NONCE, VALUES, REQUIRED, None) is None


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(KEYS) - 1), data=st.data(), resign=st.booleans())
def test_mutated_quotes_decide_alike(index: int, data: st.DataObject, resign: bool) -> None:
    attest, sig = QUOTES[index]
    raw = bytearray(attest)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([len(raw), len(raw) - 1, len(raw) + 1]))
    mutated = bytes(raw[:cut]) + (b"\x00" if cut > len(raw) else b"")
    signature = KEYS[index].sign(mutated) if resign else sig
    _same(LOADED[index], mutated, signature, previous=PREVIOUS)


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, len(KEYS) - 1), at=st.integers(0, 600), byte=st.integers(0, 255))
def test_mutated_signatures_decide_alike(index: int, at: int, byte: int) -> None:
    attest, sig = QUOTES[index]
    raw = bytearray(sig)
    raw[at % len(raw)] = byte
    _same(LOADED[index], attest, bytes(raw))
