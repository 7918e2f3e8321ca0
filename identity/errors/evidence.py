"""EvidenceError and its families (see :mod:`identity.errors`): nonce, quote, AK,
certify, activation, EK, event log, boot appraisal, IMA, policy, CSR, device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from identity.errors.base import IdentityError, MalformedInput

if TYPE_CHECKING:
    from identity.checks import Check


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
