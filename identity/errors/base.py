"""The roots of the hierarchy (see :mod:`identity.errors`): IdentityError, malformed
input, unsupported algorithms, and the service, authentication and request families."""

from __future__ import annotations

from typing import ClassVar


class IdentityError(Exception):
    """Base of every edgeproof error; ``code`` is the stable reason code."""

    code: ClassVar[str] = "identity.error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code


class MalformedInput(IdentityError):
    code = "input.malformed"


class TpmStructureMalformed(MalformedInput):
    code = "tpm.malformed"


class EventLogMalformed(MalformedInput):
    code = "eventlog.malformed"


class CsrMalformed(MalformedInput):
    code = "csr.malformed"


class DeviceFieldInvalid(MalformedInput):
    """A device-record field (serial, device id) that cannot go into a certificate;
    ``field`` names it. Refused when the value is accepted, before anything is stored
    or any challenge is spent."""

    code = "device.field_invalid"

    def __init__(self, field: str, problem: str, where: str = "") -> None:
        super().__init__(f"{where}: {field} {problem}" if where else f"{field} {problem}")
        self.field = field


class UnsupportedAlgorithm(IdentityError):
    code = "tpm.unsupported_algorithm"


class ServiceError(IdentityError):
    """A fault on our side (backend down, misconfiguration): never the device's fault."""

    code = "service.error"


class BackendUnavailable(ServiceError):
    code = "backend.unavailable"


class VaultSealed(BackendUnavailable):
    code = "backend.vault_sealed"


class VaultUnreachable(BackendUnavailable):
    code = "backend.vault_unreachable"


class VaultRefused(BackendUnavailable):
    """Vault answered but refused (403, an expired token, a bad role or path)."""

    code = "backend.vault_refused"


class DatabaseUnavailable(BackendUnavailable):
    """The database cannot be reached or refused the attestor (server down, wrong
    credentials, a dropped connection)."""

    code = "backend.database_unavailable"


class DatabaseMissing(DatabaseUnavailable):
    """No database where the settings point: the SQLite file or the PostgreSQL database
    does not exist (only ``attestor init`` creates one)."""

    code = "backend.database_missing"


class DatabaseCorrupt(DatabaseUnavailable):
    """The SQLite file is not a database or is damaged."""

    code = "backend.database_corrupt"


class DatabaseUrlUnsupported(BackendUnavailable):
    """The database URL names neither SQLite nor PostgreSQL, or cannot be parsed."""

    code = "backend.database_url_unsupported"


class IssuerMismatch(ServiceError):
    """The issuer returned a certificate other than the one asked for (names, key or
    lifetime): it is not handed out."""

    code = "backend.issuer_mismatch"


class AuditUnavailable(ServiceError):
    code = "audit.unavailable"


class AuthError(IdentityError):
    """The caller is not who, or not allowed what, it claims (never the device's evidence)."""

    code = "auth.error"


class AuthMissing(AuthError):
    code = "auth.missing"


class AuthInvalid(AuthError):
    code = "auth.invalid"


class AuthExpired(AuthError):
    code = "auth.expired"


class AuthReplay(AuthError):
    code = "auth.replay"


class AuthForbidden(AuthError):
    code = "auth.forbidden"


class RequestError(IdentityError):
    code = "request.error"


class RateLimited(RequestError):
    code = "request.rate_limited"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class AuthThrottled(RateLimited):
    """Too many refused requests from one source address: its credentials are refused
    unchecked until the window ends (429 with Retry-After)."""

    code = "auth.throttled"


class Conflict(RequestError):
    code = "request.conflict"


class NotFound(RequestError):
    code = "request.not_found"
