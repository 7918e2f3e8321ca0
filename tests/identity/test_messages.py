"""The device protocol's models: round trips, and refusal of unknown fields, wrong types
and coercions (strict), as the attestor and the agent both rely on."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from identity.messages import (
    AttestationRequest,
    AttestationResult,
    Challenge,
    EnrollmentRequest,
    ImaProgress,
    SignedAttest,
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


def test_attestation_request_round_trips_through_json() -> None:
    request = AttestationRequest.model_validate(_request())
    assert request.nonce == bytes(range(32)) and request.ima_start == 3
    again = AttestationRequest.model_validate_json(request.model_dump_json())
    assert again == request
    assert request.model_dump(mode="json") | {} == AttestationRequest.model_validate(
        request.model_dump(mode="json")).model_dump(mode="json")


def test_attestation_result_round_trips_and_keeps_datetimes() -> None:
    result = AttestationResult(
        device_id="d1", verdict="pass", checks=[{"name": "quote.signature", "passed": True}],
        warnings=[], policy={"device_class": "default", "version": 1},  # type: ignore[arg-type]
        certificate="pem", chain="pem", ca="pem", serial="01", not_before=NOW,
        not_after=NOW + dt.timedelta(hours=1), secrets=[],
        ima=ImaProgress(accepted_entries=4, reset_count=2))
    again = AttestationResult.model_validate_json(result.model_dump_json())
    assert again == result and again.not_after - again.not_before == dt.timedelta(hours=1)


@pytest.mark.parametrize("extra", [{"debug": True}, {"quote_override": "x"}])
def test_requests_refuse_unknown_fields(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        AttestationRequest.model_validate(_request() | extra)
    with pytest.raises(ValidationError):
        SignedAttest.model_validate({"attest": "", "signature": "", **extra})


def test_answers_ignore_unknown_fields_from_a_newer_attestor() -> None:
    nonce = _b64(bytes(32))
    challenge = Challenge.model_validate_json(
        f'{{"nonce": "{nonce}", "expires_at": "2025-01-01T00:00:00Z", "pcr_selection": '
        '{"sha256": [0, 7]}, "added_in_v2": 1}')
    assert challenge.pcr_selection == {"sha256": [0, 7]}


@pytest.mark.parametrize(("field", "value"), [
    ("ima_start", "3"),       # a numeric string: strict, no coercion
    ("ima_start", True),      # a boolean is not an integer
    ("ima_start", 1.0),       # nor is a float
    ("ima_start", -1),        # nor a negative index
    ("nonce", 12),            # binary values are base64 text
    ("nonce", "not base64!"),
    ("ima_bank", "md5"),
    ("pcrs", {"sha256": {"0": 0}}),
])
def test_requests_refuse_wrong_types(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        AttestationRequest.model_validate(_request() | {field: value})


def test_answers_refuse_wrong_types() -> None:
    with pytest.raises(ValidationError, match="pcr_selection"):
        Challenge.model_validate_json('{"nonce": "AAAA", "expires_at": "2025-01-01T00:00:00Z",'
                                      ' "pcr_selection": ["sha256"]}')
    with pytest.raises(ValidationError, match="accepted_entries"):
        ImaProgress.model_validate_json('{"accepted_entries": "4", "reset_count": 1}')


def test_models_are_frozen() -> None:
    request = EnrollmentRequest(ek_public=b"ek", ak_public=b"ak", devid_public=b"devid",
                                devid_certify=SignedAttest(attest=b"a", signature=b"s"))
    with pytest.raises(ValidationError):
        request.serial = "other"  # type: ignore[misc]
    assert request.device_class == "default"
