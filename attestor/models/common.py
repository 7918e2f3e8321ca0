"""Problem responses and the operator API's request base. The device protocol's models
(enrollment, challenge, attestation, secrets) live in ``identity.messages``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """RFC 9457 problem details with edgeproof's stable reason codes."""

    type: str = Field(examples=["https://edgeproof.dev/problems/policy.pcr_mismatch"])
    title: str
    status: int
    code: str = Field(description="the main reason code", examples=["policy.pcr_mismatch"])
    detail: str | None = None
    codes: list[str] = Field(default_factory=list, description="every failed check's code")
    checks: list[dict[str, Any]] = Field(default_factory=list,
                                         description="every check with its outcome")
    errors: list[dict[str, Any]] | None = Field(
        None, description="schema violations (request.invalid): location and message")
    device_state: str | None = Field(
        None, description="device.not_active: the device's state (quarantined, revoked, "
        "decommissioned), so its agent can report it", examples=["revoked"])


# Free-text query filters (class, device, actor, action, outcome): printable text only.
# A control character is never in a stored value, and PostgreSQL refuses NUL in a query
# parameter outright: refused here as input (422), not a database error (503) on one backend.
FILTER_TEXT = r"^[^\x00-\x1f\x7f]*$"


def problems(**described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem responses, keyed by status."""
    return {int(status.removeprefix("s")): {"model": Problem, "description": text}
            for status, text in described.items()}


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


