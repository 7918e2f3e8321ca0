"""TCG "TPM 2.0 Keys for Device Identity and Attestation": IAK and IDevID.

Pure pieces of zero-touch onboarding (docs/onboarding.md): the HardwareModuleName
name form (RFC 4108), the IAK/IDevID certificate profiles and their checks, the key
templates' attribute checks, the onboarding evidence check and the signed batch
manifest. No TPM access, no clock: time is an argument.
"""
