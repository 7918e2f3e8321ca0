"""One error hierarchy for edgeproof, each class with a stable dotted reason code.

The codes are wire format: they appear in problem responses, audit entries and
metrics labels. Add codes; never rename one. The families, under IdentityError
(``identity.error``): MalformedInput (400), UnsupportedAlgorithm, EvidenceError
(403: nonce, quote, AK, certify, EK, event log, IMA, policy, activation, and the
relying parties' token refusals in :mod:`identity.gate`), AuthError (401/403),
RequestError (404/409/429) and ServiceError (503: our fault, never the device's).
docs/reason-codes.md lists every code with its meaning; a test keeps it complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from identity.checks import Check


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


class EvidenceError(IdentityError):
    """The evidence parsed but does not prove what it claims."""

    code = "evidence.invalid"


class NonceError(EvidenceError):
    code = "nonce.invalid"


class NonceUnknown(NonceError):
    code = "nonce.unknown"


class NonceExpired(NonceError):
    code = "nonce.expired"


class NonceUsed(NonceError):
    code = "nonce.used"


class NonceWrongDevice(NonceError):
    code = "nonce.wrong_device"


class QuoteError(EvidenceError):
    code = "quote.invalid"


class QuoteSignatureInvalid(QuoteError):
    code = "quote.signature_invalid"


class QuoteSignerMismatch(QuoteError):
    code = "quote.signer_mismatch"


class QuoteSchemeMismatch(QuoteError):
    code = "quote.scheme_mismatch"


class QuoteMagicInvalid(QuoteError):
    code = "quote.magic_invalid"


class QuoteTypeInvalid(QuoteError):
    code = "quote.type_invalid"


class QuoteNonceMismatch(QuoteError):
    code = "quote.nonce_mismatch"


class PcrSelectionMismatch(QuoteError):
    code = "quote.pcr_selection_mismatch"


class PcrDigestMismatch(QuoteError):
    code = "quote.pcr_digest_mismatch"


class ResetCountRollback(QuoteError):
    code = "quote.reset_count_rollback"


class ClockRollback(QuoteError):
    code = "quote.clock_rollback"


class FirmwareDenied(QuoteError):
    code = "quote.firmware_denied"


class AttestationKeyInvalid(EvidenceError):
    code = "ak.invalid"


class AkNotRestricted(AttestationKeyInvalid):
    code = "ak.not_restricted"


class AkNotSigning(AttestationKeyInvalid):
    code = "ak.not_signing"


class AkNotFixedTpm(AttestationKeyInvalid):
    code = "ak.not_fixed_tpm"


class AkNotFixedParent(AttestationKeyInvalid):
    code = "ak.not_fixed_parent"


class AkNotSensitiveDataOrigin(AttestationKeyInvalid):
    code = "ak.not_sensitive_data_origin"


class AkNoUserWithAuth(AttestationKeyInvalid):
    code = "ak.no_user_with_auth"


class AkCanDecrypt(AttestationKeyInvalid):
    code = "ak.decrypt_set"


class AkWeakNameAlg(AttestationKeyInvalid):
    code = "ak.weak_name_alg"


class AkWeakKey(AttestationKeyInvalid):
    code = "ak.weak_key"


class AkSchemeInvalid(AttestationKeyInvalid):
    code = "ak.scheme_invalid"


class CertifyError(EvidenceError):
    code = "certify.invalid"


class CertifySignatureInvalid(CertifyError):
    code = "certify.signature_invalid"


class CertifySchemeMismatch(CertifyError):
    code = "certify.scheme_mismatch"


class CertifyMagicInvalid(CertifyError):
    code = "certify.magic_invalid"


class CertifyTypeInvalid(CertifyError):
    code = "certify.type_invalid"


class CertifyNameMismatch(CertifyError):
    code = "certify.name_mismatch"


class CertifyQualifyingMismatch(CertifyError):
    code = "certify.qualifying_data_mismatch"


class CertifiedKeyInvalid(CertifyError):
    code = "certify.key_attributes_invalid"


class ActivationError(EvidenceError):
    code = "activation.invalid"


class ActivationUnknown(ActivationError):
    code = "activation.unknown"


class ActivationExpired(ActivationError):
    code = "activation.expired"


class ActivationUsed(ActivationError):
    code = "activation.used"


class ActivationMismatch(ActivationError):
    code = "activation.secret_mismatch"


class EkError(EvidenceError):
    code = "ek.invalid"


class EkChainUntrusted(EkError):
    code = "ek.chain_untrusted"


class EkProfileInvalid(EkError):
    code = "ek.profile_invalid"


class EkKeyMismatch(EkError):
    code = "ek.key_mismatch"


class EkKeyWeak(EkError):
    code = "ek.key_weak"


class EkPublicInvalid(EkError):
    code = "ek.public_invalid"


class EventLogReplayMismatch(EvidenceError):
    code = "eventlog.replay_mismatch"


class EventLogMissing(EvidenceError):
    code = "eventlog.missing"


class EventLogBankIncomplete(EventLogReplayMismatch):
    """A quoted PCR in a bank that some of the log's events carry no digest for: the
    log cannot prove that PCR in that bank, whatever the other banks say."""

    code = "eventlog.bank_incomplete"


class EventLogIntegrityError(EvidenceError):
    code = "eventlog.integrity"


class EventLogDigestMismatch(EventLogIntegrityError):
    code = "eventlog.digest_mismatch"


class EventLogEventTypeUnexpected(EventLogIntegrityError):
    code = "eventlog.event_type_unexpected"


class EventLogDuplicateSeparator(EventLogIntegrityError):
    code = "eventlog.duplicate_separator"


class EventLogEventAfterSeparator(EventLogIntegrityError):
    code = "eventlog.event_after_separator"


class EventLogConfigAfterSeparator(EventLogIntegrityError):
    code = "eventlog.config_after_separator"


class BootAppraisalError(EvidenceError):
    code = "eventlog.appraisal_failed"


class SecureBootDisabled(BootAppraisalError):
    code = "eventlog.secure_boot_disabled"


class BankMissing(BootAppraisalError):
    code = "eventlog.bank_missing"


class SignatureDatabaseNotAllowed(BootAppraisalError):
    code = "eventlog.signature_database_not_allowed"


class DbxOutdated(BootAppraisalError):
    code = "eventlog.dbx_outdated"


class UnknownBootApplication(BootAppraisalError):
    code = "eventlog.unknown_boot_application"


class KernelNotAllowed(BootAppraisalError):
    code = "eventlog.kernel_not_allowed"


class CmdlineRejected(BootAppraisalError):
    code = "eventlog.cmdline_rejected"


class SbatLevelRejected(BootAppraisalError):
    code = "eventlog.sbat_level_rejected"


class ImaError(EvidenceError):
    code = "ima.invalid"


class ImaMalformed(MalformedInput):
    code = "ima.malformed"


class ImaUnsupportedTemplate(ImaMalformed):
    code = "ima.unsupported_template"


class ImaTemplateHashMismatch(ImaError):
    code = "ima.template_hash_mismatch"


class ImaReplayMismatch(ImaError):
    code = "ima.replay_mismatch"


class ImaBootAggregateMismatch(ImaError):
    code = "ima.boot_aggregate_mismatch"


class ImaFileNotAllowed(ImaError):
    code = "ima.file_not_allowed"


class ImaSignatureInvalid(ImaError):
    code = "ima.signature_invalid"


class ImaStateInvalid(ImaError):
    code = "ima.state_invalid"


class ImaPcrNotQuoted(ImaError):
    """The list extends a PCR (an IMA policy ``pcr=`` rule) the quote does not cover."""

    code = "ima.pcr_not_quoted"


class PolicyError(EvidenceError):
    code = "policy.invalid"


class PolicyNoReference(PolicyError):
    code = "policy.no_reference"


class PolicyPcrMismatch(PolicyError):
    code = "policy.pcr_mismatch"


class CsrError(EvidenceError):
    code = "csr.invalid"


class CsrSignatureInvalid(CsrError):
    code = "csr.signature_invalid"


class CsrKeyWeak(CsrError):
    code = "csr.key_weak"


class CsrKeyMismatch(CsrError):
    code = "csr.key_mismatch"


class DeviceError(EvidenceError):
    code = "device.invalid"


class DeviceUnknown(DeviceError):
    code = "device.unknown"


class DeviceNotActive(DeviceError):
    """The device is quarantined, revoked or decommissioned; ``state`` says which (the
    device is told, in its problem response's ``device_state``)."""

    code = "device.not_active"

    def __init__(self, state: str) -> None:
        super().__init__(f"device is {state}")
        self.state = state


class VerificationFailed(EvidenceError):
    """Evidence was refused; ``checks`` lists every check with its outcome."""

    code = "attestation.refused"

    def __init__(self, detail: str, checks: Sequence[Check], reasons: Sequence[str]) -> None:
        super().__init__(detail)
        self.checks = list(checks)
        self.reasons = list(reasons)


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

