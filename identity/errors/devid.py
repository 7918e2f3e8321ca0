"""Zero-touch onboarding refusals (TCG IAK/IDevID, ownership): see docs/onboarding.md.

DevIdError covers what the manufacturer's certificates and the TPM evidence say;
OnboardingError what the owner's records and the onboarding challenge say.
"""

from __future__ import annotations

from identity.errors.base import MalformedInput
from identity.errors.evidence import EvidenceError


class DevIdError(EvidenceError):
    code = "devid.invalid"


class HardwareModuleNameMissing(DevIdError):
    code = "devid.hwname_missing"


class HardwareModuleNameMalformed(DevIdError):
    code = "devid.hwname_malformed"


class DevIdChainUntrusted(DevIdError):
    code = "devid.chain_untrusted"


class DevIdProfileInvalid(DevIdError):
    code = "devid.profile_invalid"


class IakAttributesInvalid(DevIdError):
    code = "devid.iak_attributes_invalid"


class IdevidAttributesInvalid(DevIdError):
    code = "devid.idevid_attributes_invalid"


class DevIdTpmMismatch(DevIdError):
    code = "devid.tpm_mismatch"


class IdevidCertifyInvalid(DevIdError):
    code = "devid.idevid_certify_invalid"


class IdevidSignatureInvalid(DevIdError):
    code = "devid.idevid_signature_invalid"


class OnboardingError(EvidenceError):
    code = "onboarding.refused"


class SerialNotOwned(OnboardingError):
    code = "onboarding.serial_not_owned"


class OwnershipRevoked(OnboardingError):
    code = "onboarding.ownership_revoked"


class OnboardingChallengeUnknown(OnboardingError):
    code = "onboarding.challenge_unknown"


class OnboardingChallengeExpired(OnboardingError):
    code = "onboarding.challenge_expired"


class OnboardingChallengeReplayed(OnboardingError):
    code = "onboarding.challenge_replayed"


class AlreadyOnboarded(OnboardingError):
    code = "onboarding.already_onboarded"


class OnboardingDeviceConflict(OnboardingError):
    """The EK the IAK certificate names is an enrolled device's with another serial: the
    onboarding would take over that device's record."""

    code = "onboarding.device_conflict"


class WrongManufacturer(OnboardingError):
    """The IAK or IDevID chains to an imported root, but not to the one the serial's
    ownership record is bound to (another OEM's device naming the serial)."""

    code = "onboarding.wrong_manufacturer"


class ManufacturerUnbound(OnboardingError):
    """The ownership record predates root binding and binds no manufacturer root: the
    owner must import the serial again naming its root."""

    code = "onboarding.manufacturer_unbound"


class ManifestInvalid(MalformedInput):
    """A batch manifest or serial list that does not parse or whose signature fails."""

    code = "ownership.manifest_invalid"


class OwnershipRootUnknown(MalformedInput):
    """A CSV import names a manufacturer root that is not imported (or was removed)."""

    code = "ownership.root_unknown"
