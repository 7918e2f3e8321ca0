"""msgspec twins of the attestation request and result, for bench/messages.py only (no
``from __future__ import annotations``: msgspec resolves these annotations at run time)."""

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

struct = Annotated[bytes, msgspec.Meta(max_length=8 * 1024)]
log = Annotated[bytes, msgspec.Meta(max_length=4 * 1024 * 1024)]

class Signed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    attest: struct
    signature: struct

class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    nonce: Annotated[bytes, msgspec.Meta(max_length=64)]
    quote: Signed
    pcrs: dict[str, dict[str, str]]
    csr: struct
    key_public: struct
    key_certify: Signed
    event_log: log | None = None
    ima_log: log | None = None
    ima_bank: Literal["sha1", "sha256", "sha384", "sha512", "sm3_256"] = "sha1"
    ima_start: Annotated[int, msgspec.Meta(ge=0)] = 0
    ear_nonce: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{11,88}$")] | None = None

class Policy(msgspec.Struct, frozen=True):
    device_class: str
    version: int | None

class Result(msgspec.Struct, frozen=True):
    device_id: str
    verdict: str
    checks: list[dict[str, Any]]
    warnings: list[str]
    policy: Policy
    certificate: str
    chain: str
    ca: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    secrets: list[dict[str, Any]]
    ima: dict[str, int] | None = None
    ima_pending_entries: int = 0
    token: str | None = None

