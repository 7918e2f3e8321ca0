"""The device protocol's structs (msgspec): round trips, and refusal of unknown fields,
wrong types, coercions and bad base64 (strict), as the attestor and the agent both rely on;
and the wire format is the one the pydantic models had (standard padded base64, RFC 3339)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import subprocess
import sys
from typing import Any

import msgspec
import pytest

from identity.messages import (
    AttestationRequest,
    AttestationResult,
    Challenge,
    EnrollmentRequest,
    GrantedSecret,
    ImaProgress,
    PolicyRef,
    SignedAttest,
    decode,
    encode,
    to_json,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _request() -> dict[str, Any]:
    signed = {"attest": _b64(b"\xffTCG" + bytes(60)), "signature": _b64(bytes(72))}
    return {"nonce": _b64(bytes(range(32))), "quote": signed,
            "pcrs": {"sha256": {"0": "00" * 32}}, "event_log": _b64(b"log" * 100),
            "csr": _b64(b"0\x82csr"), "key_public": _b64(b"\x00\x58key"),
            "key_certify": signed, "ima_bank": "sha256", "ima_start": 3}


def _decode_request(values: dict[str, Any]) -> AttestationRequest:
    return decode(AttestationRequest, json.dumps(values))


def test_attestation_request_round_trips_through_json() -> None:
    request = _decode_request(_request())
    assert request.nonce == bytes(range(32)) and request.ima_start == 3
    assert decode(AttestationRequest, encode(request)) == request
    assert to_json(request) == _request() | {"ima_log": None, "ear_nonce": None}


def test_requests_leave_defaults_out_and_bytes_are_standard_padded_base64() -> None:
    """What an older attestor accepts: defaults absent; ``+`` and ``/``, with padding."""
    request = EnrollmentRequest(ek_public=b"\xfb\xff", ak_public=b"ak", devid_public=b"d",
                                devid_certify=SignedAttest(attest=b"a", signature=b"s"))
    assert json.loads(encode(request)) == {
        "ek_public": "+/8=", "ak_public": "YWs=", "devid_public": "ZA==",
        "devid_certify": {"attest": "YQ==", "signature": "cw=="}}


def test_attestation_result_round_trips_and_keeps_datetimes() -> None:
    result = AttestationResult(
        device_id="d1", verdict="pass", checks=[{"name": "quote.signature", "passed": True}],
        warnings=[], policy=PolicyRef(device_class="default", version=1),
        certificate="pem", chain="pem", ca="pem", serial="01", not_before=NOW,
        not_after=NOW + dt.timedelta(hours=1, microseconds=5),
        secrets=[GrantedSecret(name="s", version=2, value=b"\xff")],
        ima=ImaProgress(accepted_entries=4, reset_count=2))
    text = encode(result)
    assert b'"not_before":"2025-01-01T00:00:00Z"' in text
    assert b'"not_after":"2025-01-01T01:00:00.000005Z"' in text
    assert b'"value":"/w==","tpm_wrap":null' in text  # answers keep their defaults
    again = decode(AttestationResult, text)
    assert again == result and again.not_after - again.not_before == dt.timedelta(
        hours=1, microseconds=5)


@pytest.mark.parametrize("extra", [{"debug": True}, {"quote_override": "x"}])
def test_requests_refuse_unknown_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        _decode_request(_request() | extra)
    with pytest.raises(msgspec.ValidationError, match=r"unknown field .* at `\$.quote`"):
        _decode_request(_request() | {"quote": _request()["quote"] | extra})


def test_answers_ignore_unknown_fields_from_a_newer_attestor() -> None:
    nonce = _b64(bytes(32))
    challenge = decode(Challenge,
                       f'{{"nonce": "{nonce}", "expires_at": "2025-01-01T00:00:00Z", '
                       '"pcr_selection": {"sha256": [0, 7]}, "added_in_v2": 1}')
    assert challenge.pcr_selection == {"sha256": [0, 7]} and challenge.expires_at == NOW


@pytest.mark.parametrize(("field", "value"), [
    ("ima_start", "3"),       # a numeric string: strict, no coercion
    ("ima_start", True),      # a boolean is not an integer
    ("ima_start", 1.0),       # nor is a float
    ("ima_start", -1),        # nor a negative index
    ("nonce", 12),            # binary values are base64 text
    ("nonce", "not base64!"),
    ("nonce", "AAA"),         # unpadded
    ("nonce", "-_8="),        # the URL-safe alphabet is not the protocol's
    ("nonce", _b64(bytes(65))),  # longer than a nonce
    ("ima_bank", "md5"),
    ("pcrs", {"sha256": {"0": 0}}),
    ("ear_nonce", "short"),
    ("ear_nonce", "not+base64url+text"),
])
def test_requests_refuse_wrong_types(field: str, value: object) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        _decode_request(_request() | {field: value})


def test_answers_refuse_wrong_types() -> None:
    with pytest.raises(msgspec.ValidationError, match="pcr_selection"):
        decode(Challenge, '{"nonce": "AAAA", "expires_at": "2025-01-01T00:00:00Z",'
                          ' "pcr_selection": ["sha256"]}')
    with pytest.raises(msgspec.ValidationError, match="accepted_entries"):
        decode(ImaProgress, '{"accepted_entries": "4", "reset_count": 1}')
    with pytest.raises(msgspec.DecodeError):
        decode(ImaProgress, "<html>proxy</html>")


def test_structs_are_frozen() -> None:
    request = EnrollmentRequest(ek_public=b"ek", ak_public=b"ak", devid_public=b"devid",
                                devid_certify=SignedAttest(attest=b"a", signature=b"s"))
    with pytest.raises(AttributeError):
        request.serial = "other"  # type: ignore[misc]
    with pytest.raises((AttributeError, dataclasses.FrozenInstanceError)):
        request.devid_certify.attest = b"b"  # type: ignore[misc]
    assert request.device_class == "default"


def test_the_agent_daemon_path_does_not_import_pydantic() -> None:
    """The agent's resident footprint (docs/benchmarks.md, agent footprint): the protocol
    is msgspec so that nothing the daemon imports pulls pydantic in (about 10 MB)."""
    modules = ("agent.entry", "agent.cli", "agent.daemon", "agent.attest", "agent.renew",
               "agent.enroll", "agent.client", "agent.vaultwrap", "agent.doctor")
    code = (f"import {', '.join(modules)}; import sys; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
