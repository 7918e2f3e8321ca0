"""Secret store backends: where the secrets released to attested devices live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SecretValue:
    name: str
    version: int
    value: bytes

    def __repr__(self) -> str:  # never show the value in logs or tracebacks
        return f"SecretValue(name={self.name!r}, version={self.version})"


class SecretStore(Protocol):
    """Read access to named secrets; a missing name returns None."""

    def read(self, name: str) -> SecretValue | None: ...

    def health(self) -> None:
        """Return if the store can serve reads now; raise a ServiceError if not."""
        ...
