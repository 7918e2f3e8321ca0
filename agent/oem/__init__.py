"""The OEM side of zero-touch onboarding: `edgeproof-oem`, the factory line's tool.

It holds the OEM's own CA, provisions a device's TPM with an IAK and an IDevID (TCG
"TPM 2.0 Keys for Device Identity and Attestation"), issues their certificates and
signs the batch manifest a buyer imports. docs/onboarding.md describes it.
"""
