"""Who is calling: people and services (bearer JWTs, local or OIDC), factory stations
(API keys) and devices (requests signed by their TPM-resident DevID key)."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "enroller", "auditor", "gatekeeper")


@dataclass(frozen=True)
class Principal:
    kind: str  # "token", "apikey" or "device"
    subject: str
    role: str | None = None  # people, services and stations
    device_id: str | None = None  # devices

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        if self.kind == "device":
            return f"device:{self.device_id}"
        return f"{self.kind}:{self.subject}"
