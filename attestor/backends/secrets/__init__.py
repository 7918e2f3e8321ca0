"""Secret store backends: where the secrets released to attested devices live."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SecretSubject:
    """The device a secret is read for: external stores template paths with it."""

    device_id: str
    device_class: str
    model: str | None = None


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    version: int
    value: bytes

    def __repr__(self) -> str:  # never show the value in logs or tracebacks
        return f"SecretValue(name={self.name!r}, version={self.version})"


@dataclass(frozen=True, slots=True)
class WrappedSecret:
    """A single-use Vault response-wrapping token the device unwraps itself; the
    attestor never sees the value. ``wrap_id`` (a hash of the token) is what the audit
    log and a reuse report name."""

    name: str
    version: int
    token: str
    ttl_seconds: int
    address: str
    field: str

    @property
    def wrap_id(self) -> str:
        return wrap_id(self.token)

    def __repr__(self) -> str:
        return f"WrappedSecret(name={self.name!r}, version={self.version}, " \
               f"wrap_id={self.wrap_id!r})"


def wrap_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


class SecretStore(Protocol):
    """Read access to named secrets; a missing name returns None."""

    def read(self, name: str, subject: SecretSubject) -> SecretValue | None:
        """The value itself (the attestor needs it to seal a TPM-bound secret)."""
        ...

    def release(self, name: str, subject: SecretSubject) -> SecretValue | WrappedSecret | None:
        """What a device that passed receives: the value, or a wrapping token where the
        store wraps responses."""
        ...

    def health(self) -> None:
        """Return if the store can serve reads now; raise a ServiceError if not."""
        ...
